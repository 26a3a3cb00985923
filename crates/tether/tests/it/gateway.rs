//! `tether gateway` (gateway.md G-1..G-7): every row of the G-4 table, introspection and its cache,
//! revocation, forwarded certificates from trusted and untrusted peers, failures (503/502),
//! challenges, the session method, and the start-time configuration checks.

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tether_gateway::FileConfig;
use tether_testkit::*;

struct Setup {
    srv: TestServer,
    upstream: std::net::SocketAddr,
    bound_jwt: AppCreds,
    unbound_jwt: AppCreds,
    bound_opaque: AppCreds,
    gw_app: AppCreds,
}

async fn setup() -> Setup {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mk = |binding: Option<&str>, tt: &str| {
        let mut ch = app(&["password"]);
        ch.binding = binding.map(str::to_string);
        ch.token_type = Some(tt.into());
        ch
    };
    let bound_jwt = srv.create_app(mk(Some("certificate"), "jwt")).await;
    let unbound_jwt = srv.create_app(mk(None, "jwt")).await;
    let bound_opaque = srv.create_app(mk(Some("certificate"), "opaque")).await;
    let mut ch = app(&["client_credentials"]);
    ch.introspect_any = Some(true);
    let gw_app = srv.create_app(ch).await;
    let upstream = echo_upstream().await;
    Setup { srv, upstream, bound_jwt, unbound_jwt, bound_opaque, gw_app }
}

