//! The FAPI 2.0 Security Profile per app (`--profile fapi2`), each rule probed alone: refused at
//! `app create`/`update` when the settings break it, enforced on requests (PAR with a redirect
//! URI, PKCE S256, no front channel, client assertion `aud` = the issuer as a string, algorithms,
//! a 60 s code, refresh tokens not rotated); and OIDC Back-Channel Logout 1.0: a `logout_token`
//! posted to a receiver on loopback when a session ends by logout, by an operator or by the
//! clock, verified against the JWKS; retries on 5xx, none on 400, given up after 10 minutes
//! with an audit event.

use std::sync::{Arc, Mutex};

use reqwest::Response;
use serde_json::{Value, json};
use tether_core::admin::{self, AppChanges};
use tether_core::clock::Clock;
use tether_core::store::EventQuery;
use tether_testkit::*;

const CB: &str = "https://app.example/cb";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn jwks_of(key: &DpopKey) -> Value {
    let mut jwk = key.jwk.clone();
    jwk["kid"] = json!("k1");
    json!({"keys": [jwk]})
}

/// A FAPI 2.0 app that satisfies every rule: private_key_jwt, DPoP binding, https redirect URI.
fn fapi_app(key: &DpopKey) -> AppChanges {
    let mut ch = app(&["authorization_code", "refresh_token"]);
    ch.profile = Some("fapi2".into());
    ch.auth_method = Some("private_key_jwt".into());
    ch.jwks = Some(jwks_of(key).to_string());
    ch.binding = Some("dpop".into());
    ch.token_type = Some("jwt".into());
    ch
}

fn jti() -> String {
    tether_core::secret::b64url(&tether_core::secret::random_bytes::<12>())
}

/// A client assertion with `aud` as given, signed by `key` (ES256).
fn assertion_with(srv: &TestServer, key: &DpopKey, client_id: &str, aud: Value) -> String {
    let now = srv.clock.now();
    let c = json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 60, "jti": jti()});
    key.sign_raw(&json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}), &c)
}

fn assertion(srv: &TestServer, key: &DpopKey, client_id: &str) -> String {
    assertion_with(srv, key, client_id, json!(srv.url("")))
}

async fn post(srv: &TestServer, path: &str, form: &[(&str, &str)], dpop: Option<String>) -> Response {
    let mut r = srv.client().post(srv.url(path));
    if let Some(p) = dpop {
        r = r.header("dpop", p);
    }
    r.form(form).send().await.unwrap()
}

/// Push an authorization request as `client_id` (authenticated by `key`), with `extra` on top of
/// a compliant base (redirect URI, PKCE S256, openid).
async fn push(srv: &TestServer, key: &DpopKey, client_id: &str, challenge: &str, drop: &[&str]) -> Response {
    let a = assertion(srv, key, client_id);
    let mut form = vec![
        ("client_id", client_id),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
        ("response_type", "code"),
        ("redirect_uri", CB),
        ("scope", "openid"),
        ("state", "s1"),
        ("nonce", "n1"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    form.retain(|(k, _)| !drop.contains(k));
    post(srv, "/oauth2/par", &form, None).await
}

fn front(client_id: &str, request_uri: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("request_uri", request_uri)
        .finish()
}

/// PAR + login: the code (and the browser, whose session cookie is the user's session).
async fn code_for(srv: &TestServer, key: &DpopKey, client_id: &str, user: &str) -> (String, String, reqwest::Client) {
    let (verifier, challenge) = pkce();
    let r = push(srv, key, client_id, &challenge, &[]).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let uri = r.json::<Value>().await.unwrap()["request_uri"].as_str().unwrap().to_string();
    let browser = srv.browser();
    let loc = login_flow(srv, &browser, &front(client_id, &uri), user, "pw").await;
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(srv.url("").as_str()), "iss in the response: {loc}");
    (query_param(&loc, "code").expect("a code"), verifier, browser)
}

async fn redeem(
    srv: &TestServer,
    key: &DpopKey,
    dpop: &DpopKey,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> Response {
    let a = assertion(srv, key, client_id);
    let proof = dpop.proof("POST", &srv.url("/oauth2/token"), srv.clock.now(), None, None);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CB),
        ("code_verifier", verifier),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
    ];
    post(srv, "/oauth2/token", &form, Some(proof)).await
}

