//! Device authorization grant (RFC 8628) and the `device-flow` binding (token-binding.md B-8).

use serde_json::{Value, json};
use tether_testkit::*;

const DC: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub(crate) async fn device_app(srv: &TestServer) -> AppCreds {
    let mut ch = app(&["device_code", "refresh_token"]);
    ch.binding = Some("device-flow".into());
    srv.create_app(ch).await
}

pub(crate) async fn start(srv: &TestServer, a: &AppCreds) -> Value {
    let r = srv
        .client()
        .post(srv.url("/oauth2/device_authorize"))
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .form(&[("scope", "openid profile")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().await.unwrap()
}

pub(crate) async fn poll(srv: &TestServer, a: &AppCreds, device_code: &str) -> reqwest::Response {
    srv.token(a, &[("grant_type", DC), ("device_code", device_code)]).await
}

/// The user's side, on the verification page: code from the link, sign in, decide.
pub(crate) async fn approve(srv: &TestServer, user_code: &str, decision: &str) -> String {
    let b = srv.browser();
    let typed = user_code.replace('-', "").to_lowercase(); // compared case- and dash-insensitively
    let r = b.get(srv.url(&format!("/oauth2/device?user_code={typed}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("name=\"username\"") && html.contains("name=\"password\""), "{html}");
    assert!(html.contains(user_code), "the sign-in page names the code");
    let mut form = hidden_inputs(&html);
    form.extend([("username".to_string(), "alice".to_string()), ("password".to_string(), "pw".to_string())]);
    let r = b.post(srv.url("/oauth2/device")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(user_code) && html.contains("name=\"approve\""), "approval page: {html}");
    let mut form = hidden_inputs(&html);
    form.push(("approve".into(), decision.into()));
    let r = b.post(srv.url("/oauth2/device")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn device_flow_end_to_end() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = device_app(&srv).await;
    let d = start(&srv, &a).await;
    let user_code = d["user_code"].as_str().unwrap().to_string();
    let device_code = d["device_code"].as_str().unwrap().to_string();
    assert!(device_code.len() >= 43, "at least 256 bits");
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert!(user_code.replace('-', "").chars().all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)), "{user_code}");
    assert_eq!(d["verification_uri"], srv.url("/oauth2/device"));
    assert_eq!(d["verification_uri_complete"], srv.url(&format!("/oauth2/device?user_code={user_code}")));
    assert_eq!(d["expires_in"], 600);
    assert_eq!(d["interval"], 5);

    // Polling before the user decides; too fast means slow_down, and the interval grows by 5 s.
    assert_oauth_error(poll(&srv, &a, &device_code).await, 400, "authorization_pending").await;
    let e = assert_oauth_error(poll(&srv, &a, &device_code).await, 400, "slow_down").await;
    assert!(e["error_description"].as_str().unwrap().contains("10 seconds"), "{e}");
    srv.clock.advance(6);
    assert_oauth_error(poll(&srv, &a, &device_code).await, 400, "slow_down").await;
    srv.clock.advance(16);
    assert_oauth_error(poll(&srv, &a, &device_code).await, 400, "authorization_pending").await;

    let page = approve(&srv, &user_code, "yes").await;
    assert!(page.contains("Device connected"), "{page}");
    srv.clock.advance(20);
    let r = poll(&srv, &a, &device_code).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert!(t["refresh_token"].is_string());
    assert!(t["id_token"].is_string());
    let i = srv.introspect(&a, t["access_token"].as_str().unwrap()).await;
    assert_eq!(i["username"], "alice");
    assert_eq!(i["binding_type"], "device-flow");
    assert_eq!(i["binding_ref"], tether_core::binding::binding_ref(&device_code));
    // A device code yields tokens once.
    srv.clock.advance(20);
    assert_oauth_error(poll(&srv, &a, &device_code).await, 400, "invalid_grant").await;
    // Neither code is stored in clear.
    let bytes = srv.database_bytes().await;
    for secret in [device_code.as_str(), &user_code.replace('-', "")] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} stored in clear");
    }
    // The refresh token keeps the device binding.
    let r = srv
        .token(&a, &[("grant_type", "refresh_token"), ("refresh_token", t["refresh_token"].as_str().unwrap())])
        .await;
    let t2: Value = r.json().await.unwrap();
    assert_eq!(srv.introspect(&a, t2["access_token"].as_str().unwrap()).await["binding_type"], "device-flow");

    // The page no longer accepts the used code.
    let r = srv.browser().get(srv.url(&format!("/oauth2/device?user_code={user_code}"))).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not valid"));

    let disco: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(disco["device_authorization_endpoint"], srv.url("/oauth2/device_authorize"));
    assert!(disco["grant_types_supported"].as_array().unwrap().contains(&json!(DC)));
}

#[tokio::test]
async fn denied_expired_foreign_and_unknown_device_codes() {
    let srv = TestServer::start_with(|s| {
        s.device_expires_in = 120;
        s.device_interval = 2;
    })
    .await;
    srv.add_user("alice", "pw").await;
    let a = device_app(&srv).await;
    let other = device_app(&srv).await;

    let d = start(&srv, &a).await;
    assert_eq!(d["expires_in"], 120, "[device] expires_in_seconds");
    assert_eq!(d["interval"], 2, "[device] interval_seconds");
    let page = approve(&srv, d["user_code"].as_str().unwrap(), "no").await;
    assert!(page.contains("denied"), "{page}");
    assert_oauth_error(poll(&srv, &a, d["device_code"].as_str().unwrap()).await, 400, "access_denied").await;

    let d = start(&srv, &a).await;
    let code = d["device_code"].as_str().unwrap();
    assert_oauth_error(poll(&srv, &other, code).await, 400, "invalid_grant").await;
    assert_oauth_error(poll(&srv, &a, "no-such-code").await, 400, "invalid_grant").await;
    srv.clock.advance(121);
    assert_oauth_error(poll(&srv, &a, code).await, 400, "expired_token").await;

    // An app without the grant.
    let plain = srv.create_app(app(&["client_credentials"])).await;
    let r = srv
        .client()
        .post(srv.url("/oauth2/device_authorize"))
        .basic_auth(&plain.client_id, plain.client_secret.as_deref())
        .form(&[("scope", "profile")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 400, "unauthorized_client").await;
    // A public device client names itself with client_id.
    let mut ch = app(&["device_code"]);
    ch.public = Some(true);
    let public = srv.create_app(ch).await;
    let r = srv
        .client()
        .post(srv.url("/oauth2/device_authorize"))
        .form(&[("client_id", public.client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn wrong_user_codes_are_throttled() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = device_app(&srv).await;
    let d = start(&srv, &a).await;
    let b = srv.browser();
    let r = b.get(srv.url("/oauth2/device")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("name=\"user_code\""));
    let form = hidden_inputs(&html);
    let submit = |code: &str| {
        let mut f = form.clone();
        f.push(("user_code".into(), code.into()));
        b.post(srv.url("/oauth2/device")).form(&f).send()
    };
    let r = submit("BCDF-GHJK").await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not valid"));
    for _ in 0..19 {
        assert_eq!(submit("bcdf-ghjk").await.unwrap().status(), 400);
    }
    let r = submit(d["user_code"].as_str().unwrap()).await.unwrap();
    assert_eq!(r.status(), 429, "throttled even for the right code");
    assert!(r.text().await.unwrap().contains("Too many wrong codes"));
    srv.clock.advance(301);
    let r = submit(d["user_code"].as_str().unwrap()).await.unwrap();
    assert_eq!(r.status(), 200, "after the window the right code works");
}
