//! `certificate` binding (RFC 8705 §3; token-binding.md B-1 to B-5) over real mutual TLS with
//! certificates generated here.

use reqwest::Client;
use serde_json::{Value, json};
use tether_testkit::*;

async fn password(srv: &TestServer, c: &Client, a: &AppCreds) -> reqwest::Response {
    let mut req = c.post(srv.url("/oauth2/token"));
    let mut form = vec![("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("scope", "openid")];
    match &a.client_secret {
        Some(s) => req = req.basic_auth(&a.client_id, Some(s)),
        None => form.push(("client_id", a.client_id.as_str())),
    }
    req.form(&form).send().await.unwrap()
}

async fn refresh(srv: &TestServer, c: &Client, a: &AppCreds, rt: &str) -> reqwest::Response {
    let mut req = c.post(srv.url("/oauth2/token"));
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", rt)];
    match &a.client_secret {
        Some(s) => req = req.basic_auth(&a.client_id, Some(s)),
        None => form.push(("client_id", a.client_id.as_str())),
    }
    req.form(&form).send().await.unwrap()
}

fn cert_app(token_type: &str) -> tether_core::admin::AppChanges {
    let mut ch = app(&["password", "refresh_token"]);
    ch.binding = Some("certificate".into());
    ch.token_type = Some(token_type.into());
    ch
}

#[tokio::test]
async fn tokens_are_bound_to_the_tls_client_certificate() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let jwt = srv.create_app(cert_app("jwt")).await;
    let opaque = srv.create_app(cert_app("opaque")).await;
    let a = client_cert("client-a");
    let b = client_cert("client-b");
    let ca = srv.client_with(&a);

    // No certificate: the pinned error.
    let r = password(&srv, &srv.client(), &jwt).await;
    let e = assert_oauth_error(r, 400, "invalid_request").await;
    assert_eq!(e["error_description"], "TLS certificate not found in the request.");

    // JWT: cnf.x5t#S256 is the thumbprint of the presented certificate.
    let t: Value = password(&srv, &ca, &jwt).await.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap();
    let c = jwt_claims(at);
    assert_eq!(c["cnf"], json!({"x5t#S256": a.thumbprint}));
    assert_eq!(c["binding_type"], "certificate");
    assert_eq!(c["binding_ref"], tether_core::binding::binding_ref(&a.thumbprint));
    let i = srv.introspect(&jwt, at).await;
    assert_eq!(i["cnf"], json!({"x5t#S256": a.thumbprint}));
    assert_eq!(i["binding_type"], "certificate");

    // Opaque: introspection shows cnf; one token per certificate (B-3), another for another.
    let o1: Value = password(&srv, &ca, &opaque).await.json().await.unwrap();
    let o2: Value = password(&srv, &ca, &opaque).await.json().await.unwrap();
    let ob: Value = password(&srv, &srv.client_with(&b), &opaque).await.json().await.unwrap();
    assert_eq!(o1["access_token"], o2["access_token"]);
    assert_ne!(o1["access_token"], ob["access_token"]);
    let i = srv.introspect(&opaque, o1["access_token"].as_str().unwrap()).await;
    assert_eq!(i["cnf"], json!({"x5t#S256": a.thumbprint}));
    assert_eq!(
        srv.introspect(&opaque, ob["access_token"].as_str().unwrap()).await["cnf"],
        json!({"x5t#S256": b.thumbprint})
    );

    // Discovery says so.
    let d: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["tls_client_certificate_bound_access_tokens"], true);
}

#[tokio::test]
async fn userinfo_always_requires_the_bound_certificate() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let jwt = srv.create_app(cert_app("jwt")).await;
    let a = client_cert("client-a");
    let t: Value = password(&srv, &srv.client_with(&a), &jwt).await.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap();
    let ok = srv.client_with(&a).get(srv.url("/oauth2/userinfo")).bearer_auth(at).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    for c in [srv.client(), srv.client_with(&client_cert("thief"))] {
        let r = c.get(srv.url("/oauth2/userinfo")).bearer_auth(at).send().await.unwrap();
        assert_eq!(r.status(), 401, "a stolen certificate-bound token is useless");
        assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    }
}