async fn refresh(srv: &TestServer, key: &DpopKey, dpop: &DpopKey, client_id: &str, rt: &str) -> Response {
    let a = assertion(srv, key, client_id);
    let proof = dpop.proof("POST", &srv.url("/oauth2/token"), srv.clock.now(), None, None);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", a.as_str()),
    ];
    post(srv, "/oauth2/token", &form, Some(proof)).await
}

/// A DPoP proof signed with a fresh P-384 key (ES384).
fn es384_proof(htu: &str, iat: i64) -> String {
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let p = pair.public_key().as_ref().to_vec();
    let b = tether_core::secret::b64url;
    let jwk = json!({"kty": "EC", "crv": "P-384", "x": b(&p[1..49]), "y": b(&p[49..97])});
    let h = json!({"typ": "dpop+jwt", "alg": "ES384", "jwk": jwk});
    let c = json!({"jti": jti(), "htm": "POST", "htu": htu, "iat": iat});
    let input = format!("{}.{}", b(h.to_string().as_bytes()), b(c.to_string().as_bytes()));
    let sig = pair.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", b(sig.as_ref()))
}

#[test]
fn settings_that_break_the_profile_are_refused_one_by_one() {
    let key = DpopKey::generate();
    let (ok, _) = admin::create(&fapi_app(&key)).expect("a compliant FAPI 2.0 app");
    assert!(ok.app.require_par, "PAR follows the profile");
    assert_eq!(ok.app.id_token_alg.as_str(), "ES256", "ID tokens default to ES256");

    type Breaks = Box<dyn Fn(&mut AppChanges)>;
    let cases: Vec<(&str, Breaks, &str)> = vec![
        (
            "public client",
            Box::new(|c| {
                c.public = Some(true);
                c.auth_method = None;
            }),
            "confidential",
        ),
        ("client_secret_basic", Box::new(|c| c.auth_method = Some("client_secret_basic".into())), "--auth-method"),
        ("client_secret_jwt", Box::new(|c| c.auth_method = Some("client_secret_jwt".into())), "--auth-method"),
        (
            "password grant",
            Box::new(|c| {
                c.grant_types = Some(vec!["authorization_code".into(), "password".into()]);
            }),
            "password",
        ),
        ("unbound tokens", Box::new(|c| c.binding = Some("none".into())), "sender-constrained"),
        ("cookie binding", Box::new(|c| c.binding = Some("cookie".into())), "sender-constrained"),
        ("PAR off", Box::new(|c| c.require_par = Some(false)), "pushed authorization"),
        ("RS256 ID tokens", Box::new(|c| c.id_token_alg = Some("RS256".into())), "ES256"),
        ("http redirect URI", Box::new(|c| c.redirect_uris = Some(vec!["http://127.0.0.1:8080/cb".into()])), "https"),
    ];
    for (what, breaks, says) in cases {
        let mut ch = fapi_app(&key);
        breaks(&mut ch);
        let err = admin::create(&ch).err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(err.contains("--profile fapi2") && err.contains(says), "{what}: {err}");
    }

    // An update that breaks a rule of an existing FAPI 2.0 app is refused the same way.
    let mut ch = AppChanges { binding: Some("none".into()), ..Default::default() };
    assert!(admin::update(&ok, &ch).unwrap_err().contains("sender-constrained"));
    // Turning the profile on for an app that breaks it is refused; off again is always possible.
    let (plain, _) = admin::create(&app(&["authorization_code", "refresh_token"])).unwrap();
    ch = AppChanges { profile: Some("fapi2".into()), ..Default::default() };
    assert!(admin::update(&plain, &ch).unwrap_err().contains("--profile fapi2"));
    ch = AppChanges { profile: Some("none".into()), ..Default::default() };
    assert_eq!(admin::update(&ok, &ch).unwrap().0.app.profile.as_str(), "none");
    ch = AppChanges { profile: Some("fapi1".into()), ..Default::default() };
    assert!(admin::update(&ok, &ch).unwrap_err().contains("unknown --profile"));
}

