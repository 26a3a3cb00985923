//! The transport under hostile and sloppy clients (security hardening): timeouts after the TLS
//! handshake (`[http]` header, body and idle timeouts) on HTTP/1.1 and HTTP/2, the connection
//! cap, HSTS and `nosniff`, 413 answers that clients actually receive, and the gateway's request
//! target and credential order. The clients here are raw TLS sockets and a raw HTTP/2 client, so
//! the tests see exactly what a slow or malicious peer sees. Timeouts are configured at 1 s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;
use tether_gateway::FileConfig;
use tether_testkit::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

// ---------------------------------------------------------------------------------------------
// Raw clients

fn client_tls(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A TLS connection to `addr` (server name `localhost`), offering `alpn`.
pub(crate) async fn tls(addr: SocketAddr, ca_pem: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(client_tls(ca_pem, alpn)).connect(name, tcp).await.unwrap()
}

/// Wait up to `within` for the peer to close the connection (EOF or an error); `true` if it did.
/// Whatever arrives before the close is discarded.
async fn closed_within(s: &mut (impl AsyncRead + Unpin), within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// One HTTP/1.1 response: status, head (lower-cased), body (by Content-Length).
async fn read_response(s: &mut (impl AsyncRead + Unpin)) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed before a response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse().unwrap()).unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed in the body");
        body.extend_from_slice(&chunk[..n]);
    }
    (status, head, body)
}

pub(crate) async fn h2_client(
    addr: SocketAddr,
    ca_pem: &str,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let io = tls(addr, ca_pem, &[b"h2"]).await;
    let (send, conn) = h2::client::handshake(io).await.unwrap();
    (send, tokio::spawn(conn))
}

/// POST `body` over HTTP/2 (with or without a Content-Length); returns the status, the JSON body
/// and whether the server reset the stream (RST_STREAM) — which curl 7.88 reports as "Stream
/// error in the HTTP/2 framing layer" instead of showing the answer.
async fn h2_post(
    send: &mut h2::client::SendRequest<Bytes>,
    url: &str,
    body: Bytes,
    content_length: bool,
) -> (u16, Value, bool) {
    let mut req = http::Request::post(url).header("content-type", "application/x-www-form-urlencoded");
    if content_length {
        req = req.header("content-length", body.len());
    }
    let mut ready = send.clone().ready().await.unwrap();
    let (resp, mut stream) = ready.send_request(req.body(()).unwrap(), false).unwrap();
    stream.send_data(body, true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut rb = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(d) = rb.data().await {
        let d = d.unwrap();
        let _ = rb.flow_control().release_capacity(d.len());
        bytes.extend_from_slice(&d);
    }
    let reset =
        tokio::time::timeout(Duration::from_millis(300), std::future::poll_fn(|cx| stream.poll_reset(cx))).await;
    let reset = matches!(reset, Ok(Ok(_)));
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), reset)
}

// ---------------------------------------------------------------------------------------------
// 413: the client sees the answer (item 14)

