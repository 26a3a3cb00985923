use serde_json::Value;
use tether_testkit::*;

#[tokio::test]
async fn password_grant_issues_tokens_and_introspects() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "s3cret").await;
    let app = srv.create_app(app(&["password", "refresh_token"])).await;
    let r = srv.token(&app, &[("grant_type", "password"), ("username", "alice"), ("password", "s3cret")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let at = body["access_token"].as_str().unwrap();
    assert!(at.len() >= 43, "opaque token has >= 256 bits");
    assert!(body["refresh_token"].is_string());
    assert!(body.get("id_token").is_none(), "no openid scope, no ID token");
    let i = srv.introspect(&app, at).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["username"], "alice");
    assert_eq!(i["client_id"], app.client_id.as_str());
    assert_eq!(i["token_type"], "Bearer");
    assert_eq!(i["exp"], T0 + 3600);
    assert_eq!(i["iss"], srv.base.as_str());
    // The opaque token is not stored in clear anywhere.
    let bytes = srv.database_bytes().await;
    assert!(bytes.len() > 1000);
    assert!(!bytes.windows(at.len()).any(|w| w == at.as_bytes()), "token found in clear in the database");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "s3cret").await;
    let app = srv.create_app(app(&["password"])).await;
    let a = assert_oauth_error(
        srv.token(&app, &[("grant_type", "password"), ("username", "alice"), ("password", "nope")]).await,
        400,
        "invalid_grant",
    )
    .await;
    let b = assert_oauth_error(
        srv.token(&app, &[("grant_type", "password"), ("username", "bob"), ("password", "nope")]).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn client_credentials_and_auth_methods() {
    let srv = TestServer::start().await;
    let basic = srv.create_app(app(&["client_credentials"])).await;
    let r = srv.token(&basic, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "client_credentials issues no refresh token");
    assert!(body.get("scope").is_none(), "no user scopes on a token without a user: {body}");
    let i = srv.introspect(&basic, body["access_token"].as_str().unwrap()).await;
    assert_eq!(i["sub"], basic.client_id.as_str());
    assert!(i.get("username").is_none());

    // client_secret_post
    let mut ch = app(&["client_credentials"]);
    ch.auth_method = Some("client_secret_post".into());
    let post = srv.create_app(ch).await;
    let ok = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", post.client_id.as_str()),
            ("client_secret", post.client_secret.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Either secret method works for a secret client (clients differ in their defaults)...
    assert_eq!(srv.token(&post, &[("grant_type", "client_credentials")]).await.status(), 200);
    // ...but a confidential client cannot pose as a public one.
    let r = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", post.client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;
    // Both methods at once.
    let both = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .basic_auth(&basic.client_id, basic.client_secret.as_deref())
        .form(&[("grant_type", "client_credentials"), ("client_secret", "x")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(both, 400, "invalid_request").await;
    // Wrong secret and unknown client: 401 with WWW-Authenticate.
    let bad = AppCreds { client_id: basic.client_id.clone(), client_secret: Some("wrong".into()) };
    assert_oauth_error(srv.token(&bad, &[("grant_type", "client_credentials")]).await, 401, "invalid_client").await;
    let unknown = AppCreds { client_id: "nobody".into(), client_secret: Some("x".into()) };
    assert_oauth_error(srv.token(&unknown, &[("grant_type", "client_credentials")]).await, 401, "invalid_client").await;
    // A grant the app is not allowed; an unknown grant; a bad scope; a resource outside the audience.
    assert_oauth_error(
        srv.token(&basic, &[("grant_type", "password"), ("username", "a"), ("password", "b")]).await,
        400,
        "unauthorized_client",
    )
    .await;
    assert_oauth_error(srv.token(&basic, &[("grant_type", "urn:x:nope")]).await, 400, "unsupported_grant_type").await;
    assert_oauth_error(
        srv.token(&basic, &[("grant_type", "client_credentials"), ("scope", "admin")]).await,
        400,
        "invalid_scope",
    )
    .await;
    assert_oauth_error(
        srv.token(&basic, &[("grant_type", "client_credentials"), ("resource", "https://other.example")]).await,
        400,
        "invalid_target",
    )
    .await;
}

#[tokio::test]
async fn resource_sets_audience_within_the_apps_list() {
    let srv = TestServer::start().await;
    let mut ch = app(&["client_credentials"]);
    ch.audience = Some(vec!["https://api.example/orders".into(), "https://api.example/users".into()]);
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    let body: Value = srv.token(&a, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
    assert_eq!(jwt_claims(body["access_token"].as_str().unwrap())["aud"], "https://api.example/orders");
    let body: Value = srv
        .token(&a, &[("grant_type", "client_credentials"), ("resource", "https://api.example/users")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jwt_claims(body["access_token"].as_str().unwrap())["aud"], "https://api.example/users");
}

#[tokio::test]
async fn refresh_rotation_and_reuse_detection() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let app = srv.create_app(app(&["password", "refresh_token"])).await;
    let first: Value = srv
        .token(&app, &[("grant_type", "password"), ("username", "alice"), ("password", "pw")])
        .await
        .json()
        .await
        .unwrap();
    let rt1 = first["refresh_token"].as_str().unwrap().to_string();
    let second: Value =
        srv.token(&app, &[("grant_type", "refresh_token"), ("refresh_token", &rt1)]).await.json().await.unwrap();
    let rt2 = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2, "every use returns a new refresh token");
    let at2 = second["access_token"].as_str().unwrap().to_string();
    assert_eq!(srv.introspect(&app, &at2).await["active"], true);
    // Narrowing the scope is allowed, widening is not.
    let third: Value = srv
        .token(&app, &[("grant_type", "refresh_token"), ("refresh_token", &rt2), ("scope", "email")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(third["scope"], "email");
    let rt3 = third["refresh_token"].as_str().unwrap().to_string();
    assert_oauth_error(
        srv.token(&app, &[("grant_type", "refresh_token"), ("refresh_token", &rt3), ("scope", "openid admin")]).await,
        400,
        "invalid_scope",
    )
    .await;
    // Presenting a rotated token revokes the whole family, including the newest members.
    assert_oauth_error(
        srv.token(&app, &[("grant_type", "refresh_token"), ("refresh_token", &rt1)]).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(
        srv.token(&app, &[("grant_type", "refresh_token"), ("refresh_token", &rt3)]).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_eq!(
        srv.introspect(&app, third["access_token"].as_str().unwrap()).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(srv.introspect(&app, &at2).await, serde_json::json!({"active": false}));
    // Another client cannot use it; an expired one is refused.
    let fresh: Value = srv
        .token(&app, &[("grant_type", "password"), ("username", "alice"), ("password", "pw")])
        .await
        .json()
        .await
        .unwrap();
    let other = srv.create_app(tether_testkit::app(&["password", "refresh_token"])).await;
    let rt = fresh["refresh_token"].as_str().unwrap();
    assert_oauth_error(
        srv.token(&other, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await,
        400,
        "invalid_grant",
    )
    .await;
    srv.clock.advance(86_401);
    assert_oauth_error(
        srv.token(&app, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await,
        400,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn concurrent_refresh_is_single_use() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let app = srv.create_app(app(&["password", "refresh_token"])).await;
    let first: Value = srv
        .token(&app, &[("grant_type", "password"), ("username", "alice"), ("password", "pw")])
        .await
        .json()
        .await
        .unwrap();
    let rt = first["refresh_token"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = srv.client();
        let url = srv.url("/oauth2/token");
        let (id, secret, rt) = (app.client_id.clone(), app.client_secret.clone(), rt.clone());
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .basic_auth(id, secret)
                .form(&[("grant_type", "refresh_token"), ("refresh_token", rt.as_str())])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1, "exactly one concurrent refresh succeeds");
}