#[tokio::test]
async fn every_request_rule_is_enforced() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let key = DpopKey::generate();
    let dpop = DpopKey::generate();
    let a = srv.create_app(fapi_app(&key)).await;
    let id = a.client_id.as_str();
    let (_, challenge) = pkce();

    // The front channel is refused on a page, never redirected (the redirect URI is not trusted).
    let q = format!(
        "client_id={id}&response_type=code&redirect_uri={CB}&code_challenge={challenge}&code_challenge_method=S256"
    );
    let r = srv.browser().get(srv.url(&format!("/oauth2/authorize?{q}"))).send().await.unwrap();
    assert_eq!(r.status(), 400, "an error page");
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("invalid_request"));

    // The push: redirect_uri required, PKCE S256 required.
    for (drop, why) in
        [(&["redirect_uri"][..], "redirect_uri"), (&["code_challenge", "code_challenge_method"][..], "code_challenge")]
    {
        let body = assert_oauth_error(push(&srv, &key, id, &challenge, drop).await, 400, "invalid_request").await;
        assert!(body["error_description"].as_str().unwrap().contains(why), "{body}");
    }
    let r = {
        let asr = assertion(&srv, &key, id);
        let form = [
            ("client_id", id),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", asr.as_str()),
            ("response_type", "code"),
            ("redirect_uri", CB),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "plain"),
        ];
        post(&srv, "/oauth2/par", &form, None).await
    };
    assert_oauth_error(r, 400, "invalid_request").await;

    // Client assertions: aud exactly the issuer, as a string; only PS256, ES256, EdDSA.
    for aud in [json!(srv.url("/oauth2/token")), json!(srv.url("/oauth2/par")), json!([srv.url("")])] {
        let asr = assertion_with(&srv, &key, id, aud.clone());
        let form = [("client_id", id), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", asr.as_str())];
        let mut f = form.to_vec();
        f.extend([("response_type", "code"), ("redirect_uri", CB), ("code_challenge", challenge.as_str())]);
        f.push(("code_challenge_method", "S256"));
        // The reason is logged, not told (client authentication failures all read alike).
        assert_oauth_error(post(&srv, "/oauth2/par", &f, None).await, 401, "invalid_client").await;
    }
    // RS256 is a private_key_jwt algorithm, but not FAPI 2.0's: refused before any key is tried.
    let now = srv.clock.now();
    let c = json!({"iss": id, "sub": id, "aud": srv.url(""), "iat": now, "exp": now + 60, "jti": jti()});
    let rs = key.sign_raw(&json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}), &c);
    let form = [("client_id", id), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", rs.as_str())];
    assert_oauth_error(post(&srv, "/oauth2/par", &form, None).await, 401, "invalid_client").await;

    // A valid DPoP proof signed with ES384: accepted by Tether, not by the profile.
    let bad = es384_proof(&srv.url("/oauth2/par"), srv.clock.now());
    let asr = assertion(&srv, &key, id);
    let form = [
        ("client_id", id),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", asr.as_str()),
        ("response_type", "code"),
        ("redirect_uri", CB),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let body = assert_oauth_error(post(&srv, "/oauth2/par", &form, Some(bad)).await, 400, "invalid_dpop_proof").await;
    assert!(body["error_description"].as_str().unwrap().contains("FAPI 2.0"), "{body}");

    // The whole flow, then the code's lifetime: 60 s at most.
    let (code, verifier, _) = code_for(&srv, &key, id, "alice").await;
    srv.clock.advance(61);
    let body = assert_oauth_error(redeem(&srv, &key, &dpop, id, &code, &verifier).await, 400, "invalid_grant").await;
    assert!(body["error_description"].as_str().unwrap().contains("expired"), "{body}");
}

#[tokio::test]
async fn refresh_tokens_are_not_rotated_and_each_access_token_is_bound() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let key = DpopKey::generate();
    let dpop = DpopKey::generate();
    let a = srv.create_app(fapi_app(&key)).await;
    let id = a.client_id.as_str();
    let (code, verifier, _) = code_for(&srv, &key, id, "alice").await;
    let r = redeem(&srv, &key, &dpop, id, &code, &verifier).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "DPoP");
    assert_eq!(jwt_header(t["id_token"].as_str().unwrap())["alg"], "ES256");
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let mut previous = t["access_token"].as_str().unwrap().to_string();

    let caller = srv.create_app(AppChanges { introspect_any: Some(true), ..app(&["client_credentials"]) }).await;
    for round in 1..=3 {
        srv.clock.advance(5);
        let r = refresh(&srv, &key, &dpop, id, &rt).await;
        assert_eq!(r.status(), 200, "round {round}");
        let n: Value = r.json().await.unwrap();
        assert_eq!(n["refresh_token"].as_str(), Some(rt.as_str()), "the same refresh token (round {round})");
        let at = n["access_token"].as_str().unwrap().to_string();
        assert_ne!(at, previous);
        assert_eq!(jwt_claims(&at)["cnf"]["jkt"], dpop.jkt.as_str(), "bound per B-1");
        assert_eq!(srv.introspect(&caller, &previous).await["active"], false, "the previous access token is revoked");
        assert_eq!(srv.introspect(&caller, &at).await["active"], true);
        previous = at;
    }

    // Still tied to the client's authentication; a confidential client may present a new DPoP
    // key (B-1, RFC 9449 §5), which binds the new access token, but never none.
    let other = DpopKey::generate();
    assert_oauth_error(refresh(&srv, &other, &dpop, id, &rt).await, 401, "invalid_client").await;
    let r = refresh(&srv, &key, &other, id, &rt).await;
    assert_eq!(r.status(), 200);
    let n: Value = r.json().await.unwrap();
    assert_eq!(jwt_claims(n["access_token"].as_str().unwrap())["cnf"]["jkt"], other.jkt.as_str());
    let asr = assertion(&srv, &key, id);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", asr.as_str()),
    ];
    assert_oauth_error(post(&srv, "/oauth2/token", &form, None).await, 400, "invalid_dpop_proof").await;
    // Revoked, it is refused (and nothing else is issued from it).
    let asr = assertion(&srv, &key, id);
    let form = [("token", rt.as_str()), ("client_assertion_type", ASSERTION_TYPE), ("client_assertion", asr.as_str())];
    assert_eq!(post(&srv, "/oauth2/revoke", &form, None).await.status(), 200);
    assert_oauth_error(refresh(&srv, &key, &dpop, id, &rt).await, 400, "invalid_grant").await;
}

