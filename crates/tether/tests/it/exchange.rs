//! Token exchange (RFC 8693) with the guard rails of token-binding.md B-9.

use serde_json::{Value, json};
use tether_testkit::*;

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

async fn exchange(srv: &TestServer, c: &reqwest::Client, a: &AppCreds, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![("grant_type", TE)];
    form.extend_from_slice(extra);
    c.post(srv.url("/oauth2/token"))
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn exchange_needs_a_trusted_subject_token_and_proof_of_its_certificate() {
    let srv = TestServer::start().await;
    let alice = srv.add_user("alice", "pw").await;
    // The front end's tokens are bound to its client certificate.
    let mut ch = app(&["password"]);
    ch.binding = Some("certificate".into());
    ch.scopes = Some(vec!["openid".into(), "profile".into(), "orders".into()]);
    let front = srv.create_app(ch).await;
    let cert = client_cert("front");
    let r = srv
        .client_with(&cert)
        .post(srv.url("/oauth2/token"))
        .basic_auth(&front.client_id, front.client_secret.as_deref())
        .form(&[("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("scope", "profile orders")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let subject = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();

    // The back end may exchange the front end's tokens; its own are JWTs bound by tokenBindingId.
    let mut ch = app(&["token_exchange"]);
    ch.exchange_from = Some(vec![front.client_id.clone()]);
    ch.scopes = Some(vec!["orders".into(), "profile".into()]);
    ch.token_type = Some("jwt".into());
    ch.binding = Some("client-request".into());
    let back = srv.create_app(ch).await;

    let subject_form = [("subject_token", subject.as_str()), ("subject_token_type", AT)];
    // A thief with the token but not the certificate gets nothing.
    let r = exchange(&srv, &srv.client(), &back, &subject_form).await;
    let e = assert_oauth_error(r, 400, "invalid_request").await;
    assert!(e["error_description"].as_str().unwrap().contains("bound to a client certificate"), "{e}");
    let r = exchange(&srv, &srv.client_with(&client_cert("thief")), &back, &subject_form).await;
    assert_oauth_error(r, 400, "invalid_request").await;

    // With the certificate: a new token for alice, for the back end, with at most her scopes.
    let with_cert = srv.client_with(&cert);
    let mut f = subject_form.to_vec();
    f.extend([("scope", "orders"), ("tokenBindingId", "worker-1")]);
    let r = exchange(&srv, &with_cert, &back, &f).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["issued_token_type"], AT);
    assert_eq!(t["token_type"], "Bearer");
    assert!(t.get("refresh_token").is_none());
    let claims = jwt_claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], alice);
    assert_eq!(claims["client_id"], back.client_id);
    assert_eq!(claims["scope"], "orders");
    assert_eq!(claims["binding_type"], "client-request");
    assert_eq!(claims["binding_ref"], tether_core::binding::binding_ref("worker-1"));
    assert!(claims.get("act").is_none());

    // More scope than the subject token has.
    let mut f = subject_form.to_vec();
    f.push(("scope", "orders openid"));
    assert_oauth_error(exchange(&srv, &with_cert, &back, &f).await, 400, "invalid_scope").await;

    // An actor token adds `act`, shown in the JWT and in introspection.
    let mut ch = app(&["client_credentials"]);
    ch.scopes = Some(vec!["jobs".into()]);
    let actor_app = srv.create_app(ch).await;
    let actor = srv.token(&actor_app, &[("grant_type", "client_credentials")]).await.json::<Value>().await.unwrap();
    let mut f = subject_form.to_vec();
    f.extend([("actor_token", actor["access_token"].as_str().unwrap()), ("actor_token_type", AT)]);
    let r = exchange(&srv, &with_cert, &back, &f).await;
    assert_eq!(r.status(), 200);
    let exchanged = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let act = json!({"sub": actor_app.client_id, "client_id": actor_app.client_id});
    assert_eq!(jwt_claims(&exchanged)["act"], act);
    assert_eq!(srv.introspect(&back, &exchanged).await["act"], act);

    // A foreign app (not trusted, not the audience) may not exchange it, even with the certificate.
    let stranger = srv.create_app(app(&["token_exchange"])).await;
    let r = exchange(&srv, &with_cert, &stranger, &subject_form).await;
    let e = assert_oauth_error(r, 400, "invalid_request").await;
    assert!(e["error_description"].as_str().unwrap().contains("--exchange-from"), "{e}");
    // An app without the grant.
    let r = exchange(&srv, &with_cert, &front, &subject_form).await;
    assert_oauth_error(r, 400, "unauthorized_client").await;

    // Malformed requests.
    for (bad, code) in [
        (vec![("subject_token", subject.as_str())], "invalid_request"),
        (
            vec![("subject_token", subject.as_str()), ("subject_token_type", "urn:ietf:params:oauth:token-type:saml2")],
            "invalid_request",
        ),
        (vec![("subject_token_type", AT)], "invalid_request"),
        (vec![("subject_token", "not-a-token"), ("subject_token_type", AT)], "invalid_request"),
        (
            vec![
                ("subject_token", subject.as_str()),
                ("subject_token_type", AT),
                ("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("subject_token", subject.as_str()),
                ("subject_token_type", AT),
                ("audience", "https://elsewhere.example"),
            ],
            "invalid_target",
        ),
    ] {
        assert_oauth_error(exchange(&srv, &with_cert, &back, &bad).await, 400, code).await;
    }

    // Once the subject token is revoked it exchanges nothing.
    let r = srv
        .client_with(&cert)
        .post(srv.url("/oauth2/revoke"))
        .basic_auth(&front.client_id, front.client_secret.as_deref())
        .form(&[("token", subject.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = assert_oauth_error(exchange(&srv, &with_cert, &back, &subject_form).await, 400, "invalid_request").await;
    assert!(e["error_description"].as_str().unwrap().contains("not an active access token"), "{e}");
}

/// A client may exchange a token whose audience names it (here, its own), e.g. to narrow scope;
/// public clients may not exchange at all; discovery lists the grant.
#[tokio::test]
async fn exchange_by_audience_and_configuration_checks() {
    let srv = TestServer::start().await;
    let mut ch = app(&["client_credentials", "token_exchange"]);
    ch.scopes = Some(vec!["a".into(), "b".into()]);
    ch.binding = Some("certificate".into());
    let svc = srv.create_app(ch).await;
    let cert = client_cert("svc");
    let c = srv.client_with(&cert);
    let r = c
        .post(srv.url("/oauth2/token"))
        .basic_auth(&svc.client_id, svc.client_secret.as_deref())
        .form(&[("grant_type", "client_credentials"), ("scope", "a b")])
        .send()
        .await
        .unwrap();
    let subject = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let r = exchange(&srv, &c, &svc, &[("subject_token", &subject), ("subject_token_type", AT), ("scope", "a")]).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["scope"], "a");
    let i = srv.introspect(&svc, t["access_token"].as_str().unwrap()).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["cnf"], json!({"x5t#S256": cert.thumbprint}), "bound per the exchanging app's binding");

    let mut public = app(&["token_exchange"]);
    public.public = Some(true);
    assert!(tether_core::admin::create(&public).unwrap_err().contains("confidential"));
    let d: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert!(d["grant_types_supported"].as_array().unwrap().contains(&json!(TE)));
}
