//! `tether export` then `tether apply` on an empty database gives the same apps and users;
//! `apply` is idempotent, `--dry-run` writes nothing, `--prune` deletes what the document does
//! not name, and secrets come along only with `--include-secrets`.

use std::path::Path;

use serde_json::Value;
use tether_testkit::TempDir;

use crate::binary::{Proc, cli_db, client, port_of};

fn cli(dir: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    cli_db(dir, &None, args, stdin)
}

fn ok(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = cli(dir, args, stdin);
    assert_eq!(code, 0, "tether {args:?}: {err}");
    out
}

/// The export of a data dir, without its comment header.
fn export(dir: &Path, secrets: bool) -> String {
    let mut args = vec!["export"];
    if secrets {
        args.push("--include-secrets");
    }
    ok(dir, &args, None).lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n")
}

async fn password_token(dir: &Path, app: &(String, String), user: &str, pw: &str) -> reqwest::StatusCode {
    let mut p = Proc::spawn(
        dir,
        &["serve", "--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--metrics-listen", "off"],
        &[],
    );
    let port = port_of(&p.wait_for("listening on https://"));
    let http = client(&dir.join("tls/ca.pem"), port);
    http.post(format!("https://localhost:{port}/oauth2/token"))
        .basic_auth(&app.0, Some(&app.1))
        .form(&[("grant_type", "password"), ("username", user), ("password", pw)])
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_apply_gives_the_same_apps_and_users() {
    if std::env::var("TETHER_TEST_POSTGRES_URL").is_ok() {
        eprintln!("export/apply runs on SQLite data dirs: once, on the SQLite pass");
        return;
    }
    let d = TempDir::new("declarative");
    let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
    ok(&a, &["init"], None);
    let v: Value = serde_json::from_str(&ok(
        &a,
        &["app", "create", "--name", "svc", "--grant-types", "password,client_credentials", "--json"],
        None,
    ))
    .unwrap();
    let svc = (v["client_id"].as_str().unwrap().to_string(), v["client_secret"].as_str().unwrap().to_string());
    ok(
        &a,
        &[
            "app",
            "create",
            "--name",
            "spa",
            "--public",
            "--grant-types",
            "authorization_code",
            "--redirect-uri",
            "https://spa.example/cb",
            "--binding",
            "sso-session",
            "--revoke-on-logout",
        ],
        None,
    );
    ok(
        &a,
        &["user", "add", "alice", "--password-stdin", "--role", "admin", "--email", "alice@example.com"],
        Some("pw-alice\n"),
    );
    ok(&a, &["user", "add", "bob", "--password-stdin", "--role", "viewer"], Some("pw-bob\n"));

    // With secrets: an empty data dir becomes the same apps and users, credentials included.
    let full = d.path().join("full.toml");
    let (code, _, err) = cli(&a, &["export", "--include-secrets", "--out", full.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&full).unwrap().permissions().mode() & 0o777, 0o600, "secrets stay private");
    let text = std::fs::read_to_string(&full).unwrap();
    assert!(text.contains("$argon2id$") && text.contains("secret_hash"), "{text}");
    let said = ok(&b, &["apply", "-f", full.to_str().unwrap()], None);
    assert!(said.contains("+ app svc") && said.contains("+ user alice") && said.contains("applied 4"), "{said}");
    assert_eq!(export(&a, true), export(&b, true), "apply of an export gives the same apps and users");
    // Idempotent.
    let said = ok(&b, &["apply", "-f", full.to_str().unwrap()], None);
    assert!(said.contains("no changes"), "{said}");
    // The credentials came along: the password grant works there with the original secret and
    // password.
    assert_eq!(password_token(&b, &svc, "alice", "pw-alice").await, reqwest::StatusCode::OK);

    // Without secrets: the same apps and users (client_ids kept), no working credentials.
    let bare = d.path().join("bare.toml");
    ok(&a, &["export", "--out", bare.to_str().unwrap()], None);
    let text = std::fs::read_to_string(&bare).unwrap();
    assert!(!text.contains("secret_hash") && !text.contains("argon2"), "{text}");
    let said = ok(&c, &["apply", "-f", bare.to_str().unwrap()], None);
    assert!(said.contains("without a working secret") && said.contains("without a password"), "{said}");
    assert_eq!(export(&a, false), export(&c, false));
    assert_eq!(password_token(&c, &svc, "alice", "pw-alice").await, reqwest::StatusCode::UNAUTHORIZED);

    // A change: --dry-run shows it and writes nothing; apply makes it; --prune deletes the rest.
    let edited = d.path().join("edited.toml");
    let changed = std::fs::read_to_string(&full).unwrap().replacen("binding = \"none\"", "binding = \"dpop\"", 1);
    let mut doc: toml::Table = toml::from_str(&changed).unwrap();
    doc.get_mut("users").and_then(|u| u.as_array_mut()).unwrap().retain(|u| u["username"].as_str() != Some("bob"));
    std::fs::write(&edited, toml::to_string(&doc).unwrap()).unwrap();
    let before = export(&b, true);
    let said = ok(&b, &["apply", "-f", edited.to_str().unwrap(), "--prune", "--dry-run"], None);
    assert!(said.contains("~ app svc") && said.contains("binding") && said.contains("- user bob"), "{said}");
    assert!(said.contains("nothing written"), "{said}");
    assert_eq!(export(&b, true), before, "--dry-run wrote nothing");
    let said = ok(&b, &["apply", "-f", edited.to_str().unwrap()], None);
    assert!(said.contains("~ app svc") && !said.contains("- user bob"), "without --prune nothing is deleted: {said}");
    let said = ok(&b, &["apply", "-f", edited.to_str().unwrap(), "--prune"], None);
    assert!(said.contains("- user bob") && said.contains("applied 1"), "{said}");
    let now: toml::Table = toml::from_str(&export(&b, false)).unwrap();
    let users: Vec<&str> = now["users"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(users, ["alice"]);
    let svc_now = now["apps"].as_array().unwrap().iter().find(|a| a["name"].as_str() == Some("svc")).unwrap();
    assert_eq!(svc_now["binding"].as_str(), Some("dpop"));

    // A mistake is named and nothing is written.
    let bad = d.path().join("bad.toml");
    std::fs::write(&bad, "[[apps]]\nclient_id = \"x1\"\nname = \"bad\"\nbindng = \"dpop\"\n").unwrap();
    let (code, _, err) = cli(&b, &["apply", "-f", bad.to_str().unwrap()], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("apps[0].bindng") && err.contains("unknown key"), "{err}");
    assert!(!export(&b, false).contains("name = \"bad\""), "a refused document writes nothing");
}
