//! Pushed authorization requests (RFC 9126): push, use once (a reload of the login page still
//! works), expiry, another client's request_uri, PAR required per app, DPoP at the push binding the
//! code, and the push refusing what the authorization endpoint would refuse.

use reqwest::{Client, Response};
use serde_json::{Value, json};
use tether_core::clock::Clock;
use tether_testkit::*;

const CB: &str = "https://app.example/cb";

async fn push(srv: &TestServer, a: &AppCreds, form: &[(&str, &str)], dpop: Option<String>) -> Response {
    let mut r = srv.client().post(srv.url("/oauth2/par")).basic_auth(&a.client_id, a.client_secret.as_deref());
    if let Some(p) = dpop {
        r = r.header("dpop", p);
    }
    r.form(form).send().await.unwrap()
}

async fn pushed(srv: &TestServer, a: &AppCreds, form: &[(&str, &str)]) -> String {
    let r = push(srv, a, form, None).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in"], 60);
    let uri = v["request_uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("urn:ietf:params:oauth:request_uri:"), "{uri}");
    uri
}

fn front(client_id: &str, request_uri: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("request_uri", request_uri)
        .finish()
}

async fn get(browser: &Client, srv: &TestServer, query: &str) -> Response {
    browser.get(srv.url(&format!("/oauth2/authorize?{query}"))).send().await.unwrap()
}

fn code_app() -> tether_core::admin::AppChanges {
    app(&["authorization_code", "refresh_token"])
}

#[tokio::test]
async fn a_pushed_request_serves_one_authorization() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = srv.create_app(code_app()).await;
    let (verifier, challenge) = pkce();
    let base = [
        ("response_type", "code"),
        ("redirect_uri", CB),
        ("scope", "openid"),
        ("state", "s1"),
        ("code_challenge_method", "S256"),
    ];
    let mut form = base.to_vec();
    form.push(("code_challenge", &challenge));
    let uri = pushed(&srv, &a, &form).await;

    // Only client_id and request_uri at the front channel; other query parameters are ignored.
    let browser = srv.browser();
    let q = format!("{}&state=forged&scope=email", front(&a.client_id, &uri));
    let first = get(&browser, &srv, &q).await;
    assert_eq!(first.status(), 200, "the login page");
    // A reload of the login page works (the request is not consumed yet).
    let loc = login_flow(&srv, &browser, &front(&a.client_id, &uri), "alice", "pw").await;
    assert_eq!(query_param(&loc, "state").as_deref(), Some("s1"), "the pushed state, not the query's: {loc}");
    let code = query_param(&loc, "code").expect("a code");
    let t = srv
        .token(
            &a,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(t.status(), 200);
    assert_eq!(t.json::<Value>().await.unwrap()["scope"], "openid", "the pushed scope");

    // Used: the same request_uri again is an error page (not a redirect).
    let again = get(&browser, &srv, &front(&a.client_id, &uri)).await;
    assert_eq!(again.status(), 400);
    assert!(again.text().await.unwrap().contains("request_uri"));

    // Another client cannot use it; an unknown one, or one past its 60 s, neither.
    let other = srv.create_app(code_app()).await;
    let uri = pushed(&srv, &a, &form).await;
    assert_eq!(get(&srv.browser(), &srv, &front(&other.client_id, &uri)).await.status(), 400);
    assert_eq!(
        get(&srv.browser(), &srv, &front(&a.client_id, "urn:ietf:params:oauth:request_uri:nope")).await.status(),
        400
    );
    srv.clock.advance(61);
    assert_eq!(get(&srv.browser(), &srv, &front(&a.client_id, &uri)).await.status(), 400, "expired before use");

    // An error redirect consumes it too (the user denies consent here: prompt=none without a session).
    let mut none = form.clone();
    none.push(("prompt", "none"));
    let uri = pushed(&srv, &a, &none).await;
    let r = get(&srv.browser(), &srv, &front(&a.client_id, &uri)).await;
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("login_required"));
    assert_eq!(get(&srv.browser(), &srv, &front(&a.client_id, &uri)).await.status(), 400, "consumed by the error");
}

#[tokio::test]
async fn the_push_refuses_what_the_authorization_endpoint_would() {
    let srv = TestServer::start().await;
    let a = srv.create_app(code_app()).await;
    let ok = [("response_type", "code"), ("redirect_uri", CB), ("scope", "openid")];
    // Not authenticated; a wrong secret.
    let r = srv.client().post(srv.url("/oauth2/par")).form(&ok).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;
    let bad = AppCreds { client_id: a.client_id.clone(), client_secret: Some("wrong".into()) };
    assert_oauth_error(push(&srv, &bad, &ok, None).await, 401, "invalid_client").await;
    // What the authorization endpoint refuses, in JSON here.
    for (form, code) in [
        (vec![("response_type", "code"), ("redirect_uri", "https://evil.example/cb")], "invalid_request"),
        (vec![("response_type", "token"), ("redirect_uri", CB)], "unsupported_response_type"),
        (vec![("response_type", "code"), ("redirect_uri", CB), ("scope", "admin:everything")], "invalid_scope"),
        (vec![("response_type", "code"), ("redirect_uri", CB), ("request_uri", "urn:x")], "invalid_request"),
    ] {
        let r = push(&srv, &a, &form, None).await;
        assert_oauth_error(r, 400, code).await;
    }
    // Discovery advertises it.
    let d: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["pushed_authorization_request_endpoint"], srv.url("/oauth2/par"));
    assert_eq!(d["require_pushed_authorization_requests"], false);
}

