//! Client authentication by JWT (RFC 7523, OpenID Connect Core §9): `private_key_jwt` with keys
//! registered inline or at a `jwks_uri` served over real HTTP, and `client_secret_jwt` with the
//! secret sealed under the master key; each assertion rule probed with hand-made assertions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::Response;
use serde_json::{Value, json};
use tether_core::clock::Clock;
use tether_testkit::*;

const TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn now(srv: &TestServer) -> i64 {
    srv.clock.now()
}

fn jti() -> String {
    tether_core::secret::b64url(&tether_core::secret::random_bytes::<12>())
}

/// Claims a well-behaved client sends: for the token endpoint, an hour at most.
fn claims(srv: &TestServer, client_id: &str) -> Value {
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": srv.url("/oauth2/token"),
        "iat": now(srv),
        "exp": now(srv) + 300,
        "jti": jti(),
    })
}

fn es256(key: &DpopKey, kid: Option<&str>, claims: &Value) -> String {
    let mut h = json!({"alg": "ES256", "typ": "JWT"});
    if let Some(k) = kid {
        h["kid"] = json!(k);
    }
    key.sign_raw(&h, claims)
}

fn hs(alg: &str, secret: &str, claims: &Value) -> String {
    use aws_lc_rs::hmac;
    let b = tether_core::secret::b64url;
    let header = json!({"alg": alg, "typ": "JWT"});
    let input = format!("{}.{}", b(header.to_string().as_bytes()), b(claims.to_string().as_bytes()));
    let algo = match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        _ => hmac::HMAC_SHA512,
    };
    let tag = hmac::sign(&hmac::Key::new(algo, secret.as_bytes()), input.as_bytes());
    format!("{input}.{}", b(tag.as_ref()))
}

async fn with_assertion(srv: &TestServer, path: &str, assertion: &str, form: &[(&str, &str)]) -> Response {
    let mut f: Vec<(&str, &str)> = form.to_vec();
    f.extend([("client_assertion_type", TYPE), ("client_assertion", assertion)]);
    srv.client().post(srv.url(path)).form(&f).send().await.unwrap()
}

async fn cc(srv: &TestServer, assertion: &str) -> Response {
    with_assertion(srv, "/oauth2/token", assertion, &[("grant_type", "client_credentials")]).await
}

async fn refused(r: Response, why: &str) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!((status.as_u16(), body["error"].as_str()), (401, Some("invalid_client")), "{why}: {body}");
}

fn jwks_of(key: &DpopKey, kid: &str) -> Value {
    let mut jwk = key.jwk.clone();
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    json!({"keys": [jwk]})
}

fn pkjwt_app(jwks: Option<&Value>, jwks_uri: Option<&str>) -> tether_core::admin::AppChanges {
    let mut ch = app(&["client_credentials"]);
    ch.auth_method = Some("private_key_jwt".into());
    ch.jwks = jwks.map(Value::to_string);
    ch.jwks_uri = jwks_uri.map(str::to_string);
    ch
}

