//! One resource-side check: Tether's userinfo endpoint and the gateway (modes `optional`) answer
//! the same status, `error` and `error_description` for the same Bearer / DPoP / certificate
//! input — both run core's `resource` check; only the gateway's extra `message` field differs.

use reqwest::{Client, RequestBuilder};
use serde_json::Value;
use tether_core::clock::Clock;
use tether_testkit::*;

const PW: &[(&str, &str)] =
    &[("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("scope", "openid profile")];

async fn token(srv: &TestServer, c: &Client, a: &AppCreds, proof: Option<String>) -> String {
    let mut r = c.post(srv.url("/oauth2/token")).basic_auth(&a.client_id, a.client_secret.as_deref()).form(PW);
    if let Some(p) = proof {
        r = r.header("dpop", p);
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

/// How a case presents its token.
#[derive(Clone, Copy, Debug)]
enum Proof {
    None,
    /// A proof made by the bound key (with `ath`).
    Good,
    /// A proof by another key.
    OtherKey,
    /// A proof by the bound key without `ath`.
    NoAth,
}

struct Case {
    name: &'static str,
    token: &'static str,
    scheme: &'static str,
    proof: Proof,
    /// Which client certificate the connection presents.
    cert: Option<&'static str>,
}

/// Status, error and description of an answer (`None` error for a success).
async fn outcome(rb: RequestBuilder) -> (u16, Option<String>, Option<String>) {
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    (status, s("error"), s("error_description"))
}

#[tokio::test]
async fn userinfo_and_gateway_answer_alike() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mk = |binding: Option<&str>| {
        let mut ch = app(&["password"]);
        ch.binding = binding.map(str::to_string);
        ch.token_type = Some("jwt".into());
        ch
    };
    let plain = srv.create_app(mk(None)).await;
    let cert_app = srv.create_app(mk(Some("certificate"))).await;
    let dpop_app = srv.create_app(mk(Some("dpop"))).await;
    let upstream = echo_upstream().await;
    let gw = srv.gateway(upstream, |f| f.auth_methods = Some(vec!["bearer".into()])).await.unwrap();

    let cert_a = client_cert("client-a");
    let cert_b = client_cert("client-b");
    let key = DpopKey::generate();
    let other = DpopKey::generate();
    let now = srv.clock.now();
    let tokens = [
        ("unbound", token(&srv, &srv.client(), &plain, None).await),
        ("cert", token(&srv, &srv.client_with(&cert_a), &cert_app, None).await),
        (
            "dpop",
            token(&srv, &srv.client(), &dpop_app, Some(key.proof("POST", &srv.url("/oauth2/token"), now, None, None)))
                .await,
        ),
    ];
    let tok = |n: &str| tokens.iter().find(|(k, _)| *k == n).map(|(_, t)| t.clone()).unwrap();

    let cases = [
        Case { name: "unbound bearer", token: "unbound", scheme: "Bearer", proof: Proof::None, cert: None },
        Case {
            name: "unbound bearer with a certificate",
            token: "unbound",
            scheme: "Bearer",
            proof: Proof::None,
            cert: Some("a"),
        },
        Case { name: "unbound with the DPoP scheme", token: "unbound", scheme: "DPoP", proof: Proof::Good, cert: None },
        Case { name: "unsupported scheme", token: "unbound", scheme: "Basic", proof: Proof::None, cert: None },
        Case {
            name: "dpop-bound as bearer (downgrade)",
            token: "dpop",
            scheme: "Bearer",
            proof: Proof::Good,
            cert: None,
        },
        Case { name: "dpop-bound without a proof", token: "dpop", scheme: "DPoP", proof: Proof::None, cert: None },
        Case { name: "dpop-bound, another key", token: "dpop", scheme: "DPoP", proof: Proof::OtherKey, cert: None },
        Case { name: "dpop-bound, no ath", token: "dpop", scheme: "DPoP", proof: Proof::NoAth, cert: None },
        Case { name: "dpop-bound, good proof", token: "dpop", scheme: "DPoP", proof: Proof::Good, cert: None },
        Case {
            name: "cert-bound without a certificate",
            token: "cert",
            scheme: "Bearer",
            proof: Proof::None,
            cert: None,
        },
        Case {
            name: "cert-bound, another certificate",
            token: "cert",
            scheme: "Bearer",
            proof: Proof::None,
            cert: Some("b"),
        },
        Case {
            name: "cert-bound, its certificate",
            token: "cert",
            scheme: "Bearer",
            proof: Proof::None,
            cert: Some("a"),
        },
        Case { name: "cert-bound as DPoP", token: "cert", scheme: "DPoP", proof: Proof::Good, cert: Some("a") },
    ];
    let mut successes = 0;
    for c in &cases {
        let t = tok(c.token);
        let mut answers = Vec::new();
        // The gateway's `public_url` defaults to its listen address: proofs name that.
        let gw_htu = format!("https://127.0.0.1:{}/api/orders", gw.addr().port());
        let targets = [
            ("userinfo", srv.url("/oauth2/userinfo"), srv.url("/oauth2/userinfo")),
            ("gateway", gw.url("/api/orders"), gw_htu),
        ];
        for (target, url, htu) in targets {
            let client = match (c.cert, target) {
                (Some("a"), "userinfo") => srv.client_with(&cert_a),
                (Some(_), "userinfo") => srv.client_with(&cert_b),
                (Some("a"), _) => gw.client_with(&cert_a),
                (Some(_), _) => gw.client_with(&cert_b),
                (None, "userinfo") => srv.client(),
                (None, _) => gw.client(),
            };
            let mut rb = client.get(&url).header("authorization", format!("{} {t}", c.scheme));
            let proof = match c.proof {
                Proof::None => None,
                Proof::Good => Some(key.proof("GET", &htu, now, Some(&t), None)),
                Proof::OtherKey => Some(other.proof("GET", &htu, now, Some(&t), None)),
                Proof::NoAth => Some(key.proof("GET", &htu, now, None, None)),
            };
            if let Some(p) = proof {
                rb = rb.header("dpop", p);
            }
            answers.push(outcome(rb).await);
        }
        assert_eq!(answers[0], answers[1], "{}: userinfo and gateway disagree", c.name);
        if answers[0].0 == 200 {
            successes += 1;
        } else {
            assert!(answers[0].1.is_some(), "{}: a refusal names its error", c.name);
        }
    }
    // The table exercises both outcomes: four inputs pass everywhere, the rest are refused.
    assert_eq!(successes, 4);
    gw.stop().await;
}
