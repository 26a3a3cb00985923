//! Operator safety and seed fidelity: the admin CLI refusing what would silently hurt, and the
//! seeds' commands working as printed.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use tether_testkit::*;

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// Run the CLI on `dir`'s database (and the suite's PostgreSQL database when there is one).
fn cli(dir: &Path, db: &Option<String>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(dir).args(args).stdin(Stdio::null()).env_remove("TETHER_DATABASE_URL");
    if let Some(u) = db {
        cmd.env("TETHER_DATABASE_URL", u);
    }
    let out = cmd.output().expect("run tether");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_admin_cli_refuses_silent_damage() {
    let d = TempDir::new("operator");
    let db = test_database().await;
    let run = |args: &[&str]| cli(d.path(), &db, args);
    assert_eq!(run(&["init"]).0, 0, "tether init");
    let base = ["app", "create", "--grant-types", "authorization_code", "--redirect-uri", "https://app.example/cb"];
    let (code, out, err) = run(&[&base[..], &["--name", "Web", "--json"]].concat());
    assert_eq!(code, 0, "{err}");
    let web: Value = serde_json::from_str(&out).unwrap();
    let id = web["client_id"].as_str().unwrap().to_string();

    // Duplicate names.
    let (code, _, err) = run(&[&base[..], &["--name", "Web"]].concat());
    assert_eq!(code, 1);
    assert!(err.contains(&format!("an app named \"Web\" exists (client_id {id})")), "{err}");
    let (code, _, _) = run(&[&base[..], &["--name", "Other", "--json"]].concat());
    assert_eq!(code, 0);
    let (code, _, err) = run(&["app", "update", "--name", "Web", "--", &other_id(&run)]);
    assert_eq!(code, 1, "renaming onto an existing name: {err}");

    // --public on a confidential app deletes its secret: only with --force, and it says so.
    let (code, _, err) = run(&["app", "update", "--public", "--", &id]);
    assert_eq!(code, 2);
    assert!(err.contains("--force") && err.contains("secret"), "{err}");
    let (_, out, _) = run(&["app", "show", "--json", "--", &id]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["public"], false, "nothing changed");
    let (code, out, err) = run(&["app", "update", "--public", "--force", "--json", "--", &id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["public"], true);

    // Redirect URIs: http only on loopback; none without the code grant; consent needs the code grant.
    for (uri, ok) in [
        ("http://app.example/cb", false),
        ("http://localhost:8080/cb", true),
        ("http://127.0.0.1/cb", true),
        ("http://[::1]:9/cb", true),
        ("com.example.app:/cb", true),
    ] {
        let name = format!("r-{uri}");
        let args = ["app", "create", "--name", &name, "--grant-types", "authorization_code", "--redirect-uri", uri];
        let (code, _, err) = run(&args);
        assert_eq!(code == 0, ok, "{uri}: {err}");
        if !ok {
            assert_eq!(code, 2);
            assert!(err.contains("https://"), "{err}");
        }
    }
    let (code, _, err) =
        run(&["app", "create", "--name", "p", "--grant-types", "password", "--redirect-uri", "https://a.example/cb"]);
    assert_eq!(code, 2);
    assert!(err.contains("authorization_code"), "{err}");
    let (code, _, err) =
        run(&["app", "create", "--name", "c", "--grant-types", "client_credentials", "--require-consent"]);
    assert_eq!(code, 2, "{err}");
}

fn other_id(run: &impl Fn(&[&str]) -> (i32, String, String)) -> String {
    let (_, out, _) = run(&["app", "list", "--json"]);
    let apps: Value = serde_json::from_str(&out).unwrap();
    apps.as_array().unwrap().iter().find(|a| a["name"] == "Other").unwrap()["client_id"].as_str().unwrap().to_string()
}

#[test]
fn client_ids_never_look_like_flags() {
    // One base64url id in 64 would start with '-'; in 2,000 ids about 31 would.
    for _ in 0..2000 {
        let id = tether_core::admin::new_client_id();
        assert!(id.starts_with(|c: char| c.is_ascii_alphanumeric()), "{id}");
        assert_eq!(id.len(), 22);
    }
}

#[tokio::test]
async fn the_seeds_curl_commands_work_as_printed() {
    let srv = TestServer::start().await;
    srv.add_user("admin", "admin").await;
    let mut ch = app(&["password", "refresh_token", "client_credentials"]);
    ch.binding = Some("client-request".into());
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    // As printed: line continuations leave a space before each '&'.
    let body = "grant_type=password &username=admin &tokenBindingId=seed-key &password=admin";
    let r = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = jwt_claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["binding_ref"], tether_core::binding::binding_ref("seed-key"), "tokenBindingId trimmed");
    assert_eq!(claims["username"], "admin");
    // Secrets are never trimmed: a password with a trailing space is another password.
    let body = "grant_type=password &username=admin &password=admin &tokenBindingId=seed-key";
    let r = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // token_type_hint, also trimmed.
    let rt = t["refresh_token"].as_str().unwrap();
    let r = srv
        .client()
        .post(srv.url("/oauth2/introspect"))
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={rt}&token_type_hint=refresh_token "))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["active"], true);

    // client_credentials without a scope: no `scope` claim at all (never "").
    let r = srv.token(&a, &[("grant_type", "client_credentials"), ("tokenBindingId", "k2")]).await;
    let t: Value = r.json().await.unwrap();
    let claims = jwt_claims(t["access_token"].as_str().unwrap());
    assert!(claims.get("scope").is_none(), "{claims}");
}
