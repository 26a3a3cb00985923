//! The web console ({base}/console) in a real browser: headless Debian Chromium driven by
//! playwright-core (interop/console.mjs) against a real server. An admin signs in through the
//! server's own login page, checks the console cookie, creates a certificate-bound app, switches it
//! to DPoP, creates a user and signs her out everywhere, regenerates a secret and deletes an app,
//! revokes a token, rotates and retires keys, reads events, is refused without a CSRF token, and
//! signs out; a viewer sees everything and can change nothing; a user without a role sees nothing.
//!
//! The script stops twice for this side to check, from outside the browser, what the console just
//! configured: a client-credentials token over mutual TLS carries the certificate's thumbprint,
//! and after the switch a token needs a DPoP proof and carries its key's thumbprint. The facts the
//! script reports are checked again here against the store. Screenshots of every page are copied
//! to `target/console-screenshots/` for a reviewer.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tether_core::clock::Clock;
use tether_testkit::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const ADMIN: (&str, &str) = ("root", "root-console-pw");
const VIEWER: (&str, &str) = ("watcher", "watcher-console-pw");
const NOBODY: (&str, &str) = ("nobody", "nobody-console-pw");

/// The screenshots (file stem) the script takes, and whether each is a full console page (those
/// must be more than 10 KB: a blank or broken page compresses to less).
const SHOTS: &[(&str, bool)] = &[
    ("01-overview", true),
    ("02-apps", true),
    ("03-app-new", true),
    ("04-app-edit", true),
    ("05-users", true),
    ("06-user", true),
    ("07-tokens", true),
    ("08-keys", true),
    ("09-events", true),
    ("10-overview-dark", true),
    ("11-viewer-apps", true),
    ("12-no-access", false),
    ("13-app-phone", true),
];

/// A user with roles (`TestServer::add_user` makes users without any).
async fn add_user_with_roles(srv: &TestServer, username: &str, password: &str, roles: &[&str]) {
    let rec = tether_core::model::UserRecord {
        user: tether_core::model::User {
            id: format!("user-{username}"),
            username: username.into(),
            email: Some(format!("{username}@example.com")),
            name: Some(format!("User {username}")),
            created_at: T0,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            disabled: false,
        },
        password_hash: tether_core::password::hash(password).expect("hash"),
    };
    srv.running().provider.store.create_user(&rec).await.expect("store user");
}

/// Where a reviewer finds the screenshots: `$CARGO_TARGET_DIR/console-screenshots`, or the
/// workspace's `target/console-screenshots`.
fn review_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
        Some(t) => workspace.join(t),
        None => workspace.join("target"),
    };
    target.join("console-screenshots")
}

