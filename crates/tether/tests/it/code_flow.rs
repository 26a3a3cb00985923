use serde_json::{Value, json};
use tether_testkit::*;

const CB: &str = "https://app.example/cb";

fn authz_query(client_id: &str, challenge: Option<&str>, extra: &str) -> String {
    let mut q = format!(
        "response_type=code&client_id={client_id}&redirect_uri={}&scope=openid%20profile&state=st4te&nonce=n0nce",
        urlencode(CB)
    );
    if let Some(c) = challenge {
        q.push_str(&format!("&code_challenge={c}&code_challenge_method=S256"));
    }
    q.push_str(extra);
    q
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn redeem(srv: &TestServer, a: &AppCreds, code: &str, verifier: Option<&str>) -> reqwest::Response {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CB)];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    srv.token(a, &form).await
}

#[tokio::test]
async fn code_flow_with_pkce_login_page_and_sso() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = srv.create_app(app(&["authorization_code", "refresh_token"])).await;
    let browser = srv.browser();
    let (verifier, challenge) = pkce();
    let loc = login_flow(&srv, &browser, &authz_query(&a.client_id, Some(&challenge), ""), "alice", "pw").await;
    assert!(loc.starts_with(CB), "{loc}");
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st4te"));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(srv.base.as_str()));
    let code = query_param(&loc, "code").unwrap();

    // Wrong verifier: refused.
    let r = redeem(&srv, &a, &code, Some(&"x".repeat(43))).await;
    assert_oauth_error(r, 400, "invalid_grant").await;

    // A second authorization in the same browser: no login page.
    let (verifier2, challenge2) = pkce();
    let r = browser
        .get(srv.url(&format!("/oauth2/authorize?{}", authz_query(&a.client_id, Some(&challenge2), ""))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "SSO session skips the login page");
    let code2 = query_param(&location(&r), "code").unwrap();
    let t: Value = redeem(&srv, &a, &code2, Some(&verifier2)).await.json().await.unwrap();
    let id = jwt_claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["nonce"], "n0nce");
    assert_eq!(id["auth_time"], T0);
    let sid = id["sid"].as_str().unwrap().to_string();
    assert!(sid.len() >= 16);
    assert!(t["refresh_token"].is_string());
    let _ = verifier;

    // max_age: a session older than max_age needs a fresh login; a younger one does not.
    srv.clock.advance(30);
    let r = browser
        .get(srv.url(&format!("/oauth2/authorize?{}", authz_query(&a.client_id, Some(&challenge2), "&max_age=60"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = browser
        .get(srv.url(&format!("/oauth2/authorize?{}", authz_query(&a.client_id, Some(&challenge2), "&max_age=10"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "login page again");
    let r = browser
        .get(srv.url(&format!("/oauth2/authorize?{}", authz_query(&a.client_id, Some(&challenge2), "&max_age=0"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "max_age=0 is prompt=login");
    // prompt=login forces the login page even with a session.
    let r = browser
        .get(srv.url(&format!("/oauth2/authorize?{}", authz_query(&a.client_id, Some(&challenge2), "&prompt=login"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("name=\"password\""));
}

#[tokio::test]
async fn code_is_single_use_and_replay_revokes() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = srv.create_app(app(&["authorization_code", "refresh_token"])).await;
    let (verifier, challenge) = pkce();
    let loc = login_flow(&srv, &srv.browser(), &authz_query(&a.client_id, Some(&challenge), ""), "alice", "pw").await;
    let code = query_param(&loc, "code").unwrap();
    let t: Value = redeem(&srv, &a, &code, Some(&verifier)).await.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    assert_eq!(srv.introspect(&a, at).await["active"], true);
    assert_oauth_error(redeem(&srv, &a, &code, Some(&verifier)).await, 400, "invalid_grant").await;
    assert_eq!(srv.introspect(&a, at).await, json!({"active": false}), "replay revokes the access token");
    assert_eq!(srv.introspect(&a, rt).await, json!({"active": false}), "... and the refresh token");
}

#[tokio::test]
async fn concurrent_code_redemption_yields_one_token_set() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = srv.create_app(app(&["authorization_code"])).await;
    let (verifier, challenge) = pkce();
    let loc = login_flow(&srv, &srv.browser(), &authz_query(&a.client_id, Some(&challenge), ""), "alice", "pw").await;
    let code = query_param(&loc, "code").unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (c, url, id, secret, code, verifier) = (
            srv.client(),
            srv.url("/oauth2/token"),
            a.client_id.clone(),
            a.client_secret.clone(),
            code.clone(),
            verifier.clone(),
        );
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .basic_auth(id, secret)
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", CB),
                    ("code_verifier", &verifier),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += (t.await.unwrap() == 200) as i32;
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn code_expires_after_60_seconds() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = srv.create_app(app(&["authorization_code"])).await;
    let (verifier, challenge) = pkce();
    let loc = login_flow(&srv, &srv.browser(), &authz_query(&a.client_id, Some(&challenge), ""), "alice", "pw").await;
    srv.clock.advance(60);
    let r = redeem(&srv, &a, &query_param(&loc, "code").unwrap(), Some(&verifier)).await;
    let b = assert_oauth_error(r, 400, "invalid_grant").await;
    assert!(b["error_description"].as_str().unwrap().contains("expired"));
}

#[tokio::test]
async fn public_clients_need_s256_and_no_secret() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mut ch = app(&["authorization_code", "refresh_token"]);
    ch.public = Some(true);
    let p = srv.create_app(ch).await;
    assert!(p.client_secret.is_none());
    let browser = srv.browser();
    // No PKCE: error redirect to the client.
    let r = browser
        .get(srv.url(&format!("/oauth2/authorize?{}", authz_query(&p.client_id, None, ""))))
        .send()
        .await
        .unwrap();
    let loc = location(&r);
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st4te"));
    // plain refused for public clients.
    let q = format!(
        "response_type=code&client_id={}&redirect_uri={}&code_challenge={}&code_challenge_method=plain",
        p.client_id,
        urlencode(CB),
        "a".repeat(43)
    );
    let r = browser.get(srv.url(&format!("/oauth2/authorize?{q}"))).send().await.unwrap();
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("invalid_request"));
    // S256 works; the token request carries client_id and no secret.
    let (verifier, challenge) = pkce();
    let loc = login_flow(&srv, &browser, &authz_query(&p.client_id, Some(&challenge), ""), "alice", "pw").await;
    let code = query_param(&loc, "code").unwrap();
    let r = redeem(&srv, &p, &code, None).await;
    assert_oauth_error(r, 400, "invalid_grant").await; // code_verifier required (and the code is now burnt)
    let loc = login_flow(&srv, &browser, &authz_query(&p.client_id, Some(&challenge), ""), "alice", "pw").await;
    let r = redeem(&srv, &p, &query_param(&loc, "code").unwrap(), Some(&verifier)).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    // A public client refreshes with its client_id alone.
    let r = srv
        .token(&p, &[("grant_type", "refresh_token"), ("refresh_token", t["refresh_token"].as_str().unwrap())])
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn redirect_uri_must_match_exactly_and_errors_are_shown_not_redirected() {
    let srv = TestServer::start().await;
    let a = srv.create_app(app(&["authorization_code"])).await;
    let c = srv.browser();
    for bad in
        ["https://app.example/cb/", "https://app.example/cb?x=1", "https://evil.example/cb", "https://APP.example/cb"]
    {
        let q = format!("response_type=code&client_id={}&redirect_uri={}", a.client_id, urlencode(bad));
        let r = c.get(srv.url(&format!("/oauth2/authorize?{q}"))).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad} must not be accepted");
        assert!(r.headers().get("location").is_none(), "never redirect to an unregistered URI");
        assert!(r.text().await.unwrap().contains("redirect_uri"));
    }
    let r = c.get(srv.url("/oauth2/authorize?response_type=code&client_id=nobody")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // A valid client and URI but a bad response_type goes back to the client.
    let q = format!("response_type=token&client_id={}&redirect_uri={}&state=s", a.client_id, urlencode(CB));
    let r = c.get(srv.url(&format!("/oauth2/authorize?{q}"))).send().await.unwrap();
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("unsupported_response_type"));
    // prompt=none without a session: login_required.
    let q = format!("response_type=code&client_id={}&redirect_uri={}&prompt=none", a.client_id, urlencode(CB));
    let r = c.get(srv.url(&format!("/oauth2/authorize?{q}"))).send().await.unwrap();
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("login_required"));
    // The token request's redirect_uri must match the code's.
}

#[tokio::test]
async fn login_page_contract_and_failures() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = srv.create_app(app(&["authorization_code"])).await;
    let browser = srv.browser();
    let (verifier, challenge) = pkce();
    let r = browser
        .get(srv.url(&format!("/oauth2/authorize?{}", authz_query(&a.client_id, Some(&challenge), ""))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let html = r.text().await.unwrap();
    assert_eq!(html.matches("<form").count(), 1, "exactly one form");
    assert!(html.contains("method=\"post\""));
    assert!(!html.contains("<script"), "no JavaScript needed");
    let hidden = hidden_inputs(&html);
    // Wrong password: the page again, with a clear message, no session cookie.
    let mut form = hidden.clone();
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "wrong".into()));
    let r = browser.post(srv.url("/oauth2/authorize")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("Wrong username or password"));
    // A tampered pending request is refused.
    let mut form: Vec<(String, String)> = hidden
        .iter()
        .map(|(k, v)| if k == "authz" { (k.clone(), v.replace("st4te", "other")) } else { (k.clone(), v.clone()) })
        .collect();
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "pw".into()));
    let r = browser.post(srv.url("/oauth2/authorize")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // A cross-site post is refused.
    let mut form = hidden.clone();
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "pw".into()));
    let r = browser
        .post(srv.url("/oauth2/authorize"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The right password: a session cookie with the safe flags, then the redirect.
    let r = browser.post(srv.url("/oauth2/authorize")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    // The ID token's sid is a separate random id, never the session cookie's value.
    let cookie_value = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
    let code = query_param(&location(&r), "code").unwrap();
    let t: serde_json::Value = srv
        .token(
            &a,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("code_verifier", &verifier),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let sid = jwt_claims(t["id_token"].as_str().unwrap())["sid"].as_str().unwrap().to_string();
    assert!(!sid.is_empty() && sid != cookie_value && !cookie_value.contains(&sid));
    // The session cookie is not stored in clear either.
    let bytes = srv.database_bytes().await;
    assert!(!bytes.windows(cookie_value.len()).any(|w| w == cookie_value.as_bytes()));
}

#[tokio::test]
async fn consent_page_for_apps_that_require_it() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mut ch = app(&["authorization_code"]);
    ch.require_consent = Some(true);
    let a = srv.create_app(ch).await;
    let browser = srv.browser();
    let (_, challenge) = pkce();
    let r = browser
        .get(srv.url(&format!("/oauth2/authorize?{}", authz_query(&a.client_id, Some(&challenge), ""))))
        .send()
        .await
        .unwrap();
    let mut form = hidden_inputs(&r.text().await.unwrap());
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "pw".into()));
    let r = browser.post(srv.url("/oauth2/authorize")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200, "consent page");
    let page = r.text().await.unwrap();
    assert!(page.contains("name=\"approve\""));
    let hidden = hidden_inputs(&page);
    let mut deny = hidden.clone();
    deny.push(("approve".into(), "no".into()));
    let r = browser.post(srv.url("/oauth2/authorize")).form(&deny).send().await.unwrap();
    assert_eq!(query_param(&location(&r), "error").as_deref(), Some("access_denied"));
    let mut allow = hidden;
    allow.push(("approve".into(), "yes".into()));
    let r = browser.post(srv.url("/oauth2/authorize")).form(&allow).send().await.unwrap();
    assert!(query_param(&location(&r), "code").is_some());
}