#[tokio::test]
async fn refresh_follows_b1() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let a = client_cert("client-a");
    let rotated = client_cert("client-a-renewed");

    // Confidential, no --validate-binding: the new token is bound to the certificate of the
    // refresh request (certificates rotate); no certificate is refused.
    let conf = srv.create_app(cert_app("jwt")).await;
    let t: Value = password(&srv, &srv.client_with(&a), &conf).await.json().await.unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    assert_oauth_error(refresh(&srv, &srv.client(), &conf, rt).await, 400, "invalid_request").await;
    let r: Value = refresh(&srv, &srv.client_with(&rotated), &conf, rt).await.json().await.unwrap();
    assert_eq!(jwt_claims(r["access_token"].as_str().unwrap())["cnf"], json!({"x5t#S256": rotated.thumbprint}));

    // Confidential with --validate-binding: the same certificate only.
    let mut ch = cert_app("jwt");
    ch.validate_binding = Some(true);
    let strict = srv.create_app(ch).await;
    let t: Value = password(&srv, &srv.client_with(&a), &strict).await.json().await.unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    let e =
        assert_oauth_error(refresh(&srv, &srv.client_with(&rotated), &strict, rt).await, 400, "invalid_grant").await;
    assert_eq!(e["error_description"], "Invalid token binding value is present in the request.");
    let r = refresh(&srv, &srv.client_with(&a), &strict, rt).await;
    assert_eq!(r.status(), 200);
    // ...and revoking its access token takes the same certificate (B-5).
    let at = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let revoke = |c: Client| {
        c.post(srv.url("/oauth2/revoke"))
            .basic_auth(&strict.client_id, strict.client_secret.as_deref())
            .form(&[("token", at.clone())])
            .send()
    };
    assert_oauth_error(revoke(srv.client()).await.unwrap(), 400, "access_denied").await;
    assert_eq!(srv.introspect(&strict, &at).await["active"], true, "not revoked");
    assert_eq!(revoke(srv.client_with(&a)).await.unwrap().status(), 200);
    assert_eq!(srv.introspect(&strict, &at).await, json!({"active": false}));

    // Public client: the refresh token stays on the original certificate.
    let mut ch = cert_app("opaque");
    ch.public = Some(true);
    ch.grant_types = Some(vec!["authorization_code".into(), "refresh_token".into(), "password".into()]);
    ch.redirect_uris = Some(vec!["https://app.example/cb".into()]);
    let public = srv.create_app(ch).await;
    let t: Value = password(&srv, &srv.client_with(&a), &public).await.json().await.unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    assert_oauth_error(refresh(&srv, &srv.client_with(&rotated), &public, rt).await, 400, "invalid_grant").await;
    assert_eq!(refresh(&srv, &srv.client_with(&a), &public, rt).await.status(), 200);
}

