//! Sign-in hardening, driven as an attacker would: parallel guessing, lockout attempts by a
//! stranger (directly and behind a trusted proxy), re-login in one browser, logout by a stolen
//! ID token, and login CSRF without origin headers.

use std::sync::Arc;

use reqwest::Client;
use reqwest::cookie::{CookieStore, Jar};
use serde_json::{Value, json};
use tether_testkit::*;

const CB: &str = "https://app.example/cb";

fn q(client_id: &str, extra: &str) -> String {
    let cb: String = url::form_urlencoded::byte_serialize(CB.as_bytes()).collect();
    format!("response_type=code&client_id={client_id}&redirect_uri={cb}&scope=openid&state=s1{extra}")
}

struct Browser {
    c: Client,
    jar: Arc<Jar>,
}

impl Browser {
    fn new(srv: &TestServer) -> Self {
        let jar = Arc::new(Jar::default());
        Browser { c: srv.client_builder().cookie_provider(jar.clone()).build().unwrap(), jar }
    }
    fn cookie(&self, srv: &TestServer, name: &str) -> Option<String> {
        let h = self.jar.cookies(&url::Url::parse(&srv.base).unwrap())?;
        h.to_str().unwrap().split("; ").find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
    }
    /// The sign-in form's hidden fields for an authorization request.
    async fn form(&self, srv: &TestServer, client_id: &str, extra: &str) -> Vec<(String, String)> {
        let r = self.c.get(srv.url(&format!("/oauth2/authorize?{}", q(client_id, extra)))).send().await.unwrap();
        assert_eq!(r.status(), 200, "the sign-in page");
        hidden_inputs(&r.text().await.unwrap())
    }
    /// Post the sign-in form as `user` / `pw`.
    async fn sign_in(&self, srv: &TestServer, form: &[(String, String)], user: &str, pw: &str) -> reqwest::Response {
        self.post(srv, form, user, pw, &[]).await
    }
    async fn post(
        &self,
        srv: &TestServer,
        form: &[(String, String)],
        user: &str,
        pw: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut f = form.to_vec();
        f.push(("username".into(), user.into()));
        f.push(("password".into(), pw.into()));
        let mut req = self.c.post(srv.url("/oauth2/authorize")).form(&f);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }
    /// A code for `client_id`, signing in as `user` when asked.
    async fn code(&self, srv: &TestServer, client_id: &str, extra: &str, user: &str) -> String {
        let loc = login_flow(srv, &self.c, &q(client_id, extra), user, "pw").await;
        query_param(&loc, "code").unwrap_or_else(|| panic!("no code in {loc}"))
    }
}

fn retry_after(r: &reqwest::Response) -> Option<i64> {
    r.headers().get("retry-after")?.to_str().ok()?.parse().ok()
}

async fn redeem(srv: &TestServer, a: &AppCreds, code: &str) -> Value {
    let r = srv.token(a, &[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CB)]).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn at(t: &Value) -> &str {
    t["access_token"].as_str().unwrap()
}

#[tokio::test]
async fn a_strangers_failures_never_lock_the_user_out() {
    let srv = TestServer::start().await;
    srv.add_user("carol", "pw").await;
    let a = srv.create_app(app(&["authorization_code", "password"])).await;
    // Carol signs in once on her own device: it now vouches for her.
    let own = Browser::new(&srv);
    let own_form = own.form(&srv, &a.client_id, "").await;
    assert_eq!(own.sign_in(&srv, &own_form, "carol", "pw").await.status(), 303);
    let device = own.cookie(&srv, "tether_device").expect("a device cookie after signing in");
    assert!(!device.contains("carol"), "the cookie does not carry the username");

    // A stranger guesses: 10 failures, then refused at once with Retry-After, right password or not.
    let stranger = Browser::new(&srv);
    let form = stranger.form(&srv, &a.client_id, "").await;
    for _ in 0..10 {
        assert_eq!(stranger.sign_in(&srv, &form, "carol", "guess").await.status(), 401);
    }
    let r = stranger.sign_in(&srv, &form, "carol", "pw").await;
    assert_eq!(r.status(), 429);
    assert_eq!(retry_after(&r), Some(1), "the backoff starts at one second");

    // Carol, on her own device, is not locked out (prompt=login: a fresh sign-in).
    let own_form = own.form(&srv, &a.client_id, "&prompt=login").await;
    assert_eq!(own.sign_in(&srv, &own_form, "carol", "pw").await.status(), 303, "her device still works");

    // The stranger gets one try per doubling interval, never a hard lock.
    srv.clock.advance(1);
    assert_eq!(stranger.sign_in(&srv, &form, "carol", "guess").await.status(), 401, "one try after 1 s");
    let r = stranger.sign_in(&srv, &form, "carol", "guess").await;
    assert_eq!((r.status().as_u16(), retry_after(&r)), (429, Some(2)), "then 2 s");
    srv.clock.advance(2);
    assert_eq!(stranger.sign_in(&srv, &form, "carol", "pw").await.status(), 303, "the right password after the wait");

    // Failures on a trusted device count per device: 10 close that device only.
    let mallory = Browser::new(&srv);
    srv.add_user("mallory", "pw").await;
    let mf = mallory.form(&srv, &a.client_id, "").await;
    assert_eq!(mallory.sign_in(&srv, &mf, "mallory", "pw").await.status(), 303);
    // Mallory's device cookie vouches for mallory, not for carol: it buys no guesses against her.
    let mf = mallory.form(&srv, &a.client_id, "&prompt=login").await;
    srv.clock.advance(400);
    for _ in 0..10 {
        assert_eq!(mallory.sign_in(&srv, &mf, "carol", "guess").await.status(), 401);
    }
    assert_eq!(mallory.sign_in(&srv, &mf, "carol", "guess").await.status(), 429, "counted as untrusted");
    let own_form = own.form(&srv, &a.client_id, "&prompt=login").await;
    for _ in 0..10 {
        assert_eq!(own.sign_in(&srv, &own_form, "carol", "typo").await.status(), 401);
    }
    let r = own.sign_in(&srv, &own_form, "carol", "pw").await;
    assert_eq!(r.status(), 429, "her own device after 10 of her own typos");
    assert!(retry_after(&r).unwrap() > 200, "for the rest of the 5-minute window");
}

