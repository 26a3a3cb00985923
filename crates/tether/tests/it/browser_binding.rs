//! Browser bindings (token-binding.md B-1..B-7): `cookie` (`atbv`), `sso-session`, logout and
//! what it revokes, sessions that expire — with a cookie-jar HTTP client. The same promises are
//! checked in headless Chromium by `browser.rs`; sign-in throttling is `signin.rs`.

use std::sync::Arc;

use reqwest::Client;
use reqwest::cookie::{CookieStore, Jar};
use serde_json::{Value, json};
use tether_core::binding::binding_ref;
use tether_testkit::*;

const CB: &str = "https://app.example/cb";

fn q(client_id: &str, extra: &str) -> String {
    let cb: String = url::form_urlencoded::byte_serialize(CB.as_bytes()).collect();
    format!(
        "response_type=code&client_id={client_id}&redirect_uri={cb}&scope=openid%20profile&state=s1&nonce=n1{extra}"
    )
}

struct Browser {
    c: Client,
    jar: Arc<Jar>,
}

impl Browser {
    fn new(srv: &TestServer) -> Self {
        let jar = Arc::new(Jar::default());
        let c = srv.client_builder().cookie_provider(jar.clone()).build().unwrap();
        Browser { c, jar }
    }
    fn cookie(&self, srv: &TestServer, name: &str) -> Option<String> {
        let h = self.jar.cookies(&url::Url::parse(&srv.base).unwrap())?;
        h.to_str().unwrap().split("; ").find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
    }
    /// The code of an authorization in this browser (logging in if needed).
    async fn code(&self, srv: &TestServer, client_id: &str, extra: &str) -> String {
        let loc = login_flow(srv, &self.c, &q(client_id, extra), "alice", "pw").await;
        query_param(&loc, "code").unwrap_or_else(|| panic!("no code in {loc}"))
    }
}

async fn redeem(srv: &TestServer, a: &AppCreds, code: &str) -> Value {
    let r = srv.token(a, &[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CB)]).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn bound_app(
    srv: &TestServer,
    binding: &str,
    token_type: &str,
    f: impl FnOnce(&mut tether_core::admin::AppChanges),
) -> AppCreds {
    let mut ch = app(&["authorization_code", "refresh_token", "password"]);
    ch.binding = Some(binding.into());
    ch.token_type = Some(token_type.into());
    f(&mut ch);
    srv.create_app(ch).await
}

fn at(t: &Value) -> &str {
    t["access_token"].as_str().unwrap()
}

#[tokio::test]
async fn cookie_binding_follows_the_browser_across_logins_and_apps() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = bound_app(&srv, "cookie", "jwt", |_| {}).await;
    let b = bound_app(&srv, "cookie", "opaque", |_| {}).await;

    let one = Browser::new(&srv);
    let t = redeem(&srv, &a, &one.code(&srv, &a.client_id, "").await).await;
    let atbv = one.cookie(&srv, "atbv").expect("atbv set with the code");
    assert_eq!(atbv.len(), 36, "a UUID: {atbv}");
    let claims = jwt_claims(at(&t));
    assert_eq!(claims["binding_type"], "cookie");
    assert_eq!(claims["binding_ref"], binding_ref(&atbv));
    assert!(claims.get("cnf").is_none());

    // B-7: the exact cookie, on the response that carries the code (here an SSO authorization).
    let r = one.c.get(srv.url(&format!("/oauth2/authorize?{}", q(&a.client_id, "")))).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let set: Vec<String> = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let atbv_header = set.iter().find(|c| c.starts_with("atbv=")).expect("atbv on the code response");
    assert_eq!(atbv_header, &format!("atbv={atbv}; Path=/; Secure; HttpOnly; SameSite=None"));
    let code = query_param(&location(&r), "code").unwrap();
    let t2 = redeem(&srv, &a, &code).await;
    assert_eq!(jwt_claims(at(&t2))["binding_ref"], binding_ref(&atbv), "same browser, same reference");
    assert_eq!(srv.introspect(&a, at(&t)).await, json!({"active": false}), "B-3: JWT row, previous revoked");

    // Another app, same browser: the same binding reference.
    let tb = redeem(&srv, &b, &one.code(&srv, &b.client_id, "").await).await;
    assert_eq!(srv.introspect(&b, at(&tb)).await["binding_ref"], binding_ref(&atbv));
    // A new login in the same browser keeps it too.
    let t3 = redeem(&srv, &a, &one.code(&srv, &a.client_id, "&prompt=login").await).await;
    assert_eq!(jwt_claims(at(&t3))["binding_ref"], binding_ref(&atbv));

    // Another browser: another value.
    let two = Browser::new(&srv);
    let t4 = redeem(&srv, &a, &two.code(&srv, &a.client_id, "").await).await;
    let atbv2 = two.cookie(&srv, "atbv").unwrap();
    assert_ne!(atbv, atbv2);
    assert_eq!(jwt_claims(at(&t4))["binding_ref"], binding_ref(&atbv2));
    assert_eq!(srv.introspect(&a, at(&t3)).await["active"], true, "other browsers' tokens are untouched");

    // A planted atbv that no token is bound to is not adopted (B-7).
    let three = Browser::new(&srv);
    let planted = "00000000-0000-4000-8000-000000000000";
    three.jar.add_cookie_str(&format!("atbv={planted}; Path=/; Secure"), &url::Url::parse(&srv.base).unwrap());
    let _ = three.code(&srv, &a.client_id, "").await;
    assert_ne!(three.cookie(&srv, "atbv").unwrap(), planted);

    // Other grants are issued unbound (B-1).
    let pw = srv.token(&a, &[("grant_type", "password"), ("username", "alice"), ("password", "pw")]).await;
    let pw: Value = pw.json().await.unwrap();
    assert!(jwt_claims(at(&pw)).get("binding_type").is_none());
    // The database never holds the cookie value (B-11).
    let bytes = srv.database_bytes().await;
    assert!(!bytes.windows(atbv.len()).any(|w| w == atbv.as_bytes()), "atbv value stored in clear");
}