/// Step "created": the app the console just made issues, over mutual TLS, a JWT bound to the
/// presented certificate (RFC 8705 `cnf.x5t#S256`), and nothing without a certificate. The token
/// is then shown to userinfo with another certificate, which is refused and recorded as a
/// `binding.mismatch` event (the script looks for it on the events page).
async fn check_certificate_binding(srv: &TestServer, app: &AppCreds) {
    let cert = client_cert("console-cert-app");
    let r = srv
        .client_with(&cert)
        .post(srv.url("/oauth2/token"))
        .basic_auth(&app.client_id, app.client_secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status(), 200, "client_credentials over mTLS for the app made in the console");
    let t: Value = r.json().await.expect("json");
    let at = t["access_token"].as_str().expect("access_token");
    let claims = jwt_claims(at);
    assert_eq!(claims["cnf"], json!({"x5t#S256": cert.thumbprint}), "the JWT is bound to the certificate: {claims}");
    assert_eq!(claims["binding_type"], "certificate", "{claims}");
    assert_eq!(jwt_header(at)["typ"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("at+jwt"));

    let e =
        assert_oauth_error(srv.token(app, &[("grant_type", "client_credentials")]).await, 400, "invalid_request").await;
    assert_eq!(e["error_description"], "TLS certificate not found in the request.");

    let thief = client_cert("someone-else");
    let r = srv.client_with(&thief).get(srv.url("/oauth2/userinfo")).bearer_auth(at).send().await.expect("userinfo");
    assert_eq!(r.status(), 401, "a certificate-bound token with another certificate");
    // Stored now rather than by the next background batch.
    let p = &srv.running().provider;
    p.audit.flush(&*p.store).await;
}

/// Step "dpop": after the console switched the binding to dpop, a token needs a DPoP proof
/// (RFC 9449) and is bound to the proof's key.
async fn check_dpop_binding(srv: &TestServer, app: &AppCreds) {
    let key = DpopKey::generate();
    let htu = srv.url("/oauth2/token");
    let proof = key.proof("POST", &htu, srv.clock.now(), None, None);
    let r = srv
        .client()
        .post(&htu)
        .basic_auth(&app.client_id, app.client_secret.as_deref())
        .header("dpop", proof)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status(), 200, "client_credentials with a DPoP proof");
    let t: Value = r.json().await.expect("json");
    assert_eq!(t["token_type"], "DPoP", "{t}");
    let claims = jwt_claims(t["access_token"].as_str().expect("access_token"));
    assert_eq!(claims["cnf"], json!({"jkt": key.jkt}), "{claims}");
    assert_eq!(claims["binding_type"], "dpop", "{claims}");

    let r = srv.token(app, &[("grant_type", "client_credentials")]).await;
    let e = assert_oauth_error(r, 400, "invalid_dpop_proof").await;
    assert!(e["error_description"].as_str().unwrap_or("").contains("DPoP proof is required"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium() {
    let chromium = std::env::var("TETHER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is required for the console test (apt-get install chromium, or set TETHER_CHROMIUM)"
    );
    let srv = TestServer::start().await;
    add_user_with_roles(&srv, ADMIN.0, ADMIN.1, &["admin"]).await;
    add_user_with_roles(&srv, VIEWER.0, VIEWER.1, &["viewer"]).await;
    srv.add_user(NOBODY.0, NOBODY.1).await;

    let d = TempDir::new("console");
    let ca_file = d.path().join("ca.pem");
    std::fs::write(&ca_file, &srv.ca_pem).unwrap();
    let shots = d.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let user = |(username, password): (&str, &str)| json!({"username": username, "password": password});
    let config = json!({
        "base": srv.base,
        "ca_file": ca_file,
        "chromium": chromium,
        "shots": shots,
        "users": {"admin": user(ADMIN), "viewer": user(VIEWER), "none": user(NOBODY)},
    });
    let config_file = d.path().join("config.json");
    std::fs::write(&config_file, config.to_string()).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/console.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .arg(&config_file)
        // Playwright's page.request goes out from Node, which must trust the test CA too.
        .env("NODE_EXTRA_CA_CERTS", &ca_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (install nodejs and `npm ci` in interop/)");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    // The script's progress, shown as it comes (the harness shows it when the test fails).
    let progress = tokio::spawn(async move {
        let mut all = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("{l}");
            all.push_str(&l);
            all.push('\n');
        }
        all
    });

    // The dialogue: hand-off lines get checked and answered "go"; the line with "ok" is the report.
    let mut seen: Vec<String> = Vec::new();
    let mut app: Option<AppCreds> = None;
    let mut handoffs: Vec<String> = Vec::new();
    let dialogue = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await.expect("read the script's stdout") {
            seen.push(line.clone());
            let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
            if msg.get("ok").is_some() {
                return Some(msg);
            }
            match msg["step"].as_str() {
                Some("created") => {
                    let creds = AppCreds {
                        client_id: msg["client_id"].as_str().expect("client_id").to_string(),
                        client_secret: Some(msg["client_secret"].as_str().expect("client_secret").to_string()),
                    };
                    let rec = srv.running().provider.find_app(&creds.client_id).await.unwrap().expect("the app exists");
                    assert_eq!(rec.app.name, "Console Cert App");
                    assert_eq!(rec.app.binding.as_str(), "certificate");
                    assert_eq!(rec.app.token_type.as_str(), "jwt");
                    let grants: Vec<&str> = rec.app.grant_types.iter().map(|g| g.as_str()).collect();
                    assert_eq!(grants, ["client_credentials"]);
                    check_certificate_binding(&srv, &creds).await;
                    app = Some(creds);
                }
                Some("dpop") => {
                    let creds = app.as_ref().expect("the app was created first");
                    assert_eq!(msg["client_id"], creds.client_id.as_str());
                    let rec = srv.running().provider.find_app(&creds.client_id).await.unwrap().expect("the app exists");
                    assert_eq!(rec.app.binding.as_str(), "dpop", "the console saved the binding");
                    check_dpop_binding(&srv, creds).await;
                }
                Some("stale") => {
                    // Past the console's re-authentication age (five minutes) for destructive acts.
                    srv.clock.advance(360);
                }
                _ => panic!("unexpected line from console.mjs: {line}"),
            }
            handoffs.push(msg["step"].as_str().unwrap_or("").to_string());
            stdin.write_all(b"go\n").await.expect("answer the script");
            stdin.flush().await.expect("answer the script");
        }
        None
    };
    let report = tokio::time::timeout(Duration::from_secs(300), dialogue).await;
    drop(stdin);
    let report = match report {
        Ok(r) => r.unwrap_or(Value::Null),
        Err(_) => panic!("the console test did not finish within 5 minutes; its stdout:\n{}", seen.join("\n")),
    };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the script exits after its report")
        .expect("wait for node");
    let stderr = progress.await.unwrap_or_default();
    assert!(
        status.success() && report["ok"] == true,
        "console test failed: {}\nstdout:\n{}\nstderr:\n{stderr}",
        report["error"],
        seen.join("\n")
    );
    assert_eq!(handoffs, ["created", "dpop", "stale"]);
    assert_eq!(report["facts"]["reauth"]["asked"], true, "deleting after five minutes asked for a fresh sign-in");
    let app = app.expect("the script handed off the created app");
    let facts = &report["facts"];
    assert!(facts.is_object(), "{report}");
    eprintln!("console facts: {facts}");

    // The screenshots, first: a reviewer wants them even if a check below fails.
    let files: Vec<PathBuf> = facts["screenshots"]
        .as_array()
        .expect("screenshots")
        .iter()
        .map(|f| PathBuf::from(f.as_str().unwrap()))
        .collect();
    let review = review_dir();
    std::fs::create_dir_all(&review).expect("create target/console-screenshots");
    for old in std::fs::read_dir(&review).expect("list screenshots").flatten() {
        if old.path().extension().is_some_and(|e| e == "png") {
            let _ = std::fs::remove_file(old.path());
        }
    }
    for f in &files {
        assert!(f.starts_with(&shots), "screenshot outside the shots directory: {}", f.display());
        std::fs::copy(f, review.join(f.file_name().unwrap())).expect("copy a screenshot");
    }
    eprintln!("console screenshots: {}", review.display());
    for (stem, full_page) in SHOTS {
        let f = shots.join(format!("{stem}.png"));
        assert!(files.contains(&f), "no screenshot {stem} in {files:?}");
        let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        let min = if *full_page { 10 * 1024 } else { 1024 };
        assert!(size > min, "screenshot {stem} is {size} bytes (expected more than {min})");
    }

    // The console cookie, as the browser holds it.
    let c = &facts["console_cookie"];
    assert_eq!(
        (&c["secure"], &c["httpOnly"], &c["sameSite"], &c["path"]),
        (&json!(true), &json!(true), &json!("Lax"), &json!("/console")),
        "{c}"
    );
    assert!(facts["login"]["path"].as_str().unwrap_or("").ends_with("/authorize"), "{}", facts["login"]);

    // The app: what the browser reported is what the store holds.
    assert_eq!(facts["app"]["client_id"], app.client_id.as_str());
    assert_eq!(facts["app"]["binding_saved"], "dpop");
    let rec = srv.running().provider.find_app(&app.client_id).await.unwrap().expect("the app");
    assert_eq!(rec.app.name, "Console Cert App", "the viewer's POST changed nothing");
    assert_eq!(rec.app.binding.as_str(), "dpop", "the viewer's POST changed nothing");
    assert_eq!(facts["form_error"]["status"], 400);
    let temp = facts["temp_app"]["client_id"].as_str().expect("temp app");
    assert!(srv.running().provider.find_app(temp).await.unwrap().is_none(), "the deleted app is gone");

    // carol: made in the console, without roles.
    let carol = srv.running().provider.store.get_user_by_name("carol").await.unwrap().expect("carol exists");
    assert!(carol.user.roles.is_empty(), "{:?}", carol.user.roles);
    assert_eq!(carol.user.email.as_deref(), Some("carol@example.com"));
    assert!(facts["carol"]["signed_out_flash"].as_str().unwrap_or("").to_lowercase().contains("signed out"));
    assert!(facts["admin_sessions"].as_u64().unwrap_or(0) >= 1);

    // Tokens.
    assert!(facts["tokens"]["revoked_id"].as_str().is_some_and(|s| !s.is_empty()), "{}", facts["tokens"]);
    assert!(facts["tokens"]["row_after"].as_str().unwrap_or("").to_lowercase().contains("revoked"));

    // Keys: rotated once (nothing more: the viewer's and the no-role user's POSTs were refused), and
    // the one retired is retired in the store.
    let kids = |v: &Value| -> Vec<String> {
        v.as_array().expect("kids").iter().map(|k| k.as_str().expect("kid").to_string()).collect()
    };
    let (before, after, new) =
        (kids(&facts["keys"]["before"]), kids(&facts["keys"]["after"]), kids(&facts["keys"]["new"]));
    assert!(!before.is_empty() && !new.is_empty(), "{}", facts["keys"]);
    assert!(before.iter().all(|k| after.contains(k)) && new.iter().all(|k| after.contains(k) && !before.contains(k)));
    let retired = facts["keys"]["retired"].as_str().expect("retired kid");
    assert!(before.iter().any(|k| k == retired), "a key from before the rotation was retired");
    let stored = srv.running().provider.store.list_keys().await.unwrap();
    assert_eq!(stored.len(), after.len(), "one rotation only: {stored:?}");
    let now = srv.clock.now();
    for k in &stored {
        let state = tether_core::admin_ops::key_state(k, now);
        let want = if k.kid == retired {
            tether_core::admin_ops::KeyState::Retired
        } else if before.contains(&k.kid) {
            tether_core::admin_ops::KeyState::Published
        } else {
            tether_core::admin_ops::KeyState::Active
        };
        assert_eq!(state, want, "key {}", k.kid);
    }

    // Events, CSRF.
    assert!(facts["events"]["admin_changes"].as_u64().unwrap_or(0) >= 1);
    assert!(facts["events"]["binding_mismatch"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(facts["csrf"]["missing"]["status"], 403);
    assert_eq!(facts["csrf"]["forged"]["status"], 403);

    // Sign-out, the viewer, the user without a role.
    assert_eq!(facts["signout"]["login_required_after"], true);
    let v = &facts["viewer"];
    assert_eq!(
        (&v["post_rotate_fake_csrf"], &v["post_rotate_own_csrf"], &v["post_app_edit_own_csrf"]),
        (&json!(403), &json!(403), &json!(403))
    );
    assert_eq!(v["keys_unchanged"], true);
    assert_eq!(facts["nobody"]["status"], 403);
    assert_eq!(facts["nobody"]["apps_status"], 403);
    assert_eq!(facts["nobody"]["says_no_access"], true);
    assert_eq!(facts["nobody"]["shows_client_id"], false);
}