// ---------------------------------------------------------------------------------------------
// Back-channel logout

/// A receiver on loopback: records every POST's form and answers with the next status of
/// `answers` (200 once they run out).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<String>>>,
}

async fn receiver(answers: Vec<u16>) -> Receiver {
    use axum::extract::{Form, State};
    use axum::http::StatusCode;
    type Shared = (Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<u16>>>);
    let got = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(answers));
    let app = axum::Router::new()
        .route(
            "/backchannel",
            axum::routing::post(
                |State((got, answers)): State<Shared>, Form(f): Form<Vec<(String, String)>>| async move {
                    let token = f.into_iter().find(|(k, _)| k == "logout_token").map(|(_, v)| v).unwrap_or_default();
                    got.lock().unwrap().push(token);
                    let mut a = answers.lock().unwrap();
                    let status = if a.is_empty() { 200 } else { a.remove(0) };
                    StatusCode::from_u16(status).unwrap()
                },
            ),
        )
        .with_state((got.clone(), answers));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/backchannel", l.local_addr().unwrap().port());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    Receiver { url, got }
}

impl Receiver {
    /// Wait (at most 10 s: the job runs every second) until `n` posts arrived; return them.
    async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{} of {n} back-channel posts arrived", self.got.lock().unwrap().len());
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// A code-flow app with a back-channel URI (client_secret_basic: the profile is not needed here).
async fn bc_app(srv: &TestServer, uri: &str, alg: &str) -> AppCreds {
    let mut ch = app(&["authorization_code", "refresh_token"]);
    ch.backchannel_logout_uri = Some(uri.into());
    ch.backchannel_logout_session_required = Some(true);
    ch.id_token_alg = Some(alg.into());
    srv.create_app(ch).await
}

/// Sign in through `a` and redeem the code: the ID token and the browser holding the session.
async fn sign_in(srv: &TestServer, a: &AppCreds, browser: &reqwest::Client) -> Value {
    let (verifier, challenge) = pkce();
    let q = format!(
        "client_id={}&response_type=code&redirect_uri={CB}&scope=openid&code_challenge={challenge}&code_challenge_method=S256",
        a.client_id
    );
    let loc = login_flow(srv, browser, &q, "alice", "pw").await;
    let code = query_param(&loc, "code").expect("code");
    let r = srv
        .token(
            a,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Verify a logout token against the server's JWKS and the rules of OIDC Back-Channel Logout §2.4.
async fn verify_logout_token(srv: &TestServer, token: &str, client_id: &str, alg: &str) -> Value {
    let header = jwt_header(token);
    assert_eq!((header["typ"].as_str(), header["alg"].as_str()), (Some("logout+jwt"), Some(alg)), "{header}");
    let jwks: jsonwebtoken::jwk::JwkSet =
        srv.client().get(srv.url("/oauth2/jwks")).send().await.unwrap().json().await.unwrap();
    let jwk = jwks.find(header["kid"].as_str().unwrap()).expect("the kid is in the JWKS");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::from_str(alg).unwrap());
    v.set_audience(&[client_id]);
    v.set_issuer(&[srv.url("")]);
    v.validate_exp = false; // the test clock is not the wall clock
    v.required_spec_claims = ["iss", "aud", "iat"].iter().map(|s| s.to_string()).collect();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let c = jsonwebtoken::decode::<Value>(token, &key, &v).expect("the logout token verifies").claims;
    assert!(c["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object(), "{c}");
    assert!(c.get("nonce").is_none(), "never a nonce: {c}");
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert!(exp > iat && exp - iat <= 120, "{c}");
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
    c
}

use std::str::FromStr;

#[tokio::test]
async fn rp_logout_posts_a_logout_token_to_each_app_holding_tokens_of_the_session() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let rx = receiver(vec![]).await;
    let rx2 = receiver(vec![]).await;
    let idle = receiver(vec![]).await;
    let a = bc_app(&srv, &rx.url, "ES256").await;
    let b = bc_app(&srv, &rx2.url, "RS256").await;
    let _bystander = bc_app(&srv, &idle.url, "RS256").await; // holds nothing of the session
    let browser = srv.browser();
    let id_a = sign_in(&srv, &a, &browser).await;
    let id_b = sign_in(&srv, &b, &browser).await; // SSO: the same session
    let claims_a = jwt_claims(id_a["id_token"].as_str().unwrap());
    assert_eq!(claims_a["sid"], jwt_claims(id_b["id_token"].as_str().unwrap())["sid"]);

    let hint = id_a["id_token"].as_str().unwrap();
    let r = browser.get(srv.url(&format!("/oidc/logout?id_token_hint={hint}"))).send().await.unwrap();
    assert!(r.status().is_success() || r.status().is_redirection(), "{}", r.status());

    let got = rx.wait_for(1).await;
    let c = verify_logout_token(&srv, &got[0], &a.client_id, "ES256").await;
    assert_eq!((&c["sid"], &c["sub"]), (&claims_a["sid"], &claims_a["sub"]));
    let got2 = rx2.wait_for(1).await;
    let c2 = verify_logout_token(&srv, &got2[0], &b.client_id, "RS256").await;
    assert_ne!(c["jti"], c2["jti"]);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!((rx.count(), rx2.count(), idle.count()), (1, 1, 0), "once each; nothing for an app without tokens");
}

#[tokio::test]
async fn a_5xx_is_retried_with_the_same_jti_a_400_is_not_and_a_dead_receiver_is_given_up() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let flaky = receiver(vec![503]).await;
    let refusing = receiver(vec![400]).await;
    let down = receiver(vec![503; 100]).await;
    let apps = [
        bc_app(&srv, &flaky.url, "RS256").await,
        bc_app(&srv, &refusing.url, "RS256").await,
        bc_app(&srv, &down.url, "RS256").await,
    ];
    let browser = srv.browser();
    for a in &apps {
        sign_in(&srv, a, &browser).await;
    }
    // An operator ends the session (user disabled): every app of it is told.
    let admin = srv.running().provider.clone();
    let alice = admin.store.get_user_by_name("alice").await.unwrap().unwrap();
    let sessions = admin.store.list_sessions(&alice.user.id).await.unwrap();
    tether_core::endpoint::logout::end_session(&admin, &sessions[0], &Default::default()).await.unwrap();

    let first = flaky.wait_for(1).await;
    refusing.wait_for(1).await;
    down.wait_for(1).await;
    // The retry waits for its backoff on the server's clock.
    srv.clock.advance(2);
    let both = flaky.wait_for(2).await;
    assert_eq!(jwt_claims(&both[0])["jti"], jwt_claims(&both[1])["jti"], "the same jti, signed anew");
    // Past ten minutes of failures the delivery is given up, with an audit event; a 400 at once.
    for _ in 0..12 {
        srv.clock.advance(64);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let tries = down.count();
    assert!((5..=20).contains(&tries), "{tries} attempts at a receiver that stays down");
    srv.clock.advance(3600);
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!((down.count(), refusing.count(), flaky.count()), (tries, 1, 2), "nothing after giving up");
    admin.audit.flush(&*admin.store).await;
    let q = EventQuery { types: vec!["logout.backchannel_failed".into()], limit: 10, ..Default::default() };
    let ev = admin.store.list_events(&q).await.unwrap();
    let targets: Vec<&str> = ev.iter().filter_map(|e| e.detail["target"].as_str()).collect();
    assert!(targets.contains(&apps[1].client_id.as_str()) && targets.contains(&apps[2].client_id.as_str()), "{ev:?}");
    assert!(!targets.contains(&apps[0].client_id.as_str()));
    drop(first);
}

#[tokio::test]
async fn a_session_that_expires_is_logged_out_too() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let rx = receiver(vec![]).await;
    let a = bc_app(&srv, &rx.url, "ES256").await;
    let id = sign_in(&srv, &a, &srv.browser()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(rx.count(), 0, "a live session is not logged out");
    srv.clock.advance(3601); // past the idle timeout
    let got = rx.wait_for(1).await;
    let c = verify_logout_token(&srv, &got[0], &a.client_id, "ES256").await;
    assert_eq!(c["sid"], jwt_claims(id["id_token"].as_str().unwrap())["sid"]);
}

#[tokio::test]
async fn backchannel_uri_rules_and_discovery() {
    for (uri, ok) in [
        ("https://rp.example/logout", true),
        ("http://127.0.0.1:9/logout", true),
        ("http://localhost/logout", true),
        ("http://rp.example/logout", false),
        ("https://rp.example/logout#x", false),
        ("not a url", false),
    ] {
        let mut ch = app(&["authorization_code"]);
        ch.backchannel_logout_uri = Some(uri.into());
        assert_eq!(admin::create(&ch).is_ok(), ok, "{uri}");
    }
    let mut ch = app(&["authorization_code"]);
    ch.backchannel_logout_session_required = Some(true);
    assert!(admin::create(&ch).unwrap_err().contains("--backchannel-logout-uri"));

    let srv = TestServer::start().await;
    let d: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["backchannel_logout_supported"], true);
    assert_eq!(d["backchannel_logout_session_supported"], true);
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
}