#[tokio::test]
async fn validate_binding_requires_the_atbv_cookie() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = bound_app(&srv, "cookie", "opaque", |c| c.validate_binding = Some(true)).await;
    let one = Browser::new(&srv);
    let t = redeem(&srv, &a, &one.code(&srv, &a.client_id, "").await).await;
    let atbv = one.cookie(&srv, "atbv").unwrap();
    let with = format!("atbv={atbv}");
    let plain = srv.client();

    // Userinfo.
    let r = plain.get(srv.url("/oauth2/userinfo")).bearer_auth(at(&t)).send().await.unwrap();
    let www = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    let e = assert_oauth_error(r, 400, "invalid_request").await;
    assert_eq!(e["error_description"], "Valid token binding value not present in the request.");
    assert!(www.starts_with("Bearer") && www.contains("error=\"invalid_request\""), "{www}");
    let r =
        plain.get(srv.url("/oauth2/userinfo")).bearer_auth(at(&t)).header("cookie", "atbv=wrong").send().await.unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;
    let r = plain.get(srv.url("/oauth2/userinfo")).bearer_auth(at(&t)).header("cookie", &with).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Refresh.
    let rt = t["refresh_token"].as_str().unwrap();
    let refresh = |cookie: Option<&str>| {
        let mut r = plain
            .post(srv.url("/oauth2/token"))
            .basic_auth(&a.client_id, a.client_secret.as_deref())
            .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)]);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    let e = assert_oauth_error(refresh(None).await.unwrap(), 400, "invalid_grant").await;
    assert_eq!(e["error_description"], "Invalid token binding value is present in the request.");
    let r = refresh(Some(&with)).await.unwrap();
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    assert_eq!(srv.introspect(&a, at(&t2)).await["binding_ref"], binding_ref(&atbv), "inherits the binding");

    // Revocation of the access token.
    let revoke = |cookie: Option<&str>| {
        let mut r = plain
            .post(srv.url("/oauth2/revoke"))
            .basic_auth(&a.client_id, a.client_secret.as_deref())
            .form(&[("token", at(&t2))]);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    assert_oauth_error(revoke(None).await.unwrap(), 400, "access_denied").await;
    assert_eq!(srv.introspect(&a, at(&t2)).await["active"], true, "not revoked");
    assert_eq!(revoke(Some(&with)).await.unwrap().status(), 200);
    assert_eq!(srv.introspect(&a, at(&t2)).await, json!({"active": false}));
}

