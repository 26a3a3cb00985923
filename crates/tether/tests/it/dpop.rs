//! DPoP (RFC 9449) at the authorization server and the gateway: the `dpop` binding, every check of
//! §4.3 with its own crafted proof, nonces, refresh per B-1, `dpop_jkt`, userinfo, the gateway's
//! G-5 modes and a replay cache shared by two gateway nodes.

use reqwest::Response;
use serde_json::{Value, json};
use tether_core::clock::Clock;
use tether_testkit::*;

fn now(srv: &TestServer) -> i64 {
    srv.clock.now()
}

async fn dpop_app(srv: &TestServer, f: impl FnOnce(&mut tether_core::admin::AppChanges)) -> AppCreds {
    let mut ch = app(&["password", "refresh_token", "client_credentials"]);
    ch.binding = Some("dpop".into());
    ch.token_type = Some("jwt".into());
    f(&mut ch);
    srv.create_app(ch).await
}

async fn token_with(srv: &TestServer, a: &AppCreds, form: &[(&str, &str)], proofs: &[&str]) -> Response {
    let mut r = srv.client().post(srv.url("/oauth2/token"));
    r = match &a.client_secret {
        Some(s) => r.basic_auth(&a.client_id, Some(s)),
        None => r,
    };
    let mut f: Vec<(&str, &str)> = form.to_vec();
    if a.client_secret.is_none() {
        f.push(("client_id", &a.client_id));
    }
    for p in proofs {
        r = r.header("dpop", *p);
    }
    r.form(&f).send().await.unwrap()
}

async fn refresh_with(srv: &TestServer, a: &AppCreds, rt: &str, key: Option<&DpopKey>) -> Response {
    let proof: Vec<String> =
        key.map(|k| k.proof("POST", &srv.url("/oauth2/token"), now(srv), None, None)).into_iter().collect();
    let refs: Vec<&str> = proof.iter().map(String::as_str).collect();
    token_with(srv, a, &[("grant_type", "refresh_token"), ("refresh_token", rt)], &refs).await
}

const PW: &[(&str, &str)] =
    &[("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("scope", "openid profile")];

#[tokio::test]
async fn dpop_bound_tokens_at_the_token_and_userinfo_endpoints() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = dpop_app(&srv, |_| {}).await;
    let key = DpopKey::generate();
    let htu = srv.url("/oauth2/token");

    let r = token_with(&srv, &a, PW, &[&key.proof("POST", &htu, now(&srv), None, None)]).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "DPoP");
    let at = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(jwt_claims(&at)["cnf"], json!({"jkt": key.jkt}));
    let i = srv.introspect(&a, &at).await;
    assert_eq!(i["cnf"], json!({"jkt": key.jkt}));
    assert_eq!(i["binding_type"], "dpop");

    // Without a proof, a dpop app gets nothing.
    let e = assert_oauth_error(token_with(&srv, &a, PW, &[]).await, 400, "invalid_dpop_proof").await;
    assert!(e["error_description"].as_str().unwrap().contains("DPoP proof is required"), "{e}");

    // Userinfo: the DPoP scheme, a proof with ath.
    let ui = srv.url("/oauth2/userinfo");
    let get = |scheme: &str, proof: Option<String>| {
        let mut r = srv.client().get(&ui).header("authorization", format!("{scheme} {at}"));
        if let Some(p) = proof {
            r = r.header("dpop", p);
        }
        r.send()
    };
    let r = get("DPoP", Some(key.proof("GET", &ui, now(&srv), Some(&at), None))).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["sub"], "user-alice");
    // Downgrade to Bearer.
    let r = get("Bearer", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_oauth_error(r, 401, "invalid_token").await;
    // No ath; another key; replay.
    let r = get("DPoP", Some(key.proof("GET", &ui, now(&srv), None, None))).await.unwrap();
    let www = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(www.starts_with("DPoP algs=") && www.contains("error=\"invalid_dpop_proof\""), "{www}");
    assert_oauth_error(r, 401, "invalid_dpop_proof").await;
    let other = DpopKey::generate();
    let r = get("DPoP", Some(other.proof("GET", &ui, now(&srv), Some(&at), None))).await.unwrap();
    assert_oauth_error(r, 401, "invalid_dpop_proof").await;
    let once = key.proof("GET", &ui, now(&srv), Some(&at), None);
    assert_eq!(get("DPoP", Some(once.clone())).await.unwrap().status(), 200);
    let r = get("DPoP", Some(once)).await.unwrap();
    let e = assert_oauth_error(r, 401, "invalid_dpop_proof").await;
    assert!(e["error_description"].as_str().unwrap().contains("replay"), "{e}");

    // An app without a binding type binds a token to a proof it is sent (standard clients do).
    let plain = srv.create_app(app(&["client_credentials"])).await;
    let r = token_with(
        &srv,
        &plain,
        &[("grant_type", "client_credentials")],
        &[&key.proof("POST", &htu, now(&srv), None, None)],
    )
    .await;
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "DPoP");
    assert_eq!(srv.introspect(&plain, t["access_token"].as_str().unwrap()).await["cnf"]["jkt"], key.jkt.as_str());

    let d: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    let algs = d["dpop_signing_alg_values_supported"].as_array().unwrap();
    for alg in ["ES256", "ES384", "EdDSA", "RS256", "PS256"] {
        assert!(algs.contains(&json!(alg)), "{alg}");
    }
}