#[tokio::test]
async fn private_key_jwt_checks_every_rule_of_the_assertion() {
    let srv = TestServer::start().await;
    let key = DpopKey::generate();
    let a = srv.create_app(pkjwt_app(Some(&jwks_of(&key, "k1")), None)).await;
    assert!(a.client_secret.is_none(), "no secret for a private_key_jwt client");
    let id = a.client_id.as_str();

    // Accepted: aud the token endpoint, the issuer, or an array naming one of them; no kid needed.
    let r = cc(&srv, &es256(&key, Some("k1"), &claims(&srv, id))).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for aud in [json!(srv.url("")), json!(["https://elsewhere.example", srv.url("/oauth2/token")])] {
        let mut c = claims(&srv, id);
        c["aud"] = aud;
        assert_eq!(cc(&srv, &es256(&key, None, &c)).await.status(), 200, "{c}");
    }
    // At introspection, that endpoint's URL is an audience too.
    let t: Value = cc(&srv, &es256(&key, None, &claims(&srv, id))).await.json().await.unwrap();
    let mut c = claims(&srv, id);
    c["aud"] = json!(srv.url("/oauth2/introspect"));
    let r = with_assertion(
        &srv,
        "/oauth2/introspect",
        &es256(&key, None, &c),
        &[("token", t["access_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["active"], true);

    // A jti is the client's text: control characters included (stored hashed, on both backends).
    let mut c = claims(&srv, id);
    c["jti"] = json!("odd\u{0}jti\n");
    assert_eq!(cc(&srv, &es256(&key, None, &c)).await.status(), 200);

    // Replay: the same assertion twice.
    let once = es256(&key, None, &claims(&srv, id));
    assert_eq!(cc(&srv, &once).await.status(), 200);
    refused(cc(&srv, &once).await, "replayed").await;

    // A forger's assertion does not burn the honest client's jti.
    let honest = claims(&srv, id);
    refused(cc(&srv, &es256(&DpopKey::generate(), None, &honest)).await, "signed by another key").await;
    assert_eq!(cc(&srv, &es256(&key, None, &honest)).await.status(), 200, "the jti is still fresh");

    let n = now(&srv);
    type Change = Box<dyn Fn(&mut Value)>;
    let bad: Vec<(&str, Change)> = vec![
        ("expired", Box::new(move |c| c["exp"] = json!(n - 1))),
        ("lives beyond an hour", Box::new(move |c| c["exp"] = json!(n + 3601))),
        ("no exp", Box::new(|c| drop(c.as_object_mut().unwrap().remove("exp")))),
        ("no jti", Box::new(|c| drop(c.as_object_mut().unwrap().remove("jti")))),
        ("iat in the future", Box::new(move |c| c["iat"] = json!(n + 60))),
        ("nbf in the future", Box::new(move |c| c["nbf"] = json!(n + 60))),
        ("iss is not the client", Box::new(|c| c["iss"] = json!("someone-else"))),
        ("wrong aud", Box::new(|c| c["aud"] = json!("https://other.example/token"))),
        (
            "aud of another endpoint",
            Box::new(|c| c["aud"] = json!(c["aud"].as_str().unwrap().replace("token", "revoke"))),
        ),
    ];
    for (why, change) in bad {
        let mut c = claims(&srv, id);
        change(&mut c);
        refused(cc(&srv, &es256(&key, None, &c)).await, why).await;
    }
    // A kid the client never registered; an HMAC "signed" with the public key (alg confusion);
    // garbage.
    refused(cc(&srv, &es256(&key, Some("k9"), &claims(&srv, id))).await, "unknown kid").await;
    let x = key.jwk["x"].as_str().unwrap().to_string();
    refused(cc(&srv, &hs("HS256", &x, &claims(&srv, id))).await, "HS256 for a private_key_jwt client").await;
    refused(cc(&srv, "not.a.jwt").await, "garbage").await;

    // Another method for this client, or two methods at once.
    let r = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .basic_auth(id, Some("guess"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    refused(r, "client_secret_basic for a private_key_jwt client").await;
    let r = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .basic_auth(id, Some("guess"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", TYPE),
            ("client_assertion", &es256(&key, None, &claims(&srv, id))),
        ])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;
    let mut f = vec![("grant_type", "client_credentials")];
    let assertion = es256(&key, None, &claims(&srv, id));
    f.extend([("client_assertion_type", "urn:example:saml"), ("client_assertion", assertion.as_str())]);
    let r = srv.client().post(srv.url("/oauth2/token")).form(&f).send().await.unwrap();
    assert_oauth_error(r, 400, "invalid_request").await;
    // A client_id that disagrees with the assertion's subject.
    let r = with_assertion(
        &srv,
        "/oauth2/token",
        &es256(&key, None, &claims(&srv, id)),
        &[("grant_type", "client_credentials"), ("client_id", "someone-else")],
    )
    .await;
    assert_oauth_error(r, 400, "invalid_request").await;

    // openid with client_credentials: a token without it, not an error.
    let r = with_assertion(
        &srv,
        "/oauth2/token",
        &es256(&key, None, &claims(&srv, id)),
        &[("grant_type", "client_credentials"), ("scope", "openid profile")],
    )
    .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["scope"], "profile", "{t}");
}

/// A tiny HTTP server for a client's JWK Set: what it serves can change, and it counts requests.
struct JwksServer {
    url: String,
    body: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

async fn jwks_server(initial: Value) -> JwksServer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/jwks.json", l.local_addr().unwrap().port());
    let body = Arc::new(Mutex::new(initial));
    let hits = Arc::new(AtomicUsize::new(0));
    let (b, h) = (body.clone(), hits.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (b, h) = (b.clone(), h.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let text = b.lock().unwrap().to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    JwksServer { url, body, hits }
}

#[tokio::test]
async fn keys_at_a_jwks_uri_are_cached_and_refetched_for_a_new_kid_at_most_every_10_s() {
    let srv = TestServer::start().await;
    let (k1, k2) = (DpopKey::generate(), DpopKey::generate());
    let jwks = jwks_server(jwks_of(&k1, "k1")).await;
    let a = srv.create_app(pkjwt_app(None, Some(&jwks.url))).await;
    let id = a.client_id.as_str();
    let hits = || jwks.hits.load(Ordering::SeqCst);

    assert_eq!(cc(&srv, &es256(&k1, Some("k1"), &claims(&srv, id))).await.status(), 200);
    assert_eq!(cc(&srv, &es256(&k1, Some("k1"), &claims(&srv, id))).await.status(), 200);
    assert_eq!(hits(), 1, "fetched once, then cached");

    // The client rotates to k2. Within 10 s of the last fetch an unknown kid does not refetch.
    *jwks.body.lock().unwrap() = jwks_of(&k2, "k2");
    refused(cc(&srv, &es256(&k2, Some("k2"), &claims(&srv, id))).await, "k2 not fetched yet").await;
    assert_eq!(hits(), 1);
    srv.clock.advance(11);
    assert_eq!(cc(&srv, &es256(&k2, Some("k2"), &claims(&srv, id))).await.status(), 200, "refetched for k2");
    assert_eq!(hits(), 2);
    // A flood of made-up kids: at most one fetch per 10 s.
    for _ in 0..5 {
        refused(cc(&srv, &es256(&k2, Some("made-up"), &claims(&srv, id))).await, "made-up kid").await;
    }
    assert_eq!(hits(), 2);
    srv.clock.advance(11);
    for _ in 0..5 {
        refused(cc(&srv, &es256(&k2, Some("made-up"), &claims(&srv, id))).await, "made-up kid").await;
    }
    assert_eq!(hits(), 3);
    // The old key is gone from the client's set.
    refused(cc(&srv, &es256(&k1, Some("k1"), &claims(&srv, id))).await, "k1 retired by the client").await;
}

#[tokio::test]
async fn client_secret_jwt_keeps_its_secret_sealed_and_accepts_only_its_method() {
    let srv = TestServer::start().await;
    let mut ch = app(&["client_credentials"]);
    ch.auth_method = Some("client_secret_jwt".into());
    let a = srv.create_app(ch).await;
    let (id, secret) = (a.client_id.as_str(), a.client_secret.clone().expect("a secret, shown once"));
    assert!(secret.len() >= 64, "long enough for HS512: {}", secret.len());

    for alg in ["HS256", "HS384", "HS512"] {
        assert_eq!(cc(&srv, &hs(alg, &secret, &claims(&srv, id))).await.status(), 200, "{alg}");
    }
    refused(cc(&srv, &hs("HS256", "not-the-secret", &claims(&srv, id))).await, "another secret").await;
    refused(cc(&srv, &es256(&DpopKey::generate(), None, &claims(&srv, id))).await, "ES256 for an HMAC client").await;
    let r = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .basic_auth(id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    refused(r, "the secret itself, over Basic").await;
    let stored = srv.database_bytes().await;
    assert!(
        !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret is stored sealed, never in clear"
    );

    // Switching away deletes the sealed copy (the hash stays: the same secret now works over
    // Basic); switching back mints a new secret, since only a hash of the old one exists.
    let p = &srv.running().provider;
    let actor = tether_core::audit::Actor::client("test");
    let to = |m: &str| tether_core::admin::AppChanges { auth_method: Some(m.into()), ..Default::default() };
    let (rec, minted) = tether_core::admin_ops::update_app(p, &actor, id, &to("client_secret_basic")).await.unwrap();
    assert!(rec.sealed_secret.is_none() && minted.is_none());
    assert!(p.store.get_app(id).await.unwrap().unwrap().sealed_secret.is_none(), "sealed copy deleted");
    let basic = AppCreds { client_id: id.to_string(), client_secret: Some(secret.clone()) };
    assert_eq!(srv.token(&basic, &[("grant_type", "client_credentials")]).await.status(), 200);
    let (rec, minted) = tether_core::admin_ops::update_app(p, &actor, id, &to("client_secret_jwt")).await.unwrap();
    let fresh = minted.expect("a new secret, shown once").into_inner();
    assert!(rec.sealed_secret.is_some() && fresh != secret);
    refused(cc(&srv, &hs("HS256", &secret, &claims(&srv, id))).await, "the old secret").await;
    assert_eq!(cc(&srv, &hs("HS256", &fresh, &claims(&srv, id))).await.status(), 200, "the new one");
}

#[tokio::test]
async fn discovery_lists_the_jwt_methods_and_their_algorithms() {
    let srv = TestServer::start().await;
    let d: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    for key in [
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    ] {
        let methods = d[key].as_array().unwrap();
        assert!(methods.contains(&json!("private_key_jwt")) && methods.contains(&json!("client_secret_jwt")), "{key}");
    }
    for key in [
        "token_endpoint_auth_signing_alg_values_supported",
        "revocation_endpoint_auth_signing_alg_values_supported",
        "introspection_endpoint_auth_signing_alg_values_supported",
    ] {
        let algs = d[key].as_array().unwrap();
        assert!(
            algs.contains(&json!("ES256")) && algs.contains(&json!("RS256")) && algs.contains(&json!("HS256")),
            "{key}"
        );
        assert!(!algs.contains(&json!("none")), "{key}");
    }
}
