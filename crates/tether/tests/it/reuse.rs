//! token-binding.md B-3: the reuse and renewal rules, driven through `--binding client-request`.

use std::collections::HashSet;

use serde_json::{Value, json};
use tether_testkit::*;

async fn bound_app(srv: &TestServer, token_type: &str) -> AppCreds {
    bound_app_for(srv, token_type, "password").await
}

async fn bound_app_for(srv: &TestServer, token_type: &str, grant: &str) -> AppCreds {
    let mut ch = app(&[grant, "refresh_token"]);
    ch.token_type = Some(token_type.into());
    ch.binding = Some("client-request".into());
    srv.create_app(ch).await
}

async fn get(srv: &TestServer, a: &AppCreds, tbid: Option<&str>) -> Value {
    get_with(srv, a, "password", tbid).await
}

async fn get_with(srv: &TestServer, a: &AppCreds, grant: &str, tbid: Option<&str>) -> Value {
    let mut form = match grant {
        "password" => vec![("grant_type", "password"), ("username", "alice"), ("password", "pw")],
        _ => vec![("grant_type", grant)],
    };
    if let Some(t) = tbid {
        form.push(("tokenBindingId", t));
    }
    let r = srv.token(a, &form).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn at(v: &Value) -> String {
    v["access_token"].as_str().unwrap().to_string()
}

/// The four rows of B-3, for JWT and opaque apps, on the password and the client credentials
/// grant, all against one server.
#[tokio::test]
async fn the_four_rows_of_the_b3_table_on_one_server() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    for grant in ["password", "client_credentials"] {
        four_rows(&srv, grant).await;
    }
}

async fn four_rows(srv: &TestServer, grant: &str) {
    let jwt = bound_app_for(srv, "jwt", grant).await;
    let opaque = bound_app_for(srv, "opaque", grant).await;

    // JWT, no tokenBindingId: a new token every time, the previous one revoked.
    let a1 = at(&get_with(srv, &jwt, grant, None).await);
    srv.clock.advance(1);
    let a2 = at(&get_with(srv, &jwt, grant, None).await);
    assert_ne!(a1, a2);
    assert_eq!(srv.introspect(&jwt, &a1).await, json!({"active": false}));
    assert_eq!(srv.introspect(&jwt, &a2).await["active"], true);

    // JWT, tokenBindingId: a new token per request; other ids untouched; a repeated id revokes its own.
    let x1 = at(&get_with(srv, &jwt, grant, Some("device-x")).await);
    let y1 = at(&get_with(srv, &jwt, grant, Some("device-y")).await);
    srv.clock.advance(1);
    let x2 = at(&get_with(srv, &jwt, grant, Some("device-x")).await);
    assert_ne!(x1, x2);
    assert_eq!(srv.introspect(&jwt, &x1).await, json!({"active": false}));
    assert_eq!(srv.introspect(&jwt, &x2).await["active"], true);
    assert_eq!(srv.introspect(&jwt, &y1).await["active"], true, "other ids are not revoked");
    assert_eq!(
        srv.introspect(&jwt, &a2).await["active"],
        true,
        "unbound token of the app is not revoked by bound ones"
    );
    let claims = jwt_claims(&x2);
    assert_eq!(claims["binding_type"], "client-request");
    assert_eq!(claims["binding_ref"], tether_core::binding::binding_ref("device-x"));
    assert!(claims.get("cnf").is_none());

    // Opaque, no tokenBindingId: the same token every time, with its remaining lifetime.
    let o1 = get_with(srv, &opaque, grant, None).await;
    srv.clock.advance(100);
    let o2 = get_with(srv, &opaque, grant, None).await;
    assert_eq!(at(&o1), at(&o2));
    assert_eq!(o2["expires_in"], 3500);
    if grant == "password" {
        assert_ne!(o1["refresh_token"], o2["refresh_token"], "a fresh refresh family per holder");
    }

    // Opaque, tokenBindingId: one token per id, the same again for a repeated id.
    let p1 = at(&get_with(srv, &opaque, grant, Some("p")).await);
    let q1 = at(&get_with(srv, &opaque, grant, Some("q")).await);
    let p2 = at(&get_with(srv, &opaque, grant, Some("p")).await);
    assert_eq!(p1, p2);
    assert_ne!(p1, q1);
    assert_ne!(p1, at(&o1));
    let i = srv.introspect(&opaque, &p1).await;
    assert_eq!(i["binding_type"], "client-request");
    assert_eq!(i["binding_ref"], tether_core::binding::binding_ref("p"));
    assert_eq!(srv.introspect(&opaque, &q1).await["active"], true);
}

