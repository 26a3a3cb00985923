//! RFC 8705 §2 client authentication and the mutual-TLS listener: `tls_client_auth` against a
//! test CA with RFC 4514 subject DNs, `self_signed_tls_client_auth` registered through a JWKS,
//! `[tls] mtls_listen` with `mtls_endpoint_aliases`, and certificates outside their validity.

use rcgen::DnType;
use serde_json::{Value, json};
use tether_testkit::*;

fn cc_form(client_id: &str) -> Vec<(&'static str, String)> {
    vec![("grant_type", "client_credentials".to_string()), ("client_id", client_id.to_string())]
}

async fn discovery(srv: &TestServer) -> Value {
    srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn tls_client_auth_checks_the_chain_and_the_subject_dn() {
    let ca = TestCa::new("Clients CA");
    let files = TempDir::new("ca");
    let ca_file = files.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let srv = TestServer::start_with(|s| s.tls.client_ca_file = Some(ca_file.clone())).await;

    let mut ch = app(&["client_credentials"]);
    ch.auth_method = Some("tls_client_auth".into());
    // Registered with spaces and other case: DNs compare as DNs, not as strings.
    ch.tls_subject_dn = Some("cn=Billing Service, O=Acme\\, Inc.,C=DE".into());
    ch.binding = Some("certificate".into());
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    assert!(a.client_secret.is_none(), "a certificate-authenticated client has no secret");

    let good = ca.issue(
        &[
            (DnType::CountryName, "DE"),
            (DnType::OrganizationName, "Acme, Inc."),
            (DnType::CommonName, "billing service"),
        ],
        None,
    );
    let form = cc_form(&a.client_id);
    let r = srv.client_with(&good).post(srv.url("/oauth2/token")).form(&form).send().await.unwrap();
    let status = r.status();
    let t: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{t}");
    assert_eq!(jwt_claims(t["access_token"].as_str().unwrap())["cnf"], json!({"x5t#S256": good.thumbprint}));

    // Same CA, another subject.
    let other = ca.issue(&[(DnType::OrganizationName, "Acme, Inc."), (DnType::CommonName, "Billing Service")], None);
    let r = srv.client_with(&other).post(srv.url("/oauth2/token")).form(&form).send().await.unwrap();
    // The reason (the subject) goes to the log; the answer is the same as for any failure.
    let e = assert_oauth_error(r, 401, "invalid_client").await;
    assert_eq!(e["error_description"], "client authentication failed", "{e}");
    // The right subject, but self-signed: it does not chain to the configured CA.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    for (t, v) in
        [(DnType::CountryName, "DE"), (DnType::OrganizationName, "Acme, Inc."), (DnType::CommonName, "Billing Service")]
    {
        p.distinguished_name.push(t, v);
    }
    let forged = p.self_signed(&key).unwrap();
    let forged = ClientCert {
        identity_pem: format!("{}{}", forged.pem(), key.serialize_pem()),
        cert_pem: forged.pem(),
        der: forged.der().to_vec(),
        thumbprint: String::new(),
    };
    let r = srv.client_with(&forged).post(srv.url("/oauth2/token")).form(&form).send().await.unwrap();
    let e = assert_oauth_error(r, 401, "invalid_client").await;
    assert_eq!(e["error_description"], "client authentication failed", "{e}");
    // Right subject and CA, but expired (the test clock is in November 2026).
    let expired = ca.issue(
        &[
            (DnType::CountryName, "DE"),
            (DnType::OrganizationName, "Acme, Inc."),
            (DnType::CommonName, "Billing Service"),
        ],
        Some(((2020, 1, 1), (2021, 1, 1))),
    );
    let r = srv.client_with(&expired).post(srv.url("/oauth2/token")).form(&form).send().await.unwrap();
    let e = assert_oauth_error(r, 401, "invalid_client").await;
    assert_eq!(e["error_description"], "client authentication failed", "{e}");
    // No certificate; or a client secret instead.
    let r = srv.client().post(srv.url("/oauth2/token")).form(&form).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;
    let r = srv
        .client_with(&good)
        .post(srv.url("/oauth2/token"))
        .basic_auth(&a.client_id, Some("guess"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;

    let d = discovery(&srv).await;
    for key in ["token_endpoint_auth_methods_supported", "introspection_endpoint_auth_methods_supported"] {
        assert!(d[key].as_array().unwrap().contains(&json!("tls_client_auth")), "{key}");
    }

    // Configuration checks (B-10).
    let mut bad = app(&["client_credentials"]);
    bad.auth_method = Some("tls_client_auth".into());
    assert!(tether_core::admin::create(&bad).unwrap_err().contains("--tls-subject-dn"));
    bad.tls_subject_dn = Some("CN".into());
    let e = tether_core::admin::create(&bad).unwrap_err();
    assert!(e.contains("--tls-subject-dn") && e.contains("missing '='"), "{e}");
    let mut bad = app(&["client_credentials"]);
    bad.tls_subject_dn = Some("CN=x".into());
    assert!(tether_core::admin::create(&bad).unwrap_err().contains("goes with --auth-method tls_client_auth"));

    // A server without trust anchors refuses tls_client_auth clients (no 500; the log says why).
    let bare = TestServer::start().await;
    let mut ch = app(&["client_credentials"]);
    ch.auth_method = Some("tls_client_auth".into());
    ch.tls_subject_dn = Some("CN=Billing Service,O=Acme\\, Inc.,C=DE".into());
    let b = bare.create_app(ch).await;
    let r = bare.client_with(&good).post(bare.url("/oauth2/token")).form(&cc_form(&b.client_id)).send().await.unwrap();
    let e = assert_oauth_error(r, 401, "invalid_client").await;
    assert_eq!(e["error_description"], "client authentication failed", "{e}");
}

/// `self_signed_tls_client_auth` registered with a JWKS whose key carries the certificate in `x5c`.
#[tokio::test]
async fn self_signed_client_registered_through_a_jwks() {
    use base64::Engine;
    let srv = TestServer::start().await;
    let cert = client_cert("jwks-client");
    let jwks = json!({"keys": [{"kty": "EC", "use": "sig", "x5c": [base64::engine::general_purpose::STANDARD.encode(&cert.der)]}]});
    let mut ch = app(&["client_credentials"]);
    ch.auth_method = Some("self_signed_tls_client_auth".into());
    ch.cert_file = Some(jwks.to_string());
    let a = srv.create_app(ch).await;
    let form = cc_form(&a.client_id);
    let r = srv.client_with(&cert).post(srv.url("/oauth2/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r =
        srv.client_with(&client_cert("jwks-client")).post(srv.url("/oauth2/token")).form(&form).send().await.unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;

    let mut bad = app(&["client_credentials"]);
    bad.auth_method = Some("self_signed_tls_client_auth".into());
    bad.cert_file = Some(json!({"keys": [{"kty": "EC"}]}).to_string());
    assert!(tether_core::admin::create(&bad).unwrap_err().contains("no x5c"));
    bad.cert_file = Some("{not json".into());
    assert!(tether_core::admin::create(&bad).unwrap_err().contains("--cert-file"));
}

/// `[tls] mtls_listen`: browsers use the main listener (which then asks for no certificate);
/// certificate clients use the second one, found through `mtls_endpoint_aliases`.
#[tokio::test]
async fn mtls_listener_is_advertised_through_endpoint_aliases() {
    let srv = TestServer::start_with(|s| {
        s.tls.request_client_cert = Some(false);
        s.tls.mtls_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let mtls = srv.running().mtls_addr.expect("mtls listener");
    let d = discovery(&srv).await;
    assert_eq!(d["tls_client_certificate_bound_access_tokens"], true);
    let aliases = &d["mtls_endpoint_aliases"];
    assert_eq!(aliases["token_endpoint"], format!("https://localhost:{}/oauth2/token", mtls.port()));
    assert_eq!(aliases["userinfo_endpoint"], format!("https://localhost:{}/oauth2/userinfo", mtls.port()));
    assert_eq!(d["token_endpoint"], srv.url("/oauth2/token"));

    srv.add_user("alice", "pw").await;
    let mut ch = app(&["password"]);
    ch.binding = Some("certificate".into());
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    let cert = client_cert("mtls-client");
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("scope", "openid")];
    // The main listener does not ask for the certificate, so there is none to bind to.
    let r = srv
        .client_with(&cert)
        .post(srv.url("/oauth2/token"))
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .form(&form)
        .send()
        .await
        .unwrap();
    let e = assert_oauth_error(r, 400, "invalid_request").await;
    assert_eq!(e["error_description"], "TLS certificate not found in the request.");
    // The alias does.
    let ca = reqwest::Certificate::from_pem(srv.ca_pem.as_bytes()).unwrap();
    let via_alias = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("localhost", mtls)
        .identity(reqwest::Identity::from_pem(cert.identity_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = via_alias
        .post(aliases["token_endpoint"].as_str().unwrap())
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(at)["cnf"], json!({"x5t#S256": cert.thumbprint}));
    let r = via_alias.get(aliases["userinfo_endpoint"].as_str().unwrap()).bearer_auth(at).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Without mtls_listen, the main listener's own endpoints are the aliases.
    let plain = TestServer::start().await;
    let d = discovery(&plain).await;
    assert_eq!(d["mtls_endpoint_aliases"]["token_endpoint"], plain.url("/oauth2/token"));
}

/// A certificate outside its validity window binds nothing and authenticates nobody; a forwarded
/// header that is not a certificate is a clear `invalid_request`.
#[tokio::test]
async fn expired_not_yet_valid_and_garbage_certificates() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mut ch = app(&["password"]);
    ch.binding = Some("certificate".into());
    let a = srv.create_app(ch).await;
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "pw")];
    let token = |cert: &ClientCert| {
        srv.client_with(cert)
            .post(srv.url("/oauth2/token"))
            .basic_auth(&a.client_id, a.client_secret.as_deref())
            .form(&form)
            .send()
    };
    let expired = client_cert_valid("old", (2020, 1, 1), (2021, 1, 1));
    let e = assert_oauth_error(token(&expired).await.unwrap(), 400, "invalid_request").await;
    assert!(e["error_description"].as_str().unwrap().contains("expired at 2021-01-01T00:00:00Z"), "{e}");
    let future = client_cert_valid("new", (2030, 1, 1), (2031, 1, 1));
    let e = assert_oauth_error(token(&future).await.unwrap(), 400, "invalid_request").await;
    assert!(e["error_description"].as_str().unwrap().contains("not valid before 2030-01-01"), "{e}");
    assert_eq!(srv.count("access_tokens").await, 0, "nothing was issued");
    // Once the clock passes its start, the same certificate binds.
    srv.clock.set(1_893_456_000 + 86_400); // 2030-01-02
    assert_eq!(token(&future).await.unwrap().status(), 200);

    // A self_signed_tls_client_auth client whose registered certificate has expired.
    let mut ch = app(&["client_credentials"]);
    ch.auth_method = Some("self_signed_tls_client_auth".into());
    ch.cert_file = Some(expired.cert_pem.clone());
    let s = srv.create_app(ch).await;
    let r = srv.client_with(&expired).post(srv.url("/oauth2/token")).form(&cc_form(&s.client_id)).send().await.unwrap();
    let e = assert_oauth_error(r, 401, "invalid_client").await;
    assert_eq!(e["error_description"], "client authentication failed", "{e}");

    // Garbage in the proxy header: valid base64 and RFC 9440 framing, but not a certificate.
    let srv = TestServer::start_with(|s| {
        s.http_listen = Some("127.0.0.1:0".parse().unwrap());
        s.tls.client_cert_header = Some("x-client-cert".into());
        s.tls.trusted_proxies = Some(vec!["127.0.0.1".into()]);
    })
    .await;
    srv.add_user("alice", "pw").await;
    let mut ch = app(&["password"]);
    ch.binding = Some("certificate".into());
    let a = srv.create_app(ch).await;
    // The trusted proxy's own TLS certificate never stands in for its clients'.
    let r = srv
        .client_with(&client_cert("the-proxy"))
        .post(srv.url("/oauth2/token"))
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .form(&form)
        .send()
        .await
        .unwrap();
    let e = assert_oauth_error(r, 400, "invalid_request").await;
    assert_eq!(e["error_description"], "TLS certificate not found in the request.");
    let http = format!("http://{}", srv.running().http_addr.unwrap());
    for garbage in [
        ":Z2FyYmFnZSBieXRlcw==:",
        "Z2FyYmFnZSBieXRlcw==",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
    ] {
        let r = reqwest::Client::new()
            .post(format!("{http}/oauth2/token"))
            .basic_auth(&a.client_id, a.client_secret.as_deref())
            .header("x-client-cert", garbage.replace('\n', " "))
            .form(&form)
            .send()
            .await
            .unwrap();
        let e = assert_oauth_error(r, 400, "invalid_request").await;
        assert!(e["error_description"].as_str().unwrap().contains("does not hold a certificate"), "{e}");
    }
}
