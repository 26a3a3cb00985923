//! The gateway keeping up with the issuer (retired signing keys) and speaking its own HTTP
//! version to clients whatever the upstream speaks.

use serde_json::Value;
use tether_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn jwt(srv: &TestServer, a: &AppCreds) -> String {
    let r = srv.token(a, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

/// The default configuration for JWTs: verified with the issuer's JWKS, no introspection.
fn jwt_only(f: &mut tether_gateway::FileConfig) {
    f.auth_methods = Some(vec!["bearer".into()]);
}

#[tokio::test]
async fn keys_the_issuer_retired_stop_verifying_at_the_gateway() {
    let srv = TestServer::start().await;
    let mut ch = app(&["client_credentials"]);
    ch.token_type = Some("jwt".into());
    ch.access_token_ttl = Some(7200);
    let a = srv.create_app(ch).await;
    let gw = srv.gateway(echo_upstream().await, jwt_only).await.unwrap();
    let t = jwt(&srv, &a).await;
    let call = |t: String| {
        let c = gw.client();
        let url = gw.url("/api/x");
        async move { c.get(url).bearer_auth(t).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(call(t.clone()).await, 200, "verified with the issuer's key");

    // The app is deleted and the keys rotated: the old key stays published only as long as the
    // remaining apps' tokens live (1 hour), less than this token's 2 hours.
    let p = &srv.running().provider;
    assert!(
        p.store
            .delete_app(&a.client_id, {
                use tether_core::clock::Clock;
                srv.clock.now()
            })
            .await
            .unwrap()
    );
    let settings = tether_server::Settings::resolve(
        &tether_server::Overrides { data_dir: Some(srv.dir.path().to_path_buf()), ..Default::default() },
        Default::default(),
    )
    .unwrap();
    let master = tether_server::load_master_key(&settings).unwrap();
    tether_core::provider::rotate_keys(&*p.store, &master, {
        use tether_core::clock::Clock;
        srv.clock.now()
    })
    .await
    .unwrap();
    srv.clock.advance(3700);
    p.refresh().await.unwrap();
    let jwks: Value = srv.client().get(srv.url("/oauth2/jwks")).send().await.unwrap().json().await.unwrap();
    let kid = jwt_header(&t)["kid"].clone();
    assert!(!jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid), "the issuer retired the key");
    assert_eq!(call(t).await, 401, "the gateway refetched its stale JWKS and dropped the retired key");
}

/// An upstream that answers every request with an HTTP/1.0 response and closes.
async fn http10_upstream() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ =
                    s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok").await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_gateway_answers_in_its_own_http_version() {
    let srv = TestServer::start().await;
    let mut ch = app(&["client_credentials"]);
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    let gw = srv.gateway(http10_upstream().await, jwt_only).await.unwrap();
    let t = jwt(&srv, &a).await;
    let r = gw.client_builder().http1_only().build().unwrap().get(gw.url("/x")).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11, "HTTP/1.1 to an HTTP/1.1 client, not the upstream's 1.0");
    assert_eq!(r.text().await.unwrap(), "ok");
    let r = gw.client_builder().http2_prior_knowledge().build().unwrap().get(gw.url("/x")).bearer_auth(&t).send();
    let r = r.await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, reqwest::Version::HTTP_2));
}