#[tokio::test]
async fn reused_opaque_holders_do_not_kill_each_others_refresh_tokens() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let opaque = bound_app(&srv, "opaque").await;
    let h1 = get(&srv, &opaque, None).await;
    let h2 = get(&srv, &opaque, None).await;
    assert_eq!(at(&h1), at(&h2));
    // Holder 1 refreshes twice and then replays its first refresh token: its family dies...
    let r1 = h1["refresh_token"].as_str().unwrap();
    let n: Value =
        srv.token(&opaque, &[("grant_type", "refresh_token"), ("refresh_token", r1)]).await.json().await.unwrap();
    assert_ne!(at(&n), at(&h1), "refresh always issues a new access token");
    assert_eq!(
        srv.introspect(&opaque, &at(&h1)).await,
        json!({"active": false}),
        "the key's previous token is revoked"
    );
    assert_oauth_error(
        srv.token(&opaque, &[("grant_type", "refresh_token"), ("refresh_token", r1)]).await,
        400,
        "invalid_grant",
    )
    .await;
    // ...but holder 2's refresh token lives on.
    let r2 = h2["refresh_token"].as_str().unwrap();
    assert_eq!(srv.token(&opaque, &[("grant_type", "refresh_token"), ("refresh_token", r2)]).await.status(), 200);
}

#[tokio::test]
async fn expired_tokens_are_not_reused_and_unbound_apps_never_reuse() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let opaque = bound_app(&srv, "opaque").await;
    let t1 = at(&get(&srv, &opaque, None).await);
    srv.clock.advance(3600);
    let t2 = at(&get(&srv, &opaque, None).await);
    assert_ne!(t1, t2);
    // Binding none: independent tokens, nothing revoked.
    let plain = srv.create_app(app(&["password"])).await;
    let u1 = at(&get(&srv, &plain, None).await);
    let u2 = at(&get(&srv, &plain, None).await);
    assert_ne!(u1, u2);
    assert_eq!(srv.introspect(&plain, &u1).await["active"], true);
    assert!(srv.introspect(&plain, &u1).await.get("binding_type").is_none());
}

#[tokio::test]
async fn token_binding_id_limit() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = bound_app(&srv, "jwt").await;
    let ok = "a".repeat(255);
    assert_eq!(
        srv.token(
            &a,
            &[("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("tokenBindingId", &ok)]
        )
        .await
        .status(),
        200
    );
    let long = "a".repeat(256);
    let before = srv.count("access_tokens").await;
    let r = srv
        .token(&a, &[("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("tokenBindingId", &long)])
        .await;
    assert_oauth_error(r, 400, "invalid_request").await;
    assert_eq!(srv.count("access_tokens").await, before, "nothing written");
}

#[tokio::test]
async fn concurrent_identical_requests_leave_one_active_token() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mut cc = app(&["client_credentials"]);
    cc.binding = Some("client-request".into());
    let opaque = srv.create_app(cc.clone()).await;
    cc.token_type = Some("jwt".into());
    let jwt = srv.create_app(cc).await;
    for (a, opaque_app) in [(&opaque, true), (&jwt, false)] {
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (c, url, id, secret) =
                (srv.client(), srv.url("/oauth2/token"), a.client_id.clone(), a.client_secret.clone());
            tasks.push(tokio::spawn(async move {
                let r = c
                    .post(url)
                    .basic_auth(id, secret)
                    .form(&[("grant_type", "client_credentials"), ("tokenBindingId", "same")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
            }));
        }
        let mut tokens = HashSet::new();
        for t in tasks {
            tokens.insert(t.await.unwrap());
        }
        let mut active = 0;
        for t in &tokens {
            if srv.introspect(a, t).await["active"] == true {
                active += 1;
            }
        }
        if opaque_app {
            assert_eq!(tokens.len(), 1, "one opaque token for one key, however many concurrent requests");
        } else {
            assert_eq!(tokens.len(), 16, "a new JWT per request");
        }
        assert_eq!(active, 1, "exactly one active token per key");
    }
}

/// B-11: a used `tokenBindingId` and an opaque token are never stored in clear (only their hashes;
/// the MD5 binding reference is an identifier and is kept).
#[tokio::test]
async fn token_binding_ids_and_opaque_tokens_are_not_stored_in_clear() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let opaque = bound_app(&srv, "opaque").await;
    let tbid = "tbid-7f3a9c1e-secret-binding-value";
    let t = get(&srv, &opaque, Some(tbid)).await;
    let token = at(&t);
    let refresh = t["refresh_token"].as_str().unwrap().to_string();
    let bytes = srv.database_bytes().await;
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(tbid), "tokenBindingId found in clear in the database");
    assert!(!contains(&token), "opaque access token found in clear in the database");
    assert!(!contains(&refresh), "refresh token found in clear in the database");
    assert!(contains(&tether_core::binding::binding_ref(tbid)), "the binding reference is kept (sanity check)");
}