fn expected(what: &str) -> &'static str {
    match what {
        "two DPoP headers" => "more than one DPoP header",
        "not a JWS" => "not a compact JWS",
        "typ" => "typ must be dpop+jwt",
        "alg none" => "alg \"none\"",
        "alg HS256" => "alg \"HS256\"",
        "private jwk" => "private member",
        "no jwk" => "no jwk",
        "signature" => "signature does not verify",
        "signed by another key" => "signature does not verify",
        "htm" => "htm",
        "htu other path" => "htu",
        "htu other host" => "htu",
        "iat too old" => "iat is outside",
        "iat in the future" => "iat is outside",
        "no jti" => "no jti",
        _ => "",
    }
}

/// RFC 9449 §4.3, one crafted proof per check, at the token endpoint.
#[tokio::test]
async fn every_proof_check_of_rfc9449() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = dpop_app(&srv, |_| {}).await;
    let key = DpopKey::generate();
    let htu = srv.url("/oauth2/token");
    let t = now(&srv);
    let b = tether_core::secret::b64url;
    let valid = || key.parts("POST", &htu, t, None, None);
    let altered = |f: &dyn Fn(&mut Value, &mut Value)| {
        let (mut h, mut c) = valid();
        f(&mut h, &mut c);
        key.sign_raw(&h, &c)
    };
    let unsigned = |h: Value, c: Value| format!("{}.{}.", b(h.to_string().as_bytes()), b(c.to_string().as_bytes()));
    let (vh, vc) = valid();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("two DPoP headers", vec![key.proof("POST", &htu, t, None, None), key.proof("POST", &htu, t, None, None)]),
        ("not a JWS", vec!["not-a-jwt".into()]),
        ("typ", vec![altered(&|h, _| h["typ"] = json!("JWT"))]),
        ("alg none", vec![unsigned(json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk}), vc.clone())]),
        ("alg HS256", vec![altered(&|h, _| h["alg"] = json!("HS256"))]),
        ("private jwk", vec![altered(&|h, _| h["jwk"]["d"] = json!("AAAA"))]),
        ("no jwk", vec![altered(&|h, _| drop(h.as_object_mut().unwrap().remove("jwk")))]),
        (
            "signature",
            vec![{
                let p = key.proof("POST", &htu, t, None, None);
                let (rest, _) = p.rsplit_once('.').unwrap();
                format!("{rest}.{}", b(&[7u8; 64]))
            }],
        ),
        (
            "signed by another key",
            vec![{
                let other = DpopKey::generate();
                other.sign_raw(&vh, &vc)
            }],
        ),
        ("htm", vec![altered(&|_, c| c["htm"] = json!("GET"))]),
        ("htu other path", vec![altered(&|_, c| c["htu"] = json!(srv.url("/oauth2/introspect")))]),
        ("htu other host", vec![altered(&|_, c| c["htu"] = json!(htu.replace("localhost", "evil.example")))]),
        ("iat too old", vec![altered(&|_, c| c["iat"] = json!(t - 301))]),
        ("iat in the future", vec![altered(&|_, c| c["iat"] = json!(t + 60))]),
        ("no jti", vec![altered(&|_, c| drop(c.as_object_mut().unwrap().remove("jti")))]),
    ];
    for (what, proofs) in cases {
        let refs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let r = token_with(&srv, &a, PW, &refs).await;
        let e = assert_oauth_error(r, 400, "invalid_dpop_proof").await;
        let d = e["error_description"].as_str().unwrap();
        assert!(d.contains(expected(what)), "{what}: {d}");
    }
    // htu is compared after normalisation: scheme and host case, default port, query, fragment.
    let port = srv.running().addr.port();
    let variant = format!("HTTPS://LocalHost:{port}/oauth2/token?x=1#f");
    let r = token_with(&srv, &a, PW, &[&key.proof("POST", &variant, t, None, None)]).await;
    assert_eq!(r.status(), 200);
    // A replayed proof.
    let p = key.proof("POST", &htu, t, None, None);
    assert_eq!(token_with(&srv, &a, PW, &[&p]).await.status(), 200);
    let e = assert_oauth_error(token_with(&srv, &a, PW, &[&p]).await, 400, "invalid_dpop_proof").await;
    assert!(e["error_description"].as_str().unwrap().contains("replay"));
    // Nothing was issued by any refused request (only the two accepted ones).
    assert_eq!(srv.count("access_tokens").await, 2);
}