#[tokio::test]
async fn sso_session_tokens_live_and_die_with_the_login() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let o = bound_app(&srv, "sso-session", "opaque", |_| {}).await;
    let j = bound_app(&srv, "sso-session", "jwt", |_| {}).await;
    let one = Browser::new(&srv);
    let o1 = redeem(&srv, &o, &one.code(&srv, &o.client_id, "").await).await;
    let o1b = redeem(&srv, &o, &one.code(&srv, &o.client_id, "").await).await;
    assert_eq!(at(&o1), at(&o1b), "same session: the same opaque token");
    let j1 = redeem(&srv, &j, &one.code(&srv, &j.client_id, "").await).await;
    let j2 = redeem(&srv, &j, &one.code(&srv, &j.client_id, "").await).await;
    assert_ne!(at(&j1), at(&j2));
    assert_eq!(srv.introspect(&j, at(&j1)).await, json!({"active": false}), "JWT: a new one, the old revoked");

    let id = jwt_claims(o1["id_token"].as_str().unwrap());
    let (sid, isk) = (id["sid"].as_str().unwrap(), id["isk"].as_str().unwrap());
    assert_eq!(isk, tether_core::binding::sso_session::session_key(sid));
    let session_cookie = one.cookie(&srv, "tether_session").unwrap();
    assert_ne!(isk, session_cookie);
    assert!(!id.to_string().contains(&session_cookie), "the cookie value never appears in tokens");
    let i = srv.introspect(&o, at(&o1)).await;
    assert_eq!(i["binding_type"], "sso-session");
    assert_eq!(i["binding_ref"], binding_ref(isk));

    // The same user signing in again (prompt=login) keeps the session: same sid and binding key
    // (so the same opaque token), under a new cookie value.
    let o2 = redeem(&srv, &o, &one.code(&srv, &o.client_id, "&prompt=login").await).await;
    assert_eq!(at(&o1), at(&o2));
    let id2 = jwt_claims(o2["id_token"].as_str().unwrap());
    assert_eq!(id2["sid"], id["sid"]);
    assert_ne!(one.cookie(&srv, "tether_session").unwrap(), session_cookie, "the cookie value rotates");

    // An access token (at+jwt, same keys) is not an ID token hint: the user is asked instead.
    let r = one.c.get(srv.url(&format!("/oidc/logout?id_token_hint={}", at(&j2)))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("name=\"approve\""), "confirmation page");
    // Another user's ID token does not name this browser's session either.
    srv.add_user("mallory", "pw").await;
    let m = srv
        .token(&o, &[("grant_type", "password"), ("username", "mallory"), ("password", "pw"), ("scope", "openid")])
        .await
        .json::<Value>()
        .await
        .unwrap();
    let r = one
        .c
        .get(srv.url(&format!("/oidc/logout?id_token_hint={}", m["id_token"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a hint naming another session ends nothing");
    assert_eq!(srv.introspect(&o, at(&o2)).await["active"], true, "nothing was ended");

    // RP-initiated logout with a valid id_token_hint: no page, straight back with state.
    let hint = o2["id_token"].as_str().unwrap();
    let cb: String = url::form_urlencoded::byte_serialize(CB.as_bytes()).collect();
    let r = one
        .c
        .get(srv.url(&format!("/oidc/logout?id_token_hint={hint}&post_logout_redirect_uri={cb}&state=bye")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(query_param(&location(&r), "state").as_deref(), Some("bye"));
    assert!(location(&r).starts_with(CB));
    assert_eq!(srv.introspect(&o, at(&o2)).await, json!({"active": false}), "the session's token is revoked");
    let rt = o2["refresh_token"].as_str().unwrap();
    let r = srv.token(&o, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
    assert!(one.cookie(&srv, "tether_session").is_none(), "session cookie cleared");
    // Re-authentication kept one session: everything bound to it ended with it.
    assert_eq!(srv.introspect(&o, at(&o1)).await["active"], false);

    // A post_logout_redirect_uri that is not registered is refused on a page, never followed.
    let r = one
        .c
        .get(srv.url("/oidc/logout?client_id=x&post_logout_redirect_uri=https://evil.example/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn logout_without_a_hint_is_confirmed_and_revokes_per_b6() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let sso = bound_app(&srv, "sso-session", "opaque", |_| {}).await;
    let revoking = bound_app(&srv, "cookie", "jwt", |c| c.revoke_on_logout = Some(true)).await;
    let plain_app = srv.create_app(app(&["authorization_code", "password"])).await;
    let mut ch = app(&["authorization_code"]);
    ch.revoke_on_logout = Some(true);
    let unbound_revoking = srv.create_app(ch).await;
    let cr = bound_app(&srv, "client-request", "opaque", |c| c.revoke_on_logout = Some(true)).await;

    let one = Browser::new(&srv);
    let t_sso = redeem(&srv, &sso, &one.code(&srv, &sso.client_id, "").await).await;
    let t_rev = redeem(&srv, &revoking, &one.code(&srv, &revoking.client_id, "").await).await;
    let t_plain = redeem(&srv, &plain_app, &one.code(&srv, &plain_app.client_id, "").await).await;
    let t_unb = redeem(&srv, &unbound_revoking, &one.code(&srv, &unbound_revoking.client_id, "").await).await;
    let t_cr = srv
        .token(&cr, &[("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("tokenBindingId", "x")])
        .await
        .json::<Value>()
        .await
        .unwrap();
    // A client-request token issued through the same session (code flow + tokenBindingId).
    let code = one.code(&srv, &cr.client_id, "").await;
    let t_cr_code = srv
        .token(
            &cr,
            &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB), ("tokenBindingId", "tv-1")],
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let two = Browser::new(&srv);
    let t_other = redeem(&srv, &revoking, &two.code(&srv, &revoking.client_id, "").await).await;

    // A cross-site link or image cannot log anyone out: without a hint, a page asks first.
    let r = one.c.get(srv.url(&format!("/oidc/logout?client_id={}", sso.client_id))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("name=\"approve\" value=\"yes\""), "{html}");
    assert_eq!(srv.introspect(&sso, at(&t_sso)).await["active"], true, "nothing happened yet");
    let mut form = hidden_inputs(&html);
    form.push(("approve".into(), "yes".into()));
    let r =
        one.c.post(srv.url("/oidc/logout")).header("sec-fetch-site", "cross-site").form(&form).send().await.unwrap();
    assert_eq!(r.status(), 400, "a cross-site confirmation is refused");
    let mut forged = form.clone();
    forged.iter_mut().for_each(|(k, v)| {
        if k == "request" {
            v.push_str("&x=1");
        }
    });
    assert_eq!(one.c.post(srv.url("/oidc/logout")).form(&forged).send().await.unwrap().status(), 400, "altered form");
    let r = one.c.post(srv.url("/oidc/logout")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("signed out"));

    assert_eq!(srv.introspect(&sso, at(&t_sso)).await, json!({"active": false}), "sso-session: revoked");
    assert_eq!(srv.introspect(&revoking, at(&t_rev)).await, json!({"active": false}), "revoke-on-logout");
    assert_eq!(srv.introspect(&unbound_revoking, at(&t_unb)).await, json!({"active": false}), "through this session");
    assert_eq!(srv.introspect(&plain_app, at(&t_plain)).await["active"], true, "no flag: untouched");
    assert_eq!(srv.introspect(&cr, at(&t_cr)).await["active"], true, "client-request: never revoked by logout");
    assert_eq!(srv.introspect(&cr, at(&t_cr_code)).await["active"], true, "not even when issued through the session");
    assert_eq!(srv.introspect(&revoking, at(&t_other)).await["active"], true, "another browser: untouched");
    assert!(one.cookie(&srv, "atbv").is_some(), "logout does not clear atbv");
    // The next authorization asks for a login again.
    let r = one.c.get(srv.url(&format!("/oauth2/authorize?{}", q(&sso.client_id, "")))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("name=\"password\""));
}

#[tokio::test]
async fn an_expired_session_ends_its_tokens_like_a_logout() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let sso = bound_app(&srv, "sso-session", "opaque", |_| {}).await;
    let one = Browser::new(&srv);
    let t = redeem(&srv, &sso, &one.code(&srv, &sso.client_id, "").await).await;
    assert_eq!(srv.introspect(&sso, at(&t)).await["active"], true);
    srv.clock.advance(3601); // past the default idle timeout
    assert_eq!(srv.introspect(&sso, at(&t)).await, json!({"active": false}));
    let r = srv
        .token(&sso, &[("grant_type", "refresh_token"), ("refresh_token", t["refresh_token"].as_str().unwrap())])
        .await;
    assert_oauth_error(r, 400, "invalid_grant").await;
}

#[tokio::test]
async fn binding_configuration_checks() {
    let mut c = app(&["password"]);
    c.binding = Some("cookie".into());
    assert!(tether_core::admin::create(&c).unwrap_err().contains("authorization_code"));
    c.binding = Some("sso-session".into());
    assert!(tether_core::admin::create(&c).unwrap_err().contains("authorization_code"));
    c.binding = Some("device-flow".into());
    assert!(tether_core::admin::create(&c).unwrap_err().contains("device_code"));
    let mut ok = app(&["device_code"]);
    ok.binding = Some("device-flow".into());
    assert!(tether_core::admin::create(&ok).is_ok());
}