#[tokio::test]
async fn an_app_that_requires_par_refuses_front_channel_requests() {
    let srv = TestServer::start().await;
    srv.add_user("bob", "pw").await;
    let mut ch = code_app();
    ch.require_par = Some(true);
    let a = srv.create_app(ch).await;
    let (_, challenge) = pkce();
    let q = format!(
        "response_type=code&client_id={}&redirect_uri={}&scope=openid&code_challenge={challenge}&code_challenge_method=S256",
        a.client_id,
        urlencode(CB)
    );
    let r = get(&srv.browser(), &srv, &q).await;
    let loc = location(&r);
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"), "{loc}");
    assert!(query_param(&loc, "error_description").unwrap().contains("push"), "{loc}");
    let uri = pushed(
        &srv,
        &a,
        &[
            ("response_type", "code"),
            ("redirect_uri", CB),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let loc = login_flow(&srv, &srv.browser(), &front(&a.client_id, &uri), "bob", "pw").await;
    assert!(query_param(&loc, "code").is_some(), "{loc}");
}

#[tokio::test]
async fn a_dpop_proof_at_the_push_binds_the_code_to_its_key() {
    let srv = TestServer::start().await;
    srv.add_user("carol", "pw").await;
    let mut ch = code_app();
    ch.binding = Some("dpop".into());
    let a = srv.create_app(ch).await;
    let key = DpopKey::generate();
    let now = srv.clock.now();
    let (verifier, challenge) = pkce();
    let form = [
        ("response_type", "code"),
        ("redirect_uri", CB),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    // A dpop_jkt naming another key than the proof's is refused.
    let other = DpopKey::generate();
    let mut mismatched = form.to_vec();
    mismatched.push(("dpop_jkt", &other.jkt));
    let r = push(&srv, &a, &mismatched, Some(key.proof("POST", &srv.url("/oauth2/par"), now, None, None))).await;
    assert_oauth_error(r, 400, "invalid_request").await;

    let r = push(&srv, &a, &form, Some(key.proof("POST", &srv.url("/oauth2/par"), now, None, None))).await;
    assert_eq!(r.status(), 201);
    let uri = r.json::<Value>().await.unwrap()["request_uri"].as_str().unwrap().to_string();
    let loc = login_flow(&srv, &srv.browser(), &front(&a.client_id, &uri), "carol", "pw").await;
    let code = query_param(&loc, "code").unwrap();
    let exchange = |proof: String| {
        let (srv, a, code, verifier) = (&srv, &a, code.clone(), verifier.clone());
        async move {
            srv.client()
                .post(srv.url("/oauth2/token"))
                .basic_auth(&a.client_id, a.client_secret.as_deref())
                .header("dpop", proof)
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", CB),
                    ("code_verifier", verifier.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let r = exchange(other.proof("POST", &srv.url("/oauth2/token"), now, None, None)).await;
    assert_eq!(r.status(), 400, "another key than the push's");
    let r = exchange(key.proof("POST", &srv.url("/oauth2/token"), now, None, None)).await;
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "DPoP", "{t}");
    let _ = json!(null);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// RFC 8707: `resource` pushed with the request fixes what the user authorizes; at the code
/// exchange (and at refresh) `resource` narrows the token to part of it, and anything outside it
/// is `invalid_target`.
#[tokio::test]
async fn resource_at_the_push_and_narrowing_at_the_token_endpoint() {
    let srv = TestServer::start().await;
    srv.add_user("dave", "pw").await;
    let (api1, api2, api3) = ("https://api1.example", "https://api2.example", "https://api3.example");
    let mut ch = code_app();
    ch.audience = Some(vec![api1.into(), api2.into(), api3.into()]);
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    let (verifier, challenge) = pkce();
    let uri = pushed(
        &srv,
        &a,
        &[
            ("response_type", "code"),
            ("redirect_uri", CB),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("resource", api1),
            ("resource", api2),
        ],
    )
    .await;
    let loc = login_flow(&srv, &srv.browser(), &front(&a.client_id, &uri), "dave", "pw").await;
    let code = query_param(&loc, "code").unwrap();
    let exchange = |resource: &'static str| {
        let (srv, a, code, verifier) = (&srv, &a, code.clone(), verifier.clone());
        async move {
            srv.token(
                a,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", CB),
                    ("code_verifier", &verifier),
                    ("resource", resource),
                ],
            )
            .await
        }
    };
    // Not authorized (api3 is the app's, but the user did not authorize it): refused, code kept.
    let r = exchange(api3).await;
    assert_oauth_error(r, 400, "invalid_target").await;
    let r = exchange(api2).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(jwt_claims(t["access_token"].as_str().unwrap())["aud"], json!(api2), "narrowed to api2");
    // Refresh narrows within what the refresh token carries.
    let rt = t["refresh_token"].as_str().unwrap();
    let r = srv.token(&a, &[("grant_type", "refresh_token"), ("refresh_token", rt), ("resource", api1)]).await;
    assert_oauth_error(r, 400, "invalid_target").await;
}

/// RFC 9101: a signed request object at the authorization endpoint and inside a push; only its
/// parameters count; a bad signature, a wrong `iss` or `aud`, an expired object or `alg: none` are
/// refused on a page (the redirect URI inside cannot be trusted).
#[tokio::test]
async fn signed_request_objects_at_the_front_channel_and_in_a_push() {
    let srv = TestServer::start().await;
    srv.add_user("erin", "pw").await;
    let key = DpopKey::generate();
    let mut ch = code_app();
    let mut jwk = key.jwk.clone();
    jwk["kid"] = json!("rk1");
    ch.jwks = Some(json!({"keys": [jwk]}).to_string());
    let a = srv.create_app(ch).await;
    let now = srv.clock.now();
    let (verifier, challenge) = pkce();
    let claims = |state: &str| {
        json!({
            "iss": a.client_id, "aud": srv.url(""), "exp": now + 300, "iat": now, "nbf": now, "jti": "j1",
            "client_id": a.client_id, "response_type": "code", "redirect_uri": CB, "scope": "openid",
            "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
        })
    };
    let sign = |c: &Value| key.sign_raw(&json!({"alg": "ES256", "typ": "oauth-authz-req+jwt", "kid": "rk1"}), c);
    let q = |jwt: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &a.client_id)
            .append_pair("request", jwt)
            .append_pair("state", "not-from-the-object")
            .finish()
    };
    let loc = login_flow(&srv, &srv.browser(), &q(&sign(&claims("from-jar"))), "erin", "pw").await;
    assert_eq!(query_param(&loc, "state").as_deref(), Some("from-jar"), "only the object's parameters: {loc}");
    let code = query_param(&loc, "code").unwrap();
    let t = srv
        .token(
            &a,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(t.status(), 200);

    let b = tether_core::secret::b64url;
    let unsigned =
        format!("{}.{}.", b(json!({"alg": "none"}).to_string().as_bytes()), b(claims("none").to_string().as_bytes()));
    let mut bad: Vec<(&str, String)> = vec![
        ("another key", DpopKey::generate().sign_raw(&json!({"alg": "ES256"}), &claims("x"))),
        ("alg none", unsigned),
    ];
    for (why, change) in [
        ("wrong iss", ("iss", json!("someone-else"))),
        ("wrong aud", ("aud", json!("https://other.example"))),
        ("expired", ("exp", json!(now - 1))),
        ("too long", ("exp", json!(now + 7200))),
        ("nbf in the future", ("nbf", json!(now + 600))),
    ] {
        let mut c = claims("x");
        c[change.0] = change.1;
        bad.push((why, sign(&c)));
    }
    for (why, jwt) in bad {
        let r = srv.browser().get(srv.url(&format!("/oauth2/authorize?{}", q(&jwt)))).send().await.unwrap();
        assert_eq!(r.status(), 400, "{why}");
        assert!(r.text().await.unwrap().contains("invalid_request_object"), "{why}");
    }

    // Inside a push: stored unpacked, used at the front channel with request_uri.
    let r = push(&srv, &a, &[("request", &sign(&claims("pushed-jar")))], None).await;
    assert_eq!(r.status(), 201);
    let uri = r.json::<Value>().await.unwrap()["request_uri"].as_str().unwrap().to_string();
    let loc = login_flow(&srv, &srv.browser(), &front(&a.client_id, &uri), "erin", "pw").await;
    assert_eq!(query_param(&loc, "state").as_deref(), Some("pushed-jar"), "{loc}");
    let r = push(&srv, &a, &[("request", &DpopKey::generate().sign_raw(&json!({"alg": "ES256"}), &claims("x")))], None)
        .await;
    assert_oauth_error(r, 400, "invalid_request_object").await;

    let d: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["request_parameter_supported"], true);
    assert!(d["request_object_signing_alg_values_supported"].as_array().unwrap().contains(&json!("ES256")));
}

/// `[oauth] require_par = true`: every app must push; discovery says so.
#[tokio::test]
async fn the_server_can_require_par_of_every_app() {
    let srv = TestServer::start_with(|s| s.require_par = true).await;
    let a = srv.create_app(code_app()).await;
    let d: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["require_pushed_authorization_requests"], true);
    let q = format!("response_type=code&client_id={}&redirect_uri={}&scope=openid", a.client_id, urlencode(CB));
    let loc = location(&get(&srv.browser(), &srv, &q).await);
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"), "{loc}");
    let uri = pushed(&srv, &a, &[("response_type", "code"), ("redirect_uri", CB), ("scope", "openid")]).await;
    assert_eq!(get(&srv.browser(), &srv, &front(&a.client_id, &uri)).await.status(), 200, "the login page");
}