#[tokio::test]
async fn server_nonces() {
    let srv = TestServer::start_with(|s| s.dpop_require_nonce = true).await;
    srv.add_user("alice", "pw").await;
    let a = dpop_app(&srv, |_| {}).await;
    let key = DpopKey::generate();
    let htu = srv.url("/oauth2/token");
    let r = token_with(&srv, &a, PW, &[&key.proof("POST", &htu, now(&srv), None, None)]).await;
    let nonce = r.headers().get("dpop-nonce").expect("DPoP-Nonce").to_str().unwrap().to_string();
    assert_oauth_error(r, 400, "use_dpop_nonce").await;
    let r = token_with(&srv, &a, PW, &[&key.proof("POST", &htu, now(&srv), None, Some(&nonce))]).await;
    assert_eq!(r.status(), 200);
    let r = token_with(&srv, &a, PW, &[&key.proof("POST", &htu, now(&srv), None, Some("forged"))]).await;
    assert_oauth_error(r, 400, "use_dpop_nonce").await;
    // Nonces expire with the proof lifetime.
    srv.clock.advance(301);
    let r = token_with(&srv, &a, PW, &[&key.proof("POST", &htu, now(&srv), None, Some(&nonce))]).await;
    assert_oauth_error(r, 400, "use_dpop_nonce").await;
}

#[tokio::test]
async fn refresh_follows_b1_and_dpop_jkt_binds_the_code() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let htu = srv.url("/oauth2/token");
    let (k1, k2) = (DpopKey::generate(), DpopKey::generate());
    // Confidential: the new token follows the key presented on refresh (key rotation).
    let conf = dpop_app(&srv, |_| {}).await;
    let t: Value =
        token_with(&srv, &conf, PW, &[&k1.proof("POST", &htu, now(&srv), None, None)]).await.json().await.unwrap();
    let e = assert_oauth_error(
        refresh_with(&srv, &conf, t["refresh_token"].as_str().unwrap(), None).await,
        400,
        "invalid_dpop_proof",
    )
    .await;
    assert!(e["error_description"].as_str().unwrap().contains("DPoP proof is required"));
    let r = refresh_with(&srv, &conf, t["refresh_token"].as_str().unwrap(), Some(&k2)).await;
    assert_eq!(r.status(), 200);
    let t2: Value = r.json().await.unwrap();
    assert_eq!(jwt_claims(t2["access_token"].as_str().unwrap())["cnf"]["jkt"], k2.jkt.as_str());

    // Public: the refresh token stays on its key.
    let mut ch = app(&["authorization_code", "refresh_token"]);
    ch.public = Some(true);
    ch.binding = Some("dpop".into());
    ch.token_type = Some("jwt".into());
    let public = srv.create_app(ch).await;
    let b = srv.browser();
    let (verifier, challenge) = pkce();
    let q = format!(
        "response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=openid&code_challenge={challenge}&code_challenge_method=S256&dpop_jkt={}",
        public.client_id, k1.jkt
    );
    let loc = login_flow(&srv, &b, &q, "alice", "pw").await;
    let code = query_param(&loc, "code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://app.example/cb"),
        ("code_verifier", verifier.as_str()),
    ];
    // dpop_jkt: another key cannot redeem the code.
    let r = token_with(&srv, &public, &form, &[&k2.proof("POST", &htu, now(&srv), None, None)]).await;
    let e = assert_oauth_error(r, 400, "invalid_dpop_proof").await;
    assert!(e["error_description"].as_str().unwrap().contains("dpop_jkt"), "{e}");
    let r = token_with(&srv, &public, &form, &[&k1.proof("POST", &htu, now(&srv), None, None)]).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "DPoP");
    assert_eq!(jwt_claims(t["access_token"].as_str().unwrap())["cnf"], json!({"jkt": k1.jkt}), "cnf from dpop_jkt");
    let rt = t["refresh_token"].as_str().unwrap();
    assert_oauth_error(refresh_with(&srv, &public, rt, Some(&k2)).await, 400, "invalid_grant").await;
    let r = refresh_with(&srv, &public, rt, Some(&k1)).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(jwt_claims(t["access_token"].as_str().unwrap())["cnf"], json!({"jkt": k1.jkt}));

    // --validate-binding: revoking a DPoP-bound access token takes a proof with its key.
    let strict = dpop_app(&srv, |c| c.validate_binding = Some(true)).await;
    let t: Value =
        token_with(&srv, &strict, PW, &[&k1.proof("POST", &htu, now(&srv), None, None)]).await.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap();
    let revoke = |proof: Option<String>| {
        let mut r = srv
            .client()
            .post(srv.url("/oauth2/revoke"))
            .basic_auth(&strict.client_id, strict.client_secret.as_deref())
            .form(&[("token", at)]);
        if let Some(p) = proof {
            r = r.header("dpop", p);
        }
        r.send()
    };
    let rv = srv.url("/oauth2/revoke");
    assert_oauth_error(revoke(None).await.unwrap(), 400, "access_denied").await;
    assert_oauth_error(revoke(Some(k2.proof("POST", &rv, now(&srv), None, None))).await.unwrap(), 400, "access_denied")
        .await;
    assert_eq!(revoke(Some(k1.proof("POST", &rv, now(&srv), None, None))).await.unwrap().status(), 200);
    assert_eq!(srv.introspect(&strict, at).await, json!({"active": false}));
}

