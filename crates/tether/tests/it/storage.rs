//! Growth and upgrades: the background purge, and nodes running against a newer schema.

use serde_json::{Value, json};
use tether_testkit::*;

#[tokio::test]
async fn purge_removes_dead_rows_and_keeps_what_still_matters() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mut short = app(&["client_credentials"]);
    short.access_token_ttl = Some(60);
    let cc = srv.create_app(short).await;
    let mut long = app(&["password", "refresh_token"]);
    long.access_token_ttl = Some(86_400);
    let pw = srv.create_app(long).await;
    for _ in 0..25 {
        assert_eq!(srv.token(&cc, &[("grant_type", "client_credentials")]).await.status(), 200);
    }
    // A refresh token that has been rotated (used) but not expired must survive: replaying it
    // still revokes its family.
    let t: Value = srv
        .token(&pw, &[("grant_type", "password"), ("username", "alice"), ("password", "pw")])
        .await
        .json()
        .await
        .unwrap();
    let rt1 = t["refresh_token"].as_str().unwrap().to_string();
    let t2: Value =
        srv.token(&pw, &[("grant_type", "refresh_token"), ("refresh_token", &rt1)]).await.json().await.unwrap();
    let live_at = t2["access_token"].as_str().unwrap().to_string();
    // A revoked token.
    let t3: Value = srv
        .token(&pw, &[("grant_type", "password"), ("username", "alice"), ("password", "pw")])
        .await
        .json()
        .await
        .unwrap();
    let revoke = srv.client().post(srv.url("/oauth2/revoke")).basic_auth(&pw.client_id, pw.client_secret.as_deref());
    assert_eq!(revoke.form(&[("token", t3["access_token"].as_str().unwrap())]).send().await.unwrap().status(), 200);

    let p = &srv.running().provider;
    assert_eq!(p.purge_once().await.unwrap(), 0, "nothing is dead yet (grace period)");
    srv.clock.advance(60 + tether_core::provider::PURGE_GRACE + 1);
    let before = srv.count("access_tokens").await;
    let purged = p.purge_once().await.unwrap();
    assert!(purged >= 26, "25 expired client_credentials tokens and the revoked pair: {purged}");
    assert_eq!(srv.count("access_tokens").await, before - 26);
    // Still active: the refreshed token and its refresh family.
    assert_eq!(srv.introspect(&pw, &live_at).await["active"], true);
    let r = srv.token(&pw, &[("grant_type", "refresh_token"), ("refresh_token", &rt1)]).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
    assert_eq!(srv.introspect(&pw, &live_at).await, json!({"active": false}), "reuse detection survived the purge");
    // Bounded: a second run has nothing left to do.
    assert_eq!(p.purge_once().await.unwrap(), 0);
}