/// Behind a TLS-terminating proxy: the certificate arrives in `[tls] client_cert_header`, which
/// is honoured only from `trusted_proxies`.
#[tokio::test]
async fn certificate_forwarded_by_a_trusted_proxy() {
    use base64::Engine;
    let proxied = |trusted: &'static str| {
        move |s: &mut tether_server::Settings| {
            s.http_listen = Some("127.0.0.1:0".parse().unwrap());
            s.tls.client_cert_header = Some("x-client-cert".into());
            s.tls.trusted_proxies = Some(vec![trusted.into()]);
        }
    };
    let srv = TestServer::start_with(proxied("127.0.0.0/8")).await;
    srv.add_user("alice", "pw").await;
    let a = srv.create_app(cert_app("jwt")).await;
    let cert = client_cert("behind-proxy");
    let pem = cert.identity_pem.split("-----BEGIN PRIVATE KEY-----").next().unwrap().trim().to_string();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    // As nginx's $ssl_client_escaped_cert: percent-encoded, spaces as %20, `+` left as `+`.
    let escaped: String = url::form_urlencoded::byte_serialize(pem.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
        .replace("%2B", "+");
    let http = format!("http://{}", srv.running().http_addr.unwrap());
    let plain = reqwest::Client::new();
    let token = |value: String| {
        plain
            .post(format!("{http}/oauth2/token"))
            .basic_auth(&a.client_id, a.client_secret.as_deref())
            .header("x-client-cert", value)
            .form(&[("grant_type", "password"), ("username", "alice"), ("password", "pw")])
            .send()
    };
    let der = base64::engine::general_purpose::STANDARD.decode(&der_b64).unwrap();
    for value in [pem.replace('\n', " "), escaped, der_b64.clone(), format!(":{der_b64}:")] {
        let r = token(value.clone()).await.unwrap();
        let status = r.status();
        let t: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{value} -> {t}");
        assert_eq!(
            jwt_claims(t["access_token"].as_str().unwrap())["cnf"],
            json!({"x5t#S256": cert.thumbprint}),
            "{value}"
        );
    }
    assert!(!der.is_empty());
    assert_oauth_error(token("garbage".into()).await.unwrap(), 400, "invalid_request").await;

    // From a peer that is not a trusted proxy, the header is ignored.
    let srv = TestServer::start_with(proxied("10.0.0.5/32")).await;
    srv.add_user("alice", "pw").await;
    let a = srv.create_app(cert_app("jwt")).await;
    let http = format!("http://{}", srv.running().http_addr.unwrap());
    let r = plain
        .post(format!("{http}/oauth2/token"))
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .header("x-client-cert", format!(":{der_b64}:"))
        .form(&[("grant_type", "password"), ("username", "alice"), ("password", "pw")])
        .send()
        .await
        .unwrap();
    let e = assert_oauth_error(r, 400, "invalid_request").await;
    assert_eq!(e["error_description"], "TLS certificate not found in the request.");
}

/// `self_signed_tls_client_auth` (RFC 8705 §2.2): the registered certificate authenticates the
/// client; no certificate or another one is `invalid_client`.
#[tokio::test]
async fn self_signed_tls_client_auth() {
    let srv = TestServer::start().await;
    let cert = client_cert("svc");
    let pem = cert.identity_pem.split("-----BEGIN PRIVATE KEY-----").next().unwrap().to_string();
    let mut ch = app(&["client_credentials"]);
    ch.auth_method = Some("self_signed_tls_client_auth".into());
    ch.cert_file = Some(pem);
    ch.binding = Some("certificate".into());
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    assert!(a.client_secret.is_none(), "a certificate client has no secret");
    let form = [("grant_type", "client_credentials"), ("client_id", a.client_id.as_str())];
    let r = srv.client_with(&cert).post(srv.url("/oauth2/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(jwt_claims(t["access_token"].as_str().unwrap())["cnf"], json!({"x5t#S256": cert.thumbprint}));
    for c in [srv.client(), srv.client_with(&client_cert("impostor"))] {
        let r = c.post(srv.url("/oauth2/token")).form(&form).send().await.unwrap();
        assert_oauth_error(r, 401, "invalid_client").await;
    }
    // It may introspect its own tokens with the same certificate.
    let r = srv
        .client_with(&cert)
        .post(srv.url("/oauth2/introspect"))
        .form(&[("client_id", a.client_id.as_str()), ("token", t["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["active"], true);
    // Configuration checks.
    let mut bad = app(&["client_credentials"]);
    bad.auth_method = Some("self_signed_tls_client_auth".into());
    assert!(tether_core::admin::create(&bad).unwrap_err().contains("--cert-file"));
    let d: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert!(
        d["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("self_signed_tls_client_auth"))
    );
}