#[tokio::test]
async fn gateway_checks_dpop_proofs_per_g5() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = dpop_app(&srv, |_| {}).await;
    let unbound_app = srv
        .create_app({
            let mut c = app(&["password"]);
            c.token_type = Some("jwt".into());
            c
        })
        .await;
    let key = DpopKey::generate();
    let htu = srv.url("/oauth2/token");
    let t: Value =
        token_with(&srv, &a, PW, &[&key.proof("POST", &htu, now(&srv), None, None)]).await.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap().to_string();
    let unbound: Value = srv.token(&unbound_app, &PW[..3]).await.json().await.unwrap();
    let unbound = unbound["access_token"].as_str().unwrap().to_string();
    let upstream = echo_upstream().await;
    let db = srv.dir.path().join("replay.db");
    let replay = format!("sqlite://{}", db.display());
    let mk = |dpop_mode: &'static str, nonce: bool| {
        let replay = replay.clone();
        move |c: &mut tether_gateway::FileConfig| {
            c.auth_methods = Some(vec!["bearer".into()]);
            c.proof_of_possession_dpop = Some(dpop_mode.into());
            c.dpop_use_nonce = Some(nonce);
            c.public_url = Some("https://api.example".into());
            c.replay_store = Some(replay);
        }
    };
    let gw1 = srv.gateway(upstream, mk("optional", false)).await.unwrap();
    let gw2 = srv.gateway(upstream, mk("optional", false)).await.unwrap();
    let call = |gw: &TestGateway, scheme: &str, tok: &str, proof: Option<String>| {
        let mut r = gw.client().get(gw.url("/orders/7?x=1")).header("authorization", format!("{scheme} {tok}"));
        if let Some(p) = proof {
            r = r.header("dpop", p);
        }
        r.send()
    };
    // htu is the configured public URL plus the path, whatever Host the request carried.
    let htu_gw = "https://api.example/orders/7";
    let p = key.proof("GET", htu_gw, now(&srv), Some(&at), None);
    let r = call(&gw1, "DPoP", &at, Some(p.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["authorization"], format!("Bearer {at}"), "the upstream sees Bearer");
    assert!(body["headers"].get("dpop").is_none(), "and no DPoP header");
    // The same proof on the other node: a replay (shared store).
    let r = call(&gw2, "DPoP", &at, Some(p)).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_dpop_proof");
    // Downgrade; no proof; a proof for the gateway's Host instead of public_url; unbound token with DPoP.
    assert_eq!(call(&gw1, "Bearer", &at, None).await.unwrap().status(), 401);
    assert_eq!(call(&gw1, "DPoP", &at, None).await.unwrap().status(), 401);
    let wrong_htu = key.proof("GET", &gw1.url("/orders/7"), now(&srv), Some(&at), None);
    assert_eq!(call(&gw1, "DPoP", &at, Some(wrong_htu)).await.unwrap().status(), 401);
    assert_eq!(
        call(&gw1, "DPoP", &unbound, Some(key.proof("GET", htu_gw, now(&srv), Some(&unbound), None)))
            .await
            .unwrap()
            .status(),
        401
    );
    // Optional mode: unbound Bearer tokens pass.
    assert_eq!(call(&gw1, "Bearer", &unbound, None).await.unwrap().status(), 200);
    gw1.stop().await;
    gw2.stop().await;

    // Strict: every token must be DPoP-bound. With nonces: 401 use_dpop_nonce and a fresh nonce.
    let gw = srv.gateway(upstream, mk("strict", true)).await.unwrap();
    let r = call(&gw, "Bearer", &unbound, None).await.unwrap();
    assert_eq!(r.status(), 401);
    let www: Vec<String> = r.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().into()).collect();
    assert!(www.iter().all(|w| w.starts_with("DPoP algs=")), "strict: DPoP challenge only: {www:?}");
    let r = call(&gw, "DPoP", &at, Some(key.proof("GET", htu_gw, now(&srv), Some(&at), None))).await.unwrap();
    assert_eq!(r.status(), 401);
    let nonce = r.headers()["dpop-nonce"].to_str().unwrap().to_string();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "use_dpop_nonce");
    let r = call(&gw, "DPoP", &at, Some(key.proof("GET", htu_gw, now(&srv), Some(&at), Some(&nonce)))).await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The real time (DPoP proofs made by an outside library carry the real `iat`).
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// An independent DPoP implementation (openid-client, from npm) obtains a DPoP-bound token from the
/// server and uses it through the gateway. See interop/dpop.mjs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_dpop_interop() {
    let srv = TestServer::start().await;
    srv.clock.set(wall_clock());
    let mut ch = app(&["client_credentials"]);
    ch.binding = Some("dpop".into());
    ch.token_type = Some("jwt".into());
    ch.scopes = Some(vec!["orders".into()]);
    let a = srv.create_app(ch).await;
    let upstream = echo_upstream().await;
    let gw = srv.gateway(upstream, |c| c.auth_methods = Some(vec!["bearer".into()])).await.unwrap();
    let d = TempDir::new("dpop-interop");
    let cas = d.path().join("cas.pem");
    std::fs::write(&cas, format!("{}{}", srv.ca_pem, gw.ca_pem)).unwrap();
    let resource = format!("https://127.0.0.1:{}/orders/1", gw.addr().port());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/dpop.mjs");
    let run = tokio::process::Command::new("node")
        .arg(script)
        .args([srv.base.as_str(), &a.client_id, a.client_secret.as_deref().unwrap(), &resource])
        .env("NODE_EXTRA_CA_CERTS", &cas)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run).await.expect("in time").expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or(Value::Null);
    assert!(
        out.status.success() && report["ok"] == true,
        "DPoP interop failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["facts"]["token_type"], "dpop");
    assert_eq!(report["facts"]["with_proof"], 200);
    assert_eq!(report["facts"]["as_bearer"], 401);
}