#[tokio::test]
async fn parallel_guesses_are_counted_before_any_hash() {
    let srv = Arc::new(TestServer::start().await);
    srv.add_user("dave", "right").await;
    let a = Arc::new(srv.create_app(app(&["password"])).await);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (srv, a) = (srv.clone(), a.clone());
        let pw = if i == 57 { "right" } else { "wrong" };
        tasks.push(tokio::spawn(async move {
            let r = srv.token(&a, &[("grant_type", "password"), ("username", "dave"), ("password", pw)]).await;
            let status = r.status().as_u16();
            let ra = retry_after(&r);
            let body: Value = r.json().await.unwrap();
            (status, ra, body)
        }));
    }
    let (mut evaluated, mut throttled, mut busy) = (0, 0, 0);
    for t in tasks {
        let (status, ra, body) = t.await.unwrap();
        match status {
            200 | 400 => {
                assert!(status == 200 || body["error"] == "invalid_grant", "{body}");
                evaluated += 1;
            }
            429 => {
                assert_eq!(body["error"], "invalid_grant");
                assert!(ra.is_some(), "Retry-After with 429");
                throttled += 1;
            }
            503 => {
                assert_eq!(body["error"], "temporarily_unavailable");
                assert!(ra.is_some(), "Retry-After with 503");
                busy += 1;
            }
            s => panic!("unexpected {s}: {body}"),
        }
    }
    assert!(evaluated <= 10, "at most 10 passwords were checked, not {evaluated}");
    assert_eq!(evaluated + throttled + busy, 100);

    // 40 wrong at once, then the right one: refused, the burst's attempts were all counted.
    srv.add_user("erin", "right").await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (srv, a) = (srv.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            let form = [("grant_type", "password"), ("username", "erin"), ("password", "wrong")];
            srv.token(&a, &form).await.status().as_u16()
        }));
    }
    for t in tasks {
        assert!([400, 429, 503].contains(&t.await.unwrap()));
    }
    let r = srv.token(&a, &[("grant_type", "password"), ("username", "erin"), ("password", "right")]).await;
    assert_eq!(r.status(), 429, "the right password waits too");
    assert!(retry_after(&r).is_some());
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_address_is_the_clients() {
    let srv = TestServer::start_with(|s| s.tls.trusted_proxies = Some(vec!["127.0.0.1/32".into()])).await;
    let a = srv.create_app(app(&["authorization_code"])).await;
    let b = Browser::new(&srv);
    let form = b.form(&srv, &a.client_id, "").await;
    // 30 failures for 30 different users from one client behind the proxy.
    for i in 0..30 {
        let r = b.post(&srv, &form, &format!("user{i}"), "x", &[("x-forwarded-for", "203.0.113.1")]).await;
        assert_eq!(r.status(), 401);
    }
    let r = b.post(&srv, &form, "user99", "x", &[("x-forwarded-for", "203.0.113.1")]).await;
    assert_eq!(r.status(), 429, "that client is throttled");
    // Everyone else behind the same proxy is not (the proxy's own address is not the key), and a
    // client cannot escape by writing its own X-Forwarded-For to the left of the proxy's.
    let r = b.post(&srv, &form, "user98", "x", &[("x-forwarded-for", "203.0.113.2")]).await;
    assert_eq!(r.status(), 401, "another client behind the proxy");
    let r = b.post(&srv, &form, "user97", "x", &[("x-forwarded-for", "198.51.100.1, 203.0.113.1")]).await;
    assert_eq!(r.status(), 429, "the rightmost untrusted hop counts");
}