#[tokio::test]
async fn an_oversized_body_gets_a_413_the_client_can_read() {
    let srv = TestServer::start().await;
    let big = format!("grant_type=client_credentials&pad={}", "a".repeat(300_000));
    // HTTP/2, as curl sends it: the whole body follows the request; the answer must not come with
    // a RST_STREAM, with or without a declared length.
    let (mut h2c, _conn) = h2_client(srv.running().addr, &srv.ca_pem).await;
    for declared in [true, false] {
        let (status, body, reset) =
            h2_post(&mut h2c, &srv.url("/oauth2/token"), Bytes::from(big.clone()), declared).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["error"], "invalid_request");
        assert!(!reset, "the server reset the stream after its 413 (declared length: {declared})");
    }
    // The connection is still usable.
    let (status, _, _) = h2_post(&mut h2c, &srv.url("/oauth2/token"), Bytes::from("grant_type=x"), true).await;
    assert_eq!(status, 401);
    // HTTP/1.1 and HTTP/2 through an ordinary client.
    for h2 in [false, true] {
        let b = srv.client_builder();
        let c = if h2 { b.http2_prior_knowledge() } else { b.http1_only() }.build().unwrap();
        let r = c
            .post(srv.url("/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_oauth_error(r, 413, "invalid_request").await;
    }
    // HTTP/1.1 by hand: after the 413 the connection still serves the next request.
    let mut s = tls(srv.running().addr, &srv.ca_pem, &[b"http/1.1"]).await;
    let head = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(big.as_bytes()).await.unwrap();
    let (status, _, body) = read_response(&mut s).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
}

// ---------------------------------------------------------------------------------------------
// Security headers (item 11)

#[tokio::test]
async fn hsts_on_https_and_nosniff_everywhere() {
    let srv = TestServer::start_with(|s| s.http_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let c = srv.client();
    for path in ["/healthz", "/no-such-endpoint", "/oauth2/jwks"] {
        let r = c.get(srv.url(path)).send().await.unwrap();
        assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000", "{path}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    let r = c.post(srv.url("/oauth2/token")).form(&[("grant_type", "x")]).send().await.unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    // The plain listener (behind a TLS-terminating proxy) never sends HSTS; nosniff it does.
    let plain = reqwest::Client::new();
    let http = format!("http://{}", srv.running().http_addr.unwrap());
    let r = plain.get(format!("{http}/healthz")).send().await.unwrap();
    assert!(r.headers().get("strict-transport-security").is_none());
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let metrics = format!("http://{}/metrics", srv.running().metrics_addr.unwrap());
    let r = plain.get(metrics).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

// ---------------------------------------------------------------------------------------------
// Gateway: request target and credential order (item 12)

struct Gw {
    srv: TestServer,
    gw: TestGateway,
    token: String,
}

async fn gateway(f: impl FnOnce(&mut FileConfig)) -> Gw {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mut ch = app(&["password"]);
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    let r = srv.token(&a, &[("grant_type", "password"), ("username", "alice"), ("password", "pw")]).await;
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let upstream = echo_upstream().await;
    let gw = srv
        .gateway(upstream, |c| {
            c.auth_methods = Some(vec!["bearer".into()]);
            c.proof_of_possession_mtls = Some("off".into());
            f(c);
        })
        .await
        .unwrap();
    Gw { srv, gw, token }
}

#[tokio::test]
async fn gateway_refuses_the_asterisk_request_target() {
    let g = gateway(|_| {}).await;
    for method in ["OPTIONS", "GET"] {
        let mut s = tls(g.gw.addr(), &g.gw.ca_pem, &[b"http/1.1"]).await;
        let req = format!("{method} * HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n", g.token);
        s.write_all(req.as_bytes()).await.unwrap();
        let (status, head, body) = read_response(&mut s).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 400, "{method} *: {body}");
        assert_eq!(body["error"], "invalid_request");
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    }
    // An ordinary request with the same token passes.
    let r = g.gw.client().get(g.gw.url("/orders?x=1")).bearer_auth(&g.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!((echoed["path"].as_str(), echoed["query"].as_str()), (Some("/orders"), Some("x=1")));
    g.gw.stop().await;
    drop(g.srv);
}

#[tokio::test]
async fn gateway_checks_a_header_token_before_reading_the_body() {
    let g = gateway(|_| {}).await;
    // A bad token in the header and a form body that never arrives: refused at once.
    let mut s = tls(g.gw.addr(), &g.gw.ca_pem, &[b"http/1.1"]).await;
    let req = "POST /orders HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer not-a-token\r\n\
               Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nitem=";
    s.write_all(req.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (status, head, body) = tokio::time::timeout(Duration::from_secs(5), read_response(&mut s))
        .await
        .expect("the gateway answers without waiting for the body");
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    // A good token in the header and a form body: admitted; the body reaches the upstream.
    let r = g.gw.client().post(g.gw.url("/orders")).bearer_auth(&g.token).form(&[("item", "7")]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["body_len"], 6);
    g.gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Timeouts and the connection cap (item 4)

/// A server with 1 s header and body timeouts and a 2 s idle timeout.
async fn quick_server() -> TestServer {
    TestServer::start_with(|s| {
        s.http.header_read_timeout_seconds = 1;
        s.http.body_read_timeout_seconds = 1;
        s.http.idle_timeout_seconds = 2;
    })
    .await
}

/// Send `bytes` one at a time, `every` apart, until the peer closes the connection or `limit`
/// passes; returns when the peer closed (from the start), or `None`.
async fn trickle(s: TlsStream<TcpStream>, bytes: &[u8], every: Duration, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let (mut r, mut w) = tokio::io::split(s);
    let bytes = bytes.to_vec();
    let writer = tokio::spawn(async move {
        for b in bytes.iter().cycle() {
            if w.write_all(&[*b]).await.is_err() || w.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    let closed = closed_within(&mut r, limit).await;
    writer.abort();
    closed.then(|| started.elapsed())
}

#[tokio::test]
async fn connections_without_a_request_are_closed() {
    let srv = quick_server().await;
    let addr = srv.running().addr;
    // No TLS handshake at all.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut tcp, Duration::from_secs(4)).await, "a silent TCP connection is closed");
    // A TLS handshake, then nothing.
    let mut s = tls(addr, &srv.ca_pem, &[b"http/1.1"]).await;
    assert!(closed_within(&mut s, Duration::from_secs(4)).await, "a TLS connection without a request is closed");
    // The same over HTTP/2: the preface, then no request.
    let (_send, conn) = h2_client(addr, &srv.ca_pem).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(4), conn).await.is_ok(),
        "an HTTP/2 connection without a request is closed"
    );
}

#[tokio::test]
async fn a_trickled_request_head_is_cut_off() {
    let srv = quick_server().await;
    let addr = srv.running().addr;
    // A byte every 300 ms: the head never completes within the 1 s header timeout.
    let s = tls(addr, &srv.ca_pem, &[b"http/1.1"]).await;
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let closed = trickle(s, head, Duration::from_millis(300), Duration::from_secs(5)).await;
    assert!(closed.is_some_and(|t| t < Duration::from_secs(4)), "closed after {closed:?}");
    // The same for the second request of a keep-alive connection.
    let mut s = tls(addr, &srv.ca_pem, &[b"http/1.1"]).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    let closed = trickle(s, head, Duration::from_millis(300), Duration::from_secs(5)).await;
    assert!(closed.is_some_and(|t| t < Duration::from_secs(4)), "closed after {closed:?}");
}

#[tokio::test]
async fn idle_keep_alive_connections_live_for_the_idle_timeout_only() {
    let srv = TestServer::start_with(|s| {
        s.http.header_read_timeout_seconds = 1;
        s.http.idle_timeout_seconds = 3;
    })
    .await;
    let mut s = tls(srv.running().addr, &srv.ca_pem, &[b"http/1.1"]).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    // Idle for longer than the header timeout: still open (the idle timeout applies).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    let idle = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(6)).await, "an idle keep-alive connection is closed");
    let t = idle.elapsed();
    assert!(t >= Duration::from_millis(2500), "closed after {t:?}, before the idle timeout");

    // HTTP/2: open while in use, closed once idle.
    let (mut h2c, conn) = h2_client(srv.running().addr, &srv.ca_pem).await;
    for _ in 0..2 {
        let (status, _, _) = h2_post(&mut h2c, &srv.url("/oauth2/token"), Bytes::from("grant_type=x"), true).await;
        assert_eq!(status, 401);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let idle = Instant::now();
    assert!(tokio::time::timeout(Duration::from_secs(6), conn).await.is_ok(), "an idle HTTP/2 connection is closed");
    assert!(idle.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test]
async fn a_stalled_body_times_out_but_a_slow_one_does_not() {
    let srv = quick_server().await;
    let addr = srv.running().addr;
    // Half a body, then silence: 408 after the body read timeout.
    let mut s = tls(addr, &srv.ca_pem, &[b"http/1.1"]).await;
    s.write_all(
        b"POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 100\r\n\r\ngrant_type=",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (status, _, body) =
        tokio::time::timeout(Duration::from_secs(5), read_response(&mut s)).await.expect("an answer");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["error"].as_str()), (408, Some("invalid_request")), "{body}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    // A body that keeps coming (a piece every 400 ms, 2.4 s in all) is read whole: the timeout is
    // for silence, not a total.
    let mut s = tls(addr, &srv.ca_pem, &[b"http/1.1"]).await;
    let form = b"grant_type=client_credentials&x=1234567";
    let head = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        form.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for piece in form.chunks(7) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(piece).await.unwrap();
    }
    let (status, _, body) = read_response(&mut s).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    // Over HTTP/2: a stream whose body stops.
    let (h2c, _conn) = h2_client(addr, &srv.ca_pem).await;
    let mut ready = h2c.ready().await.unwrap();
    let req = http::Request::post(srv.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(())
        .unwrap();
    let (resp, mut stream) = ready.send_request(req, false).unwrap();
    stream.send_data(Bytes::from_static(b"grant_type="), false).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp).await.expect("an answer").unwrap();
    assert_eq!(resp.status(), 408);
}

#[tokio::test]
async fn beyond_the_connection_cap_new_connections_wait() {
    let srv = TestServer::start_with(|s| s.http.max_connections = Some(2)).await;
    let addr = srv.running().addr;
    let mut a = tls(addr, &srv.ca_pem, &[b"http/1.1"]).await;
    let b = tls(addr, &srv.ca_pem, &[b"http/1.1"]).await;
    let ca = srv.ca_pem.clone();
    let third = tokio::spawn(async move {
        let mut c = tls(addr, &ca, &[b"http/1.1"]).await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        read_response(&mut c).await.0
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!third.is_finished(), "a third connection is not served while two are open");
    a.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut a).await.0, 200, "the open connections are served");
    drop(b);
    let status = tokio::time::timeout(Duration::from_secs(5), third).await.expect("served once there is room").unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_gateway_has_the_same_timeouts() {
    let g = gateway(|c| {
        c.http.header_read_timeout_seconds = Some(1);
        c.http.body_read_timeout_seconds = Some(1);
        c.http.idle_timeout_seconds = Some(2);
    })
    .await;
    let addr = g.gw.addr();
    let mut s = tls(addr, &g.gw.ca_pem, &[b"http/1.1"]).await;
    assert!(closed_within(&mut s, Duration::from_secs(4)).await, "a TLS connection without a request is closed");
    let s = tls(addr, &g.gw.ca_pem, &[b"http/1.1"]).await;
    let closed =
        trickle(s, b"GET /orders HTTP/1.1\r\nHost: localhost\r\n", Duration::from_millis(300), Duration::from_secs(5))
            .await;
    assert!(closed.is_some_and(|t| t < Duration::from_secs(4)), "closed after {closed:?}");
    // The body-token method reads the body only within the body read timeout.
    let mut s = tls(addr, &g.gw.ca_pem, &[b"http/1.1"]).await;
    s.write_all(
        b"POST /orders HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 1000\r\n\r\naccess_token=",
    )
    .await
    .unwrap();
    let (status, head, body) =
        tokio::time::timeout(Duration::from_secs(5), read_response(&mut s)).await.expect("an answer");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["error"].as_str()), (408, Some("invalid_request")), "{body}");
    assert!(head.contains("x-content-type-options: nosniff"));
    // An admitted request whose body stops on its way to the upstream.
    let mut s = tls(addr, &g.gw.ca_pem, &[b"http/1.1"]).await;
    let req = format!(
        "POST /orders HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"a\":",
        g.token
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let (status, _, body) =
        tokio::time::timeout(Duration::from_secs(5), read_response(&mut s)).await.expect("an answer");
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    g.gw.stop().await;
}

#[tokio::test]
async fn the_http_section_is_checked() {
    let dir = TempDir::new("http-config");
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, "[http]\nheader_read_timeout_seconds = 5\nbogus_timeout = 1\n").unwrap();
    let e = tether_server::FileConfig::load(&path).unwrap_err();
    assert!(e.contains("bogus_timeout"), "{e}");
    std::fs::write(
        &path,
        "[http]\nheader_read_timeout_seconds = 5\nbody_read_timeout_seconds = 6\nidle_timeout_seconds = 7\n\
         max_connections = 100\nhsts_max_age = 0\n",
    )
    .unwrap();
    let file = tether_server::FileConfig::load(&path).unwrap();
    let s = tether_server::Settings::resolve(&Default::default(), file).unwrap();
    assert_eq!(
        (s.http.header_read_timeout_seconds, s.http.body_read_timeout_seconds, s.http.idle_timeout_seconds),
        (5, 6, 7)
    );
    assert_eq!((s.http.max_connections, s.http.hsts_max_age), (Some(100), 0));
    let d = tether_server::Settings::resolve(&Default::default(), Default::default()).unwrap();
    assert_eq!(
        (d.http.header_read_timeout_seconds, d.http.body_read_timeout_seconds, d.http.idle_timeout_seconds),
        (10, 30, 60)
    );
    assert_eq!((d.http.max_connections, d.http.hsts_max_age), (None, 31_536_000));
    std::fs::write(&path, "[http]\nidle_timeout_seconds = 0\n").unwrap();
    let file = tether_server::FileConfig::load(&path).unwrap();
    let e = tether_server::Settings::resolve(&Default::default(), file).unwrap_err();
    assert!(e.contains("idle_timeout_seconds"), "{e}");

    let gw = dir.path().join("gw.toml");
    let base = "upstream = \"http://127.0.0.1:9\"\nissuer = \"https://localhost:9443\"\nauth_methods = [\"bearer\"]\n";
    std::fs::write(&gw, format!("{base}[http]\nhsts_max_age = 5\n")).unwrap();
    let e = tether_gateway::Config::load(&gw).unwrap_err();
    assert!(e.contains("hsts_max_age"), "{e}");
    std::fs::write(&gw, format!("{base}[http]\nbody_read_timeout_seconds = 9\nmax_connections = 0\n")).unwrap();
    let e = tether_gateway::Config::load(&gw).unwrap_err();
    assert!(e.contains("max_connections"), "{e}");
    std::fs::write(&gw, format!("{base}[http]\nbody_read_timeout_seconds = 9\n")).unwrap();
    let c = tether_gateway::Config::load(&gw).unwrap();
    assert_eq!(c.body_read_timeout(), Duration::from_secs(9));
    assert_eq!(c.http.header_read_timeout_seconds, Some(10));
}

#[tokio::test]
async fn hsts_can_be_turned_off() {
    let srv = TestServer::start_with(|s| s.http.hsts_max_age = 0).await;
    let r = srv.client().get(srv.url("/healthz")).send().await.unwrap();
    assert!(r.headers().get("strict-transport-security").is_none());
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let srv = TestServer::start_with(|s| s.http.hsts_max_age = 600).await;
    let r = srv.client().get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=600");
}
