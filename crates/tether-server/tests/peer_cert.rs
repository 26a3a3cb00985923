//! The TLS listener requests (never requires) a client certificate, accepts self-signed ones, and
//! hands each connection's certificate (DER) to request handlers.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use tether_testkit::{TempDir, self_signed_client_pem};
use tether_tls::accept::{self as tls, ConnInfo};

fn thumbprint(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    tether_core::secret::b64url(d.as_ref())
}

#[tokio::test]
async fn peer_certificate_reaches_handlers() {
    let dir = TempDir::new("tls");
    let material = tether_tls::pki::ensure_local(dir.path()).unwrap();
    let cfg = tls::server_config(&material, true).unwrap();
    let app = Router::new().route(
        "/whoami",
        get(|Extension(c): Extension<ConnInfo>| async move {
            match c.peer_cert {
                Some(der) => thumbprint(&der),
                None => "none".to_string(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let server =
        tokio::spawn(tls::serve(listener, Some(cfg), app, rx, Duration::from_secs(5), tls::HttpLimits::default()));

    let ca = reqwest::Certificate::from_pem(std::fs::read(dir.path().join("tls/ca.pem")).unwrap().as_slice()).unwrap();
    let pem = self_signed_client_pem("client-a");
    let cert_der = {
        let b64: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
    };
    for http1 in [true, false] {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([ca.clone()])
            .resolve("localhost", addr)
            .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        if http1 {
            b = b.http1_only();
        }
        let body = b
            .build()
            .unwrap()
            .get(format!("https://localhost:{}/whoami", addr.port()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, thumbprint(&cert_der), "x5t#S256 of the presented certificate (http1={http1})");
    }
    let anon = reqwest::Client::builder().tls_certs_only([ca]).resolve("localhost", addr).build().unwrap();
    let body =
        anon.get(format!("https://localhost:{}/whoami", addr.port())).send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "none");
    tx.send(true).unwrap();
    server.await.unwrap();
}