#[tokio::test]
async fn a_node_runs_against_a_schema_migrated_further_by_a_newer_version() {
    // Migrations are additive. Simulate version N+1 having migrated the database further (a new
    // column and table, and a migration number this build does not know), then start a node of
    // this version on it and use it.
    let first = TestServer::start().await;
    let a = first.create_app(app(&["client_credentials"])).await;
    let sql = "ALTER TABLE access_tokens ADD COLUMN future_column TEXT; \
               CREATE TABLE future_table (id TEXT PRIMARY KEY); \
               INSERT INTO tether_migrations (version, applied_at) VALUES (999, 0);";
    match &first.database_url {
        Some(url) => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
        None => rusqlite::Connection::open(first.dir.path().join("tether.db")).unwrap().execute_batch(sql).unwrap(),
    }
    let dir = first.dir.path().to_path_buf();
    let url = first.database_url.clone();
    let t: Value = first.token(&a, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
    let _keep = first.stop().await;
    // Same data dir (master key) and database, a fresh process state.
    let second = TestServer::start_with(|s| {
        s.data_dir = dir.clone();
        s.master_key_file = dir.join("master.key");
        match &url {
            Some(u) => s.database_url = u.clone(),
            None => s.database_url = format!("sqlite://{}", dir.join("tether.db").display()),
        }
    })
    .await;
    assert_eq!(second.introspect(&a, t["access_token"].as_str().unwrap()).await["active"], true);
    assert_eq!(second.token(&a, &[("grant_type", "client_credentials")]).await.status(), 200);
}

/// PostgreSQL stops and starts again during a load: requests in the gap fail with 503
/// `temporarily_unavailable` (never a 500, never a panic), every token the server answered with
/// is stored, and the server recovers by itself. Runs in the PostgreSQL pass of the suite, on a
/// cluster of its own so that the other tests keep theirs.
#[tokio::test]
async fn postgres_restart_under_load() {
    if postgres_admin_url().is_none() {
        eprintln!(
            "postgres_restart_under_load runs in the PostgreSQL pass (scripts/test); SQLite's fault test is locked_database_answers_503_and_recovers"
        );
        return;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    // The port lies below the kernel's ephemeral range (32768–60999 by default): an outgoing
    // connection of this very load can then never take it while PostgreSQL is down, and a port
    // another process holds just means trying the next one.
    let pgdir = TempDir::new("pgfault");
    let run = |script: &str, port: u16| {
        std::process::Command::new(format!("{root}/scripts/{script}"))
            .env("TETHER_PG_DIR", pgdir.path().join(format!("cluster-{port}")))
            .env("TETHER_PG_PORT", port.to_string())
            .output()
            .expect("run pg script")
    };
    let mut started = None;
    for _ in 0..5 {
        let port = 20000 + (u16::from_le_bytes(tether_core::secret::random_bytes::<2>()) % 10000);
        let out = run("pg-start", port);
        if out.status.success() {
            started = Some((port, String::from_utf8_lossy(&out.stdout).trim().to_string()));
            break;
        }
        eprintln!("pg-start on port {port} failed, trying another: {}", String::from_utf8_lossy(&out.stderr));
        run("pg-stop", port);
    }
    let (port, admin) = started.expect("a throwaway PostgreSQL cluster started on one of 5 ports");
    let pg = |script: &str| {
        let out = run(script, port);
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    };
    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query("CREATE DATABASE fault").execute(&mut c).await.unwrap();
    }
    let url = admin.replace("/postgres", "/fault");
    let srv = std::sync::Arc::new(TestServer::start_with(|s| s.database_url = url.clone()).await);
    let mut ch = app(&["client_credentials"]);
    ch.introspect_any = Some(true);
    let a = std::sync::Arc::new(srv.create_app(ch).await);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (srv, a, stop) = (srv.clone(), a.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let c = srv.client_builder().timeout(std::time::Duration::from_secs(30)).build().unwrap();
            let (mut issued, mut unavailable, mut other) = (Vec::new(), 0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = c
                    .post(srv.url("/oauth2/token"))
                    .basic_auth(&a.client_id, a.client_secret.as_deref())
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    200 => issued.push(r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()),
                    503 => {
                        let b: Value = r.json().await.unwrap();
                        assert_eq!(b["error"], "temporarily_unavailable");
                        unavailable += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    s => other.push(s),
                }
            }
            (issued, unavailable, other)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    pg("pg-stop");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    pg("pg-start");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut issued, mut unavailable, mut other) = (Vec::new(), 0, Vec::new());
    for w in workers {
        let (i, u, o) = w.await.unwrap();
        issued.extend(i);
        unavailable += u;
        other.extend(o);
    }
    assert!(other.is_empty(), "only 200 or 503, got {other:?}");
    assert!(unavailable > 0, "the outage was noticed");
    assert!(issued.len() > 20, "tokens were issued before and after: {}", issued.len());
    // Recovered by itself: new requests succeed, and every token answered with was stored.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if srv.token(&a, &[("grant_type", "client_credentials")]).await.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "did not recover");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for t in &issued {
        assert_eq!(srv.introspect(&a, t).await["active"], true, "an answered token was not stored");
    }
    pg("pg-stop");
}
