//! Malformed and hostile requests: a clear RFC 6749 §5.2 error, never a 500 or a panic, and
//! nothing written.

use serde_json::Value;
use tether_testkit::*;

#[tokio::test]
async fn malformed_token_requests() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = srv.create_app(app(&["password", "client_credentials"])).await;
    let (id, secret) = (a.client_id.clone(), a.client_secret.clone().unwrap());
    let before = (srv.count("access_tokens").await, srv.count("refresh_tokens").await);
    let c = srv.client();
    let url = srv.url("/oauth2/token");

    let r = c
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    let b = assert_oauth_error(r, 400, "invalid_request").await;
    assert!(b["error_description"].as_str().unwrap().contains("Content-Type"));

    let r = c
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=password")
        .send()
        .await
        .unwrap();
    let b = assert_oauth_error(r, 400, "invalid_request").await;
    assert!(b["error_description"].as_str().unwrap().contains("more than once"));

    let r = c.post(&url).basic_auth(&id, Some(&secret)).form(&[("scope", "x")]).send().await.unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;

    let big = format!("grant_type=client_credentials&pad={}", "a".repeat(200_000));
    let r = c
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 413, "invalid_request").await;

    let r = c
        .post(&url)
        .header("authorization", "Basic !!!notbase64")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;

    let r = c.post(&url).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;

    let junk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let r = c
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(junk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = c
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "password"), ("username", "alice")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;

    let r = c
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "authorization_code"), ("code", "nope")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 400, "unauthorized_client").await;

    let r = c.get(&url).send().await.unwrap();
    assert_oauth_error(r, 405, "invalid_request").await;

    let r = c.get(srv.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    let r = c
        .post(srv.url("/oauth2/introspect"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", "x".repeat(20_000))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!({"active": false}));

    assert_eq!((srv.count("access_tokens").await, srv.count("refresh_tokens").await), before, "nothing was written");
}

#[tokio::test]
async fn http1_and_http2_both_served() {
    let srv = TestServer::start().await;
    let h1 = srv.client_builder().http1_only().build().unwrap().get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.status(), 200);
    let h2 = srv.client().get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
}

#[tokio::test]
async fn locked_database_answers_503_and_recovers() {
    let srv = TestServer::start().await;
    let a = srv.create_app(app(&["client_credentials"])).await;
    let before = srv.count("access_tokens").await;
    // Another client takes the token table's write lock and holds it.
    enum Locker {
        Sqlite(rusqlite::Connection),
        Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    }
    let locker = match &srv.database_url {
        None => {
            let c = rusqlite::Connection::open(srv.dir.path().join("tether.db")).unwrap();
            c.execute_batch("BEGIN EXCLUSIVE").unwrap();
            Locker::Sqlite(c)
        }
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE access_tokens IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();
            Locker::Postgres(tx)
        }
    };
    let r = srv.token(&a, &[("grant_type", "client_credentials")]).await;
    let retry = r.headers().get("retry-after").cloned();
    assert_oauth_error(r, 503, "temporarily_unavailable").await;
    assert!(retry.is_some());
    match locker {
        Locker::Sqlite(c) => c.execute_batch("ROLLBACK").unwrap(),
        Locker::Postgres(tx) => tx.rollback().await.unwrap(),
    }
    assert_eq!(srv.count("access_tokens").await, before, "no token half-issued");
    let r = srv.token(&a, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status(), 200, "recovers by itself");
    assert_eq!(srv.count("access_tokens").await, before + 1);
}

#[tokio::test]
async fn client_certificates_are_requested_not_required() {
    // With and without a client certificate, the handshake and the request succeed.
    let srv = TestServer::start().await;
    let key = rcgen_key();
    let id = reqwest::Identity::from_pem(key.as_bytes()).unwrap();
    let with_cert = srv.client_builder().identity(id).build().unwrap();
    assert_eq!(with_cert.get(srv.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(srv.client().get(srv.url("/healthz")).send().await.unwrap().status(), 200);
}

/// A self-signed client certificate and key, PEM, generated for this test.
fn rcgen_key() -> String {
    tether_testkit::self_signed_client_pem("client-a")
}

#[tokio::test]
async fn failed_and_abandoned_writes_leave_the_store_usable() {
    let srv = TestServer::start().await;
    let a = srv.create_app(app(&["client_credentials"])).await;
    let p = &srv.running().provider;
    // A write that fails inside its transaction (duplicate user), and ones that find nothing.
    let u = p.store.get_user_by_name("nobody").await.unwrap();
    assert!(u.is_none());
    srv.add_user("dup", "pw").await;
    let rec = p.store.get_user_by_name("dup").await.unwrap().unwrap();
    assert!(matches!(p.store.create_user(&rec).await, Err(tether_core::error::StoreError::Conflict(_))));
    assert!(!p.store.delete_user("nobody", T0).await.unwrap());
    assert!(!p.store.delete_app("nobody", T0).await.unwrap());
    // Requests abandoned mid-flight (the client gives up after a millisecond).
    for _ in 0..50 {
        let c = srv.client_builder().timeout(std::time::Duration::from_millis(1)).build().unwrap();
        let _ = c
            .post(srv.url("/oauth2/token"))
            .basic_auth(&a.client_id, a.client_secret.as_deref())
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await;
    }
    let r = srv.token(&a, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status(), 200, "writes still work");
}