/// B-9: a DPoP-bound subject token is exchanged only on a request carrying a proof with its key.
#[tokio::test]
async fn a_dpop_bound_subject_token_is_exchanged_only_with_its_proof() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let front = dpop_app(&srv, |_| {}).await;
    let key = DpopKey::generate();
    let htu = srv.url("/oauth2/token");
    let subject: Value =
        token_with(&srv, &front, PW, &[&key.proof("POST", &htu, now(&srv), None, None)]).await.json().await.unwrap();
    let subject = subject["access_token"].as_str().unwrap().to_string();
    let mut ch = app(&["token_exchange"]);
    ch.exchange_from = Some(vec![front.client_id.clone()]);
    ch.token_type = Some("jwt".into());
    let back = srv.create_app(ch).await;
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", subject.as_str()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
    ];
    let e = assert_oauth_error(token_with(&srv, &back, &form, &[]).await, 400, "invalid_request").await;
    assert!(e["error_description"].as_str().unwrap().contains("DPoP-bound"), "{e}");
    let thief = DpopKey::generate();
    let r = token_with(&srv, &back, &form, &[&thief.proof("POST", &htu, now(&srv), None, None)]).await;
    assert_oauth_error(r, 400, "invalid_request").await;
    let r = token_with(&srv, &back, &form, &[&key.proof("POST", &htu, now(&srv), None, None)]).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "DPoP", "the exchanged token is bound to the same proof key");
    assert_eq!(jwt_claims(t["access_token"].as_str().unwrap())["cnf"]["jkt"], key.jkt.as_str());
}