/// A password-grant token (user alice), over a connection presenting `cert` when given.
pub(crate) async fn token(srv: &TestServer, a: &AppCreds, cert: Option<&ClientCert>) -> String {
    let c = match cert {
        Some(c) => srv.client_with(c),
        None => srv.client(),
    };
    let r = c
        .post(srv.url("/oauth2/token"))
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .form(&[("grant_type", "password"), ("username", "alice"), ("password", "pw")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

async fn call(c: &Client, gw: &TestGateway, tok: Option<&str>) -> (StatusCode, Value, Vec<String>) {
    let mut r = c.get(gw.url("/api/orders?x=1")).header("x-authenticated-sub", "forged");
    if let Some(t) = tok {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let www: Vec<String> =
        r.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body, www)
}

fn mode(m: &'static str, methods: &'static [&'static str], s: &Setup) -> impl FnOnce(&mut FileConfig) {
    let (id, secret) = (s.gw_app.client_id.clone(), s.gw_app.client_secret.clone());
    move |c: &mut FileConfig| {
        c.proof_of_possession_mtls = Some(m.into());
        c.auth_methods = Some(methods.iter().map(|x| x.to_string()).collect());
        c.client_id = Some(id);
        c.client_secret = secret;
    }
}

#[tokio::test]
async fn strict_mode_rows() {
    let s = setup().await;
    let (a, b) = (client_cert("A"), client_cert("B"));
    let bound = token(&s.srv, &s.bound_jwt, Some(&a)).await;
    let unbound = token(&s.srv, &s.unbound_jwt, None).await;
    let gw = s.srv.gateway(s.upstream, mode("strict", &["bearer"], &s)).await.unwrap();

    // strict | matches | present → pass, with what the upstream must see.
    let (st, body, _) = call(&gw.client_with(&a), &gw, Some(&bound)).await;
    assert_eq!(st, 200, "{body}");
    let h = &body["headers"];
    assert_eq!(body["path"], "/api/orders");
    assert_eq!(body["query"], "x=1");
    assert_eq!(h["authorization"], format!("Bearer {bound}"));
    assert_eq!(h["x-authenticated-sub"], "user-alice", "the forged header was replaced");
    assert_eq!(h["x-authenticated-client"], s.bound_jwt.client_id.as_str());
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert!(h["x-authenticated-scope"].is_string());
    // strict | differs | present → 401.
    let (st, body, www) = call(&gw.client_with(&b), &gw, Some(&bound)).await;
    assert_eq!(st, 401);
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(body["error_description"], "the client certificate thumbprint does not match the x5t#S256 claim");
    assert_eq!(body["message"], "Unauthorized");
    assert!(www.iter().any(|w| w.starts_with("Bearer realm=\"localhost\", error=\"invalid_token\"")), "{www:?}");
    // strict | absent | any → 401.
    for t in [&bound, &unbound] {
        let (st, body, _) = call(&gw.client(), &gw, Some(t)).await;
        assert_eq!((st, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")), "{body}");
    }
    // strict | present | absent → 401 with Kong's wording.
    let (st, body, _) = call(&gw.client_with(&a), &gw, Some(&unbound)).await;
    assert_eq!(st, 401);
    assert_eq!(body["error_description"], "x5t#S256 claim required but not found");
    gw.stop().await;
}

#[tokio::test]
async fn optional_and_off_mode_rows() {
    let s = setup().await;
    let (a, b) = (client_cert("A"), client_cert("B"));
    let bound = token(&s.srv, &s.bound_jwt, Some(&a)).await;
    let unbound = token(&s.srv, &s.unbound_jwt, None).await;
    for m in ["optional", "off"] {
        let gw = s.srv.gateway(s.upstream, mode(m, &["bearer"], &s)).await.unwrap();
        let cases: [(Client, &str, u16, &str); 5] = [
            (gw.client(), &unbound, 200, "absent cert, unbound token: pass"),
            (gw.client(), &bound, 401, "absent cert, bound token: never without its proof"),
            (gw.client_with(&a), &unbound, 200, "cert, unbound token: pass"),
            (gw.client_with(&a), &bound, 200, "matching cert: pass"),
            (gw.client_with(&b), &bound, 401, "other cert: 401"),
        ];
        for (c, t, want, what) in cases {
            let (st, body, _) = call(&c, &gw, Some(t)).await;
            assert_eq!(st.as_u16(), want, "{m}: {what}: {body}");
        }
        gw.stop().await;
    }
    // The default mode is optional.
    let gw = s.srv.gateway(s.upstream, |c| c.auth_methods = Some(vec!["bearer".into()])).await.unwrap();
    assert_eq!(call(&gw.client(), &gw, Some(&bound)).await.0, 401);
    assert_eq!(call(&gw.client(), &gw, Some(&unbound)).await.0, 200);
}

#[tokio::test]
async fn opaque_tokens_through_cached_introspection_and_revocation() {
    let s = setup().await;
    let a = client_cert("A");
    let opaque = token(&s.srv, &s.bound_opaque, Some(&a)).await;
    let gw = s.srv.gateway(s.upstream, mode("strict", &["introspection"], &s)).await.unwrap();
    let (st, body, _) = call(&gw.client_with(&a), &gw, Some(&opaque)).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["headers"]["x-authenticated-sub"], "user-alice");
    assert_eq!(call(&gw.client_with(&client_cert("B")), &gw, Some(&opaque)).await.0, 401, "cnf from introspection");
    assert_eq!(call(&gw.client_with(&a), &gw, Some("no-such-token")).await.0, 401);

    // Revoked: the cached result may serve until cache_ttl (30 s), never longer.
    let r = s
        .srv
        .client_with(&a)
        .post(s.srv.url("/oauth2/revoke"))
        .basic_auth(&s.bound_opaque.client_id, s.bound_opaque.client_secret.as_deref())
        .form(&[("token", opaque.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(call(&gw.client_with(&a), &gw, Some(&opaque)).await.0, 200, "still cached");
    s.srv.clock.advance(31);
    let (st, body, _) = call(&gw.client_with(&a), &gw, Some(&opaque)).await;
    assert_eq!(st, 401, "{body}");
    assert_eq!(body["error"], "invalid_token");
    gw.stop().await;

    // cache_ttl = 0: revocation is seen at once.
    let opaque2 = token(&s.srv, &s.bound_opaque, Some(&a)).await;
    let gw = s
        .srv
        .gateway(s.upstream, |c| {
            mode("optional", &["introspection"], &s)(c);
            c.cache_ttl = Some(0);
        })
        .await
        .unwrap();
    assert_eq!(call(&gw.client_with(&a), &gw, Some(&opaque2)).await.0, 200);
    let r = s
        .srv
        .client_with(&a)
        .post(s.srv.url("/oauth2/revoke"))
        .basic_auth(&s.bound_opaque.client_id, s.bound_opaque.client_secret.as_deref())
        .form(&[("token", opaque2.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(call(&gw.client_with(&a), &gw, Some(&opaque2)).await.0, 401);
}

#[tokio::test]
async fn certificates_forwarded_by_trusted_and_untrusted_peers() {
    let s = setup().await;
    let a = client_cert("A");
    let bound = token(&s.srv, &s.bound_jwt, Some(&a)).await;
    let der_b64: String = a.cert_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    for (trusted, want) in [("127.0.0.1/32", 200u16), ("10.0.0.5", 401)] {
        let gw = s
            .srv
            .gateway(s.upstream, |c| {
                mode("strict", &["bearer"], &s)(c);
                c.client_cert_header = Some("x-client-cert".into());
                c.trusted_proxies = Some(vec![trusted.into()]);
            })
            .await
            .unwrap();
        let r = gw
            .client()
            .get(gw.url("/x"))
            .bearer_auth(&bound)
            .header("x-client-cert", format!(":{der_b64}:"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "trusted_proxies = {trusted}");
        if want == 200 {
            let r = gw
                .client()
                .get(gw.url("/x"))
                .bearer_auth(&bound)
                .header("x-client-cert", "garbage")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "a malformed header from a trusted proxy is a client error");
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn client_ca_file_restricts_accepted_certificates() {
    let s = setup().await;
    let ca = TestCa::new("Gateway clients");
    let trusted = ca.issue(&[(rcgen::DnType::CommonName, "svc")], None);
    let stranger = client_cert("svc");
    let t_trusted = token(&s.srv, &s.bound_jwt, Some(&trusted)).await;
    let t_stranger = token(&s.srv, &s.bound_jwt, Some(&stranger)).await;
    let ca_file = s.srv.dir.path().join("gw-clients.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let gw = s
        .srv
        .gateway(s.upstream, |c| {
            mode("strict", &["bearer"], &s)(c);
            c.client_ca_file = Some(ca_file.clone());
        })
        .await
        .unwrap();
    assert_eq!(call(&gw.client_with(&trusted), &gw, Some(&t_trusted)).await.0, 200);
    assert_eq!(call(&gw.client_with(&stranger), &gw, Some(&t_stranger)).await.0, 401, "not from client_ca_file");
}

#[tokio::test]
async fn challenges_ambiguity_id_tokens_scopes_and_audience() {
    let s = setup().await;
    let unbound = token(&s.srv, &s.unbound_jwt, None).await;
    let gw = s
        .srv
        .gateway(s.upstream, |c| {
            mode("off", &["bearer"], &s)(c);
            c.proof_of_possession_dpop = Some("optional".into());
        })
        .await
        .unwrap();
    // No credentials: 401 with challenges that carry no error (RFC 6750 §3.1).
    let (st, body, www) = call(&gw.client(), &gw, None).await;
    assert_eq!(st, 401);
    assert_eq!(body, json!({"message": "Unauthorized"}));
    assert_eq!(www[0], "Bearer realm=\"localhost\"");
    assert!(www.iter().any(|w| w.starts_with("DPoP algs=\"ES256")), "{www:?}");
    // Two Authorization headers; header and query.
    let r = gw
        .client()
        .get(gw.url("/x"))
        .header("authorization", format!("Bearer {unbound}"))
        .header("authorization", format!("Bearer {unbound}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = gw.client().get(gw.url(&format!("/x?access_token={unbound}"))).bearer_auth(&unbound).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // A token in a form body counts (RFC 6750 §2.2) and reaches the upstream unchanged; in the
    // body and the header at once it is ambiguous.
    let form = [("access_token", unbound.as_str()), ("item", "7")];
    let r = gw.client().post(gw.url("/orders")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(echoed["method"], "POST");
    assert!(echoed["body_len"].as_u64().unwrap() > 0, "the body is forwarded");
    let r = gw.client().post(gw.url("/orders")).bearer_auth(&unbound).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // An ID token never passes as an access token.
    s.srv.add_user("bob", "pw").await;
    let r = s
        .srv
        .token(
            &s.unbound_jwt,
            &[("grant_type", "password"), ("username", "bob"), ("password", "pw"), ("scope", "openid")],
        )
        .await;
    let id_token = r.json::<Value>().await.unwrap()["id_token"].as_str().unwrap().to_string();
    let (st, body, _) = call(&gw.client(), &gw, Some(&id_token)).await;
    assert_eq!(st, 401, "{body}");
    // A tampered JWT.
    let mut tampered = unbound.clone();
    tampered.pop();
    tampered.push(if unbound.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(call(&gw.client(), &gw, Some(&tampered)).await.0, 401);
    // The DPoP scheme with an unbound token.
    let r = gw.client().get(gw.url("/x")).header("authorization", format!("DPoP {unbound}")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    gw.stop().await;

    // required_scopes and audience.
    let gw = s
        .srv
        .gateway(s.upstream, |c| {
            mode("off", &["bearer"], &s)(c);
            c.required_scopes = Some(vec!["admin".into()]);
        })
        .await
        .unwrap();
    let (st, body, _) = call(&gw.client(), &gw, Some(&unbound)).await;
    assert_eq!((st.as_u16(), body["error"].as_str()), (403, Some("insufficient_scope")));
    gw.stop().await;
    let gw = s
        .srv
        .gateway(s.upstream, |c| {
            mode("off", &["bearer"], &s)(c);
            c.audience = Some("https://api.example".into());
        })
        .await
        .unwrap();
    assert_eq!(call(&gw.client(), &gw, Some(&unbound)).await.0, 401);
}

#[tokio::test]
async fn unreachable_issuer_and_upstream() {
    let s = setup().await;
    let unbound = token(&s.srv, &s.unbound_jwt, None).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // The upstream is down: 502.
    let gw = s.srv.gateway(closed, mode("off", &["bearer"], &s)).await.unwrap();
    let (st, body, _) = call(&gw.client(), &gw, Some(&unbound)).await;
    assert_eq!(st, 502, "{body}");
    gw.stop().await;
    // The issuer is down: 503, never a pass.
    let gw = s
        .srv
        .gateway(s.upstream, |c| {
            mode("off", &["bearer", "introspection"], &s)(c);
            c.issuer = Some(format!("https://localhost:{}", closed.port()));
        })
        .await
        .unwrap();
    for t in [unbound.as_str(), "opaque-token"] {
        let r = gw.client().get(gw.url("/x")).bearer_auth(t).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
    }
}

#[tokio::test]
async fn start_time_configuration_checks() {
    let base = || FileConfig {
        upstream: Some("http://127.0.0.1:9000".into()),
        issuer: Some("https://localhost:9443".into()),
        ..Default::default()
    };
    let err = |f: FileConfig| tether_gateway::Config::from_file(f).unwrap_err();
    assert!(err(FileConfig { upstream: None, ..base() }).contains("upstream"));
    assert!(
        err(FileConfig { proof_of_possession_mtls: Some("sometimes".into()), ..base() })
            .contains("proof_of_possession_mtls")
    );
    assert!(err(FileConfig { auth_methods: Some(vec!["kong_oauth2".into()]), ..base() }).contains("auth_methods"));
    assert!(err(FileConfig { auth_methods: Some(vec!["introspection".into()]), ..base() }).contains("client_id"));
    let session = FileConfig {
        auth_methods: Some(vec!["session".into()]),
        client_id: Some("x".into()),
        client_secret: Some("y".into()),
        ..base()
    };
    assert!(err(session).contains("session_secret"));
    let both = FileConfig {
        proof_of_possession_mtls: Some("strict".into()),
        proof_of_possession_dpop: Some("strict".into()),
        ..base()
    };
    assert!(err(both).contains("proof_of_possession_dpop"));
    // Unknown keys are refused by name (through the binary's loader).
    let d = TempDir::new("gwcfg");
    let f = d.path().join("gw.toml");
    std::fs::write(
        &f,
        "upstream = \"http://127.0.0.1:1\"\nissuer = \"https://localhost:9443\"\nproof_of_posession = \"strict\"\n",
    )
    .unwrap();
    let e = tether_gateway::Config::load(&f).unwrap_err();
    assert!(e.contains("proof_of_posession"), "{e}");
}

#[tokio::test]
async fn session_method_signs_browsers_in_through_the_issuer() {
    let s = setup().await;
    // The redirect URI must be the gateway's own; start the gateway first on a known port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redirect = format!("https://localhost:{port}/callback");
    let mut ch = app(&["authorization_code"]);
    ch.introspect_any = Some(true);
    ch.redirect_uris = Some(vec![redirect.clone()]);
    let rp = s.srv.create_app(ch).await;
    let gw = s
        .srv
        .gateway(s.upstream, |c| {
            c.listen = Some(format!("127.0.0.1:{port}"));
            c.auth_methods = Some(vec!["session".into(), "bearer".into()]);
            c.client_id = Some(rp.client_id.clone());
            c.client_secret = rp.client_secret.clone();
            c.session_secret = Some("x".repeat(40));
            c.redirect_uri = Some(redirect.clone());
        })
        .await
        .unwrap();
    let browser = gw.client_builder().cookie_store(true).build().unwrap();
    // A browser navigation without a session goes to the issuer.
    let r = browser.get(gw.url("/app/home?tab=1")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 302);
    let to_issuer = location(&r);
    assert!(to_issuer.starts_with(&s.srv.url("/oauth2/authorize")), "{to_issuer}");
    assert_eq!(query_param(&to_issuer, "code_challenge_method").as_deref(), Some("S256"));
    // An API call without credentials is just refused.
    assert_eq!(browser.get(gw.url("/app/home")).send().await.unwrap().status(), 401);
    // Sign in at the issuer (its own browser session), come back with the code.
    let query = to_issuer.split_once('?').unwrap().1.to_string();
    let back = login_flow(&s.srv, &s.srv.browser(), &query, "alice", "pw").await;
    assert!(back.starts_with(&redirect), "{back}");
    let r = browser.get(&back).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/app/home?tab=1");
    let set = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
    let session_cookie = set.iter().find(|c| c.starts_with("tether_gw_session=")).expect("session cookie");
    for flag in ["Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(session_cookie.contains(flag), "{session_cookie}");
    }
    let r = browser.get(gw.url("/app/home?tab=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-authenticated-sub"], "user-alice");
    assert!(body["headers"]["authorization"].as_str().unwrap().starts_with("Bearer "));
    // A forged or foreign cookie is not a session.
    let r = gw.client().get(gw.url("/app/home")).header("cookie", "tether_gw_session=AAAA").send().await.unwrap();
    assert_eq!(r.status(), 401);
}