#[tokio::test]
async fn without_a_trusted_proxy_forwarded_headers_are_ignored() {
    let srv = TestServer::start().await;
    let a = srv.create_app(app(&["authorization_code"])).await;
    let b = Browser::new(&srv);
    let form = b.form(&srv, &a.client_id, "").await;
    for i in 0..30 {
        let xff = format!("203.0.113.{i}");
        assert_eq!(b.post(&srv, &form, &format!("u{i}"), "x", &[("x-forwarded-for", &xff)]).await.status(), 401);
    }
    let r = b.post(&srv, &form, "u31", "x", &[("x-forwarded-for", "198.51.100.7")]).await;
    assert_eq!(r.status(), 429, "a made-up X-Forwarded-For does not reset the peer's count");
}

#[tokio::test]
async fn signing_in_again_keeps_one_session_and_rotates_its_cookie() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    srv.add_user("bob", "pw").await;
    let mut ch = app(&["authorization_code"]);
    ch.binding = Some("sso-session".into());
    let sso = srv.create_app(ch).await;
    let one = Browser::new(&srv);
    let t1 = redeem(&srv, &sso, &one.code(&srv, &sso.client_id, "", "alice").await).await;
    let s1 = one.cookie(&srv, "tether_session").unwrap();
    let t2 = redeem(&srv, &sso, &one.code(&srv, &sso.client_id, "&prompt=login", "alice").await).await;
    let s2 = one.cookie(&srv, "tether_session").unwrap();
    assert_ne!(s1, s2, "a new cookie value");
    let (c1, c2) = (jwt_claims(t1["id_token"].as_str().unwrap()), jwt_claims(t2["id_token"].as_str().unwrap()));
    assert_eq!(c1["sid"], c2["sid"], "the same session");
    // The old cookie value gets nothing without a login.
    let old = srv.browser();
    let r = old
        .get(srv.url(&format!("/oauth2/authorize?{}", q(&sso.client_id, ""))))
        .header("cookie", format!("tether_session={s1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the sign-in page, not a code");
    // Logging out with the second ID token ends the one session: both tokens.
    let r = one.c.get(srv.url(&format!("/oidc/logout?id_token_hint={}", t2["id_token"].as_str().unwrap()))).send();
    assert!(r.await.unwrap().status().is_success());
    assert_eq!(srv.introspect(&sso, at(&t1)).await, json!({"active": false}));
    assert_eq!(srv.introspect(&sso, at(&t2)).await, json!({"active": false}));

    // A different user signing in ends the previous user's session (B-6) and what is bound to it.
    let two = Browser::new(&srv);
    let ta = redeem(&srv, &sso, &two.code(&srv, &sso.client_id, "", "alice").await).await;
    let tb = redeem(&srv, &sso, &two.code(&srv, &sso.client_id, "&prompt=login", "bob").await).await;
    assert_eq!(srv.introspect(&sso, at(&ta)).await, json!({"active": false}), "alice's session ended");
    assert_eq!(srv.introspect(&sso, at(&tb)).await["active"], true);
    assert_eq!(srv.introspect(&sso, at(&tb)).await["username"], "bob");
}

#[tokio::test]
async fn a_stolen_id_token_logs_nobody_out() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mut ch = app(&["authorization_code"]);
    ch.binding = Some("sso-session".into());
    let sso = srv.create_app(ch).await;
    let victim = Browser::new(&srv);
    let t = redeem(&srv, &sso, &victim.code(&srv, &sso.client_id, "", "alice").await).await;
    let hint = t["id_token"].as_str().unwrap();
    // From another browser with no session, and from one with its own session.
    let thief = Browser::new(&srv);
    let r = thief.c.get(srv.url(&format!("/oidc/logout?id_token_hint={hint}"))).send().await.unwrap();
    assert!(r.status().is_success());
    srv.add_user("mallory", "pw").await;
    thief.code(&srv, &sso.client_id, "", "mallory").await;
    let r = thief.c.get(srv.url(&format!("/oidc/logout?id_token_hint={hint}"))).send().await.unwrap();
    assert_eq!(r.status(), 400, "names another session: nothing ended");
    assert_eq!(srv.introspect(&sso, at(&t)).await["active"], true, "the victim's token lives");
    // The victim's browser still gets codes without signing in.
    let r = victim.c.get(srv.url(&format!("/oauth2/authorize?{}", q(&sso.client_id, "")))).send().await.unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn login_forms_are_bound_to_the_browser() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    srv.add_user("attacker", "pw").await;
    let a = srv.create_app(app(&["authorization_code"])).await;
    // The attacker fetches a sign-in form for themselves...
    let attacker = Browser::new(&srv);
    let form = attacker.form(&srv, &a.client_id, "").await;
    assert!(attacker.cookie(&srv, "tether_browser").is_some(), "the page sets a pre-session cookie");
    // ...and makes the victim's browser post it, with no origin information at all.
    let victim = Browser::new(&srv);
    let r = victim.post(&srv, &form, "attacker", "pw", &[("origin", "null")]).await;
    assert_eq!(r.status(), 400, "refused: the form belongs to another browser");
    assert!(victim.cookie(&srv, "tether_session").is_none(), "the victim is not signed in as the attacker");
    // The same post from the browser that fetched the form works.
    assert_eq!(attacker.post(&srv, &form, "attacker", "pw", &[("origin", "null")]).await.status(), 303);
}
