//! `tether backup` while `tether serve` answers a stream of token requests, then `tether
//! restore` into another data directory: every token answered before the backup began
//! introspects active there, the backup holds no master key, and the refusals say what to do.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use tether_testkit::TempDir;

use crate::binary::{Proc, cli_db, client, port_of};

/// The CLI on a data dir (`db`: a database URL instead of its SQLite database).
fn cli(dir: &Path, args: &[&str], db: &Option<String>) -> (i32, String, String) {
    cli_db(dir, db, args, None)
}

struct Server {
    _p: Proc,
    base: String,
    http: reqwest::Client,
}

fn serve(dir: &Path) -> Server {
    let mut p = Proc::spawn(
        dir,
        &["serve", "--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--metrics-listen", "off"],
        &[],
    );
    let port = port_of(&p.wait_for("listening on https://"));
    Server { _p: p, base: format!("https://localhost:{port}"), http: client(&dir.join("tls/ca.pem"), port) }
}

async fn token(s: &Server, app: &(String, String)) -> Option<String> {
    let r = s
        .http
        .post(format!("{}/oauth2/token", s.base))
        .basic_auth(&app.0, Some(&app.1))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json::<Value>().await.ok()?["access_token"].as_str().map(str::to_string)
}

async fn active(s: &Server, app: &(String, String), tok: &str) -> bool {
    let v: Value = s
        .http
        .post(format!("{}/oauth2/introspect", s.base))
        .basic_auth(&app.0, Some(&app.1))
        .form(&[("token", tok)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["active"] == Value::Bool(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_and_restore_elsewhere() {
    let d = TempDir::new("backup");
    let (a, c) = (d.path().join("a"), d.path().join("c"));
    if let Ok(url) = std::env::var("TETHER_TEST_POSTGRES_URL") {
        // PostgreSQL has its own tools: the command says which, and writes nothing.
        let out = d.path().join("pg.db");
        let (code, _, err) = cli(&a, &["backup", "--out", out.to_str().unwrap()], &Some(url.clone()));
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("pg_dump") && err.contains("pg_restore"), "{err}");
        assert!(!out.exists());
        return;
    }
    let (code, _, err) = cli(&a, &["init"], &None);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(
        &a,
        &["app", "create", "--name", "svc", "--grant-types", "client_credentials", "--token-type", "opaque", "--json"],
        &None,
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let app = (v["client_id"].as_str().unwrap().to_string(), v["client_secret"].as_str().unwrap().to_string());

    let server = Arc::new(serve(&a));
    let mut before = Vec::new();
    for _ in 0..20 {
        before.push(token(&server, &app).await.expect("a token before the backup"));
    }
    // Load while the backup runs: tokens keep being issued (and written) throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (s, app, stop) = (server.clone(), app.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if token(&s, &app).await.is_some() {
                    n += 1;
                }
            }
            n
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let file = d.path().join("tether-backup.db");
    let f = file.clone();
    let a2 = a.clone();
    let (code, said, err) =
        tokio::task::spawn_blocking(move || cli(&a2, &["backup", "--out", f.to_str().unwrap()], &None)).await.unwrap();
    assert_eq!(code, 0, "backup under load: {err}");
    assert!(said.contains("master key is not in it"), "{said}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut during = 0;
    for l in load {
        during += l.await.unwrap();
    }
    assert!(during > 0, "the server answered while the backup ran");
    drop(server);

    // The copy: private, one file, no master key inside.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!d.path().join("tether-backup.db-wal").exists());
    let master = std::fs::read(a.join("master.key")).expect("the master key file");
    let bytes = std::fs::read(&file).unwrap();
    let key_text = String::from_utf8_lossy(&master).trim().to_string();
    assert!(!key_text.is_empty());
    assert!(
        !bytes.windows(key_text.len()).any(|w| w == key_text.as_bytes()),
        "the master key must never be inside a backup"
    );
    // A backup never overwrites a file.
    let (code, _, err) = cli(&a, &["backup", "--out", file.to_str().unwrap()], &None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exists"), "{err}");

    // Restore elsewhere: refused into a directory that has a database; then into an empty one,
    // with the master key put beside it as the command says.
    let (code, _, err) = cli(&a, &["restore", file.to_str().unwrap()], &None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("empty data directory"), "{err}");
    let (code, said, err) = cli(&c, &["restore", file.to_str().unwrap()], &None);
    assert_eq!(code, 0, "{err}");
    assert!(said.contains("master key") && said.contains("master.key"), "{said}");
    std::fs::copy(a.join("master.key"), c.join("master.key")).unwrap();
    std::fs::set_permissions(c.join("master.key"), std::fs::Permissions::from_mode(0o600)).unwrap();

    let restored = serve(&c);
    for (i, t) in before.iter().enumerate() {
        assert!(active(&restored, &app, t).await, "token {i} answered before the backup is missing after restore");
    }
    // The restored server works on its own: it issues and introspects new tokens.
    let t = token(&restored, &app).await.expect("a token from the restored server");
    assert!(active(&restored, &app, &t).await);
    // Not a Tether backup: refused, nothing written.
    let junk = d.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let (code, _, err) = cli(&d.path().join("e"), &["restore", junk.to_str().unwrap()], &None);
    assert_eq!(code, 1, "{err}");
    assert!(!d.path().join("e/tether.db").exists());
}
