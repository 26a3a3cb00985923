//! Every binding type, end to end: the `token_type` and `cnf` a client learns at the token
//! endpoint are what the JWT access token carries and what introspection reports — the binder
//! of the token's binding type decides them, in one place.

use serde_json::Value;
use tether_core::clock::Clock;
use tether_core::model::BindingType;
use tether_testkit::*;

const CB: &str = "https://app.example/cb";
const PW: &[(&str, &str)] =
    &[("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("scope", "openid profile")];

fn mk(grants: &[&str], binding: BindingType) -> tether_core::admin::AppChanges {
    let mut ch = app(grants);
    ch.binding = Some(binding.as_str().into());
    ch.token_type = Some("jwt".into());
    ch
}

async fn code_flow(srv: &TestServer, a: &AppCreds) -> reqwest::Response {
    let q = format!(
        "response_type=code&client_id={}&redirect_uri={}&scope=openid%20profile&state=s",
        a.client_id,
        url::form_urlencoded::byte_serialize(CB.as_bytes()).collect::<String>()
    );
    let loc = login_flow(srv, &srv.browser(), &q, "alice", "pw").await;
    let code = query_param(&loc, "code").expect("code");
    srv.token(a, &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CB)]).await
}

#[tokio::test]
async fn token_type_and_cnf_agree_for_every_binding_type() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mut ch = app(&["client_credentials"]);
    ch.introspect_any = Some(true);
    let rs = srv.create_app(ch).await;
    let cert = client_cert("agreement");
    let key = DpopKey::generate();

    for kind in BindingType::ALL {
        let resp = match kind {
            BindingType::None | BindingType::ClientRequest => {
                let a = srv.create_app(mk(&["password"], *kind)).await;
                let mut form = PW.to_vec();
                form.push(("tokenBindingId", "agreement-request"));
                srv.token(&a, &form).await
            }
            BindingType::Certificate => {
                let a = srv.create_app(mk(&["password"], *kind)).await;
                srv.client_with(&cert)
                    .post(srv.url("/oauth2/token"))
                    .basic_auth(&a.client_id, a.client_secret.as_deref())
                    .form(PW)
                    .send()
                    .await
                    .unwrap()
            }
            BindingType::Dpop => {
                let a = srv.create_app(mk(&["password"], *kind)).await;
                let proof = key.proof("POST", &srv.url("/oauth2/token"), srv.clock.now(), None, None);
                srv.client()
                    .post(srv.url("/oauth2/token"))
                    .basic_auth(&a.client_id, a.client_secret.as_deref())
                    .header("dpop", proof)
                    .form(PW)
                    .send()
                    .await
                    .unwrap()
            }
            BindingType::Cookie | BindingType::SsoSession => {
                let a = srv.create_app(mk(&["authorization_code"], *kind)).await;
                code_flow(&srv, &a).await
            }
            BindingType::DeviceFlow => {
                let mut ch = mk(&["device_code"], *kind);
                ch.token_type = Some("jwt".into());
                let a = srv.create_app(ch).await;
                let d = crate::device::start(&srv, &a).await;
                crate::device::approve(&srv, d["user_code"].as_str().unwrap(), "yes").await;
                crate::device::poll(&srv, &a, d["device_code"].as_str().unwrap()).await
            }
        };
        assert_eq!(resp.status(), 200, "{kind}");
        let t: Value = resp.json().await.unwrap();
        let at = t["access_token"].as_str().unwrap();
        let claims = jwt_claims(at);
        let intro = srv.introspect(&rs, at).await;
        assert_eq!(intro["active"], true, "{kind}");
        // token_type: the token endpoint's and introspection's agree; DPoP exactly for dpop.
        assert_eq!(t["token_type"], intro["token_type"], "{kind}: token_type");
        let expect = if *kind == BindingType::Dpop { "DPoP" } else { "Bearer" };
        assert_eq!(t["token_type"], expect, "{kind}");
        // cnf: the JWT's and introspection's agree, and only the key-bound types have one.
        assert_eq!(claims.get("cnf"), intro.get("cnf"), "{kind}: cnf");
        let cnf = claims.get("cnf").cloned().unwrap_or(Value::Null);
        match kind {
            BindingType::Certificate => assert_eq!(cnf["x5t#S256"], cert.thumbprint, "{kind}"),
            BindingType::Dpop => assert_eq!(cnf["jkt"], key.jkt, "{kind}"),
            _ => assert!(cnf.is_null(), "{kind}: no cnf, got {cnf}"),
        }
        // The binding type itself, where the token has one.
        let bound = claims.get("binding_type").and_then(Value::as_str);
        assert_eq!(bound, intro.get("binding_type").and_then(Value::as_str), "{kind}");
        if *kind != BindingType::None {
            assert_eq!(bound, Some(kind.as_str()), "{kind}");
        }
    }
}
