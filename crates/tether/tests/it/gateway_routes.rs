//! Gateway routes and operations: the Kong seed's demo on three routes with different modes
//! (strict mTLS on `/payments`, optional on `/public`, anonymous on `/status`), encoded-path
//! bypass attempts, `strip_prefix` / `preserve_host` / hosts, round-robin over two upstreams with
//! one dead, an HTTPS upstream, a reload under load with no failed request, `/healthz`,
//! `/readyz`, and `/metrics` naming each rejection reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tether_gateway::FileConfig;
use tether_gateway::routes::{OneOrMany, RouteFile};
use tether_testkit::*;

use crate::gateway::token;

/// An upstream that says who it is and what reached it.
async fn named_upstream(name: &'static str) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app_named(name)).await;
    });
    addr
}

fn app_named(name: &'static str) -> axum::Router {
    use axum::http::{HeaderMap, Uri};
    axum::Router::new().fallback(move |uri: Uri, h: HeaderMap| async move {
        let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        axum::Json(json!({
            "upstream": name,
            "path": uri.path(),
            "query": uri.query(),
            "host": get("host"),
            "authorization": get("authorization"),
        }))
    })
}

/// The same upstream over HTTPS, with a certificate from its own local CA (returned as PEM).
async fn https_upstream(name: &'static str, dir: &std::path::Path) -> (std::net::SocketAddr, String) {
    let material = tether_tls::pki::ensure_local(dir).unwrap();
    let ca = std::fs::read_to_string(dir.join("tls/ca.pem")).unwrap();
    let cfg = tether_tls::accept::server_config(&material, false).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let limits = tether_tls::limits::HttpLimits::new(10, 30, 60, Some(100));
    tokio::spawn(async move {
        let _keep = _tx;
        tether_tls::accept::serve(l, Some(cfg), app_named(name), rx, std::time::Duration::from_secs(1), limits).await;
    });
    (addr, ca)
}

fn route(prefix: &str, upstream: OneOrMany) -> RouteFile {
    RouteFile { path_prefix: Some(prefix.into()), upstream: Some(upstream), ..Default::default() }
}

struct Demo {
    srv: TestServer,
    gw: TestGateway,
    bound: AppCreds,
    unbound: AppCreds,
}

/// The Kong seed's demo: `/payments` strict mTLS, `/public` optional (prefix stripped),
/// `/status` anonymous; no top-level upstream.
async fn demo(payments: &[std::net::SocketAddr]) -> Demo {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mk = |binding: Option<&str>| {
        let mut ch = app(&["password"]);
        ch.binding = binding.map(str::to_string);
        ch.token_type = Some("jwt".into());
        ch
    };
    let bound = srv.create_app(mk(Some("certificate"))).await;
    let unbound = srv.create_app(mk(None)).await;
    let public = named_upstream("public").await;
    let status = named_upstream("status").await;
    let pay = OneOrMany::Many(payments.iter().map(|a| format!("http://{a}")).collect());
    let gw = srv
        .gateway(public, |c: &mut FileConfig| {
            c.upstream = None;
            c.auth_methods = Some(vec!["bearer".into()]);
            let mut p = route("/payments", pay);
            p.proof_of_possession_mtls = Some("strict".into());
            let mut pu = route("/public", OneOrMany::One(format!("http://{public}")));
            pu.strip_prefix = Some(true);
            pu.proof_of_possession_mtls = Some("optional".into());
            let mut st = route("/status", OneOrMany::One(format!("http://{status}/health")));
            st.anonymous = Some(true);
            st.preserve_host = Some(true);
            st.required_scopes = Some(vec!["status:read".into()]);
            c.routes = vec![p, pu, st];
        })
        .await
        .unwrap();
    Demo { srv, gw, bound, unbound }
}

async fn get(c: &reqwest::Client, url: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut r = c.get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn three_routes_three_modes_and_no_bypass() {
    let pay = named_upstream("payments").await;
    let d = demo(&[pay]).await;
    let cert = client_cert("alice-device");
    let bound = token(&d.srv, &d.bound, Some(&cert)).await;
    let unbound = token(&d.srv, &d.unbound, None).await;
    let plain = d.gw.client();
    let with_cert = d.gw.client_with(&cert);

    // /payments: strict mTLS — an unbound token is refused, the bound one with its certificate passes.
    let (s, b) = get(&plain, &d.gw.url("/payments/transfer"), Some(&unbound)).await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = get(&with_cert, &d.gw.url("/payments/transfer?amount=5"), Some(&bound)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!((b["upstream"].as_str(), b["path"].as_str()), (Some("payments"), Some("/payments/transfer")));
    assert_eq!(b["query"], "amount=5");
    assert_eq!(b["authorization"].as_str(), Some(format!("Bearer {bound}").as_str()));
    // The bound token without its certificate never passes, on any route.
    assert_eq!(get(&plain, &d.gw.url("/payments/transfer"), Some(&bound)).await.0, 401);
    assert_eq!(get(&plain, &d.gw.url("/public/x"), Some(&bound)).await.0, 401);

    // /public: optional — unbound tokens pass; the upstream gets the path after the prefix.
    let (s, b) = get(&plain, &d.gw.url("/public/docs/a"), Some(&unbound)).await;
    assert_eq!((s, b["upstream"].as_str(), b["path"].as_str()), (StatusCode::OK, Some("public"), Some("/docs/a")));
    assert_eq!(get(&plain, &d.gw.url("/public"), Some(&unbound)).await.1["path"], "/");
    assert_eq!(get(&plain, &d.gw.url("/public/x"), None).await.0, 401, "a token is still needed");

    // /status: anonymous — no token needed, but a token that is sent is checked; Host kept.
    let (s, b) = get(&plain, &d.gw.url("/status"), None).await;
    assert_eq!(
        (s, b["upstream"].as_str(), b["path"].as_str()),
        (StatusCode::OK, Some("status"), Some("/health/status"))
    );
    assert!(b["host"].as_str().unwrap().starts_with("localhost:"), "preserve_host: {b}");
    assert!(b["authorization"].is_null(), "nothing forwarded for a tokenless request");
    assert_eq!(get(&plain, &d.gw.url("/status"), Some("forged.jwt.token")).await.0, 401);

    // Whole segments only; no route is 404.
    let (s, b) = get(&plain, &d.gw.url("/paymentsX"), Some(&unbound)).await;
    assert_eq!((s, b["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    // Bypass attempts: every spelling of a way from /public (or /status) into /payments is 400.
    for p in [
        "/public/..%2Fpayments/transfer",
        "/public/%2e%2e/payments/transfer",
        "/public/%2E%2E/payments/transfer",
        "/public/.%2e/payments/transfer",
        "/public/..;/payments/transfer",
        "/status/..%2f..%2fpayments",
        "/public%2fpayments",
        "/public/..%5Cpayments",
        "/public/x%00",
    ] {
        // Raw: a URL library would resolve most of these itself before sending.
        let raw = raw_get(d.gw.addr(), &d.gw.ca_pem, p, &unbound).await;
        assert!(raw.starts_with("HTTP/1.1 400") && raw.contains("invalid_request"), "{p}: {raw}");
    }
    let raw = raw_get(d.gw.addr(), &d.gw.ca_pem, "/public/../payments/transfer", &unbound).await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    d.gw.stop().await;
}

/// A raw HTTP/1.1 GET over TLS (no client-side path normalisation).
async fn raw_get(addr: std::net::SocketAddr, ca_pem: &str, path: &str, token: &str) -> String {
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    let b64: String = ca_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    roots.add(der.into()).unwrap();
    let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = conn.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn round_robin_skips_a_dead_upstream() {
    let a = named_upstream("a").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap() // closed when `l` drops: connections are refused
    };
    let b = named_upstream("b").await;
    let d = demo(&[a, dead, b]).await;
    let cert = client_cert("rr");
    let bound = token(&d.srv, &d.bound, Some(&cert)).await;
    let c = d.gw.client_with(&cert);
    let mut seen = std::collections::HashMap::new();
    for _ in 0..30 {
        let (s, body) = get(&c, &d.gw.url("/payments/x"), Some(&bound)).await;
        *seen.entry((s.as_u16(), body["upstream"].as_str().unwrap_or("-").to_string())).or_insert(0) += 1;
    }
    let ok_a = seen.get(&(200, "a".to_string())).copied().unwrap_or(0);
    let ok_b = seen.get(&(200, "b".to_string())).copied().unwrap_or(0);
    let failed: i32 = seen.iter().filter(|((s, _), _)| *s != 200).map(|(_, n)| *n).sum();
    assert!(ok_a >= 10 && ok_b >= 10, "both live upstreams share the load: {seen:?}");
    assert!(failed <= 3, "the dead one is skipped after a few failures (502s): {seen:?}");
    d.gw.stop().await;
}

#[tokio::test]
async fn an_https_upstream_verified_with_its_ca() {
    let srv = TestServer::start().await;
    let mut ch = app(&["client_credentials"]);
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    let t = srv.token(&a, &[("grant_type", "client_credentials")]).await.json::<Value>().await.unwrap();
    let t = t["access_token"].as_str().unwrap().to_string();
    let dir = TempDir::new("https-up");
    let (addr, ca) = https_upstream("secure", dir.path()).await;
    let ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let gw = srv
        .gateway(addr, |c| {
            c.auth_methods = Some(vec!["bearer".into()]);
            c.upstream = Some(format!("https://localhost:{}", addr.port()));
            c.upstream_ca_file = Some(ca_file.clone());
        })
        .await
        .unwrap();
    let (s, b) = get(&gw.client(), &gw.url("/orders"), Some(&t)).await;
    assert_eq!((s, b["upstream"].as_str()), (StatusCode::OK, Some("secure")), "{b}");
    gw.stop().await;
    // Without its CA the upstream's certificate is not trusted: 502, never an unverified call.
    let gw = srv
        .gateway(addr, |c| {
            c.auth_methods = Some(vec!["bearer".into()]);
            c.upstream = Some(format!("https://localhost:{}", addr.port()));
        })
        .await
        .unwrap();
    assert_eq!(get(&gw.client(), &gw.url("/orders"), Some(&t)).await.0, 502);
    gw.stop().await;
}

#[tokio::test]
async fn reload_under_load_fails_no_request_and_bad_files_are_refused() {
    let pay = named_upstream("payments").await;
    let d = demo(&[pay]).await;
    let unbound = token(&d.srv, &d.unbound, None).await;
    let c = d.gw.client();
    let running = d.gw.running.as_ref().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (c, url, t, stop, ok, bad) =
            (c.clone(), d.gw.url("/public/x"), unbound.clone(), stop.clone(), ok.clone(), bad.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).bearer_auth(&t).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => bad.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // The new file adds /v2 and makes /public's upstream see the full path.
    let base = running.guard.cfg.clone();
    for round in 0..10 {
        let mut cfg = base.clone();
        let mut v2 = route("/v2", OneOrMany::One(format!("http://{pay}")));
        v2.proof_of_possession_mtls = Some("optional".into());
        cfg.routes.push(v2);
        if round % 2 == 1 {
            cfg.routes.retain(|r| r.path_prefix.as_deref() != Some("/v2"));
        }
        running.reload(&cfg).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut cfg = base.clone();
    cfg.routes.push(route("/v2", OneOrMany::One(format!("http://{pay}"))));
    running.reload(&cfg).unwrap();
    // A file that does not validate changes nothing.
    let mut broken = base.clone();
    broken.routes.push(RouteFile { path_prefix: Some("no-slash".into()), ..Default::default() });
    assert!(running.reload(&broken).unwrap_err().contains("routes["));
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(ok.load(Ordering::Relaxed) > 20, "the load ran");
    assert_eq!(bad.load(Ordering::Relaxed), 0, "no request failed during the reloads");
    assert_eq!(get(&c, &d.gw.url("/v2/x"), Some(&unbound)).await.0, 200, "the reloaded route serves");
    d.gw.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_with_rejection_reasons() {
    let pay = named_upstream("payments").await;
    let d = demo(&[pay]).await;
    let running = d.gw.running.as_ref().unwrap();
    let ops = format!("http://{}", running.metrics_addr.unwrap());
    let plain = reqwest::Client::new();
    assert_eq!(plain.get(format!("{ops}/healthz")).send().await.unwrap().status(), 200);
    let r = plain.get(format!("{ops}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let unbound = token(&d.srv, &d.unbound, None).await;
    let cert = client_cert("m");
    let bound = token(&d.srv, &d.bound, Some(&cert)).await;
    let c = d.gw.client();
    get(&c, &d.gw.url("/public/x"), None).await; // no_token
    get(&c, &d.gw.url("/payments/x"), Some(&unbound)).await; // pop_certificate (strict)
    get(&c, &d.gw.url("/public/x"), Some(&bound)).await; // pop_certificate (bound, no cert)
    // Another token's signature on this token's claims.
    let (head, _) = unbound.rsplit_once('.').unwrap();
    let (_, other_sig) = bound.rsplit_once('.').unwrap();
    get(&c, &d.gw.url("/public/x"), Some(&format!("{head}.{other_sig}"))).await; // bad_signature
    get(&c, &d.gw.url("/nowhere"), Some(&unbound)).await; // no_route
    get(&c, &d.gw.url("/public/..%2fx"), Some(&unbound)).await; // bad_request
    get(&c, &d.gw.url("/status"), Some(&unbound)).await; // scope (a sent token is checked)
    let admin = {
        let mut ch = app(&["client_credentials"]);
        ch.scopes = Some(vec!["admin:read".into()]);
        ch.token_type = Some("jwt".into());
        let a = d.srv.create_app(ch).await;
        let r = d.srv.token(&a, &[("grant_type", "client_credentials"), ("scope", "admin:read")]).await;
        r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
    };
    let (s, b) = get(&c, &d.gw.url("/public/x"), Some(&admin)).await; // audience: never an admin token
    assert_eq!(s, 401, "an admin API token does not pass: {b}");
    let r = c
        .get(d.gw.url("/public/x"))
        .header("authorization", format!("DPoP {unbound}"))
        .header("dpop", "not.a.proof")
        .send()
        .await
        .unwrap(); // dpop_invalid
    assert_eq!(r.status(), 401);
    d.srv.clock.advance(7200);
    get(&c, &d.gw.url("/public/x"), Some(&unbound)).await; // expired
    let text = plain.get(format!("{ops}/metrics")).send().await.unwrap().text().await.unwrap();
    for reason in [
        "no_token",
        "pop_certificate",
        "bad_signature",
        "no_route",
        "bad_request",
        "expired",
        "scope",
        "audience",
        "dpop_invalid",
    ] {
        assert!(text.contains(&format!("reason=\"{reason}\"")), "{reason} missing:\n{text}");
    }
    assert!(text.contains("tether_gateway_requests_total") && text.contains("route=\"/public\""), "{text}");
    assert!(text.contains("tether_gateway_upstream_seconds"), "{text}");
    d.gw.stop().await;
}

/// A raw upstream that accepts an upgrade (101) and then echoes every byte.
async fn upgrade_echo_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                assert!(head.contains("upgrade: websocket") && head.contains("authorization: bearer"), "{head}");
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    .await;
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// An admin API token passes only a route whose `audience` names the admin API.
#[tokio::test]
async fn admin_tokens_pass_only_where_the_route_names_their_audience() {
    let srv = TestServer::start().await;
    let mut ch = app(&["client_credentials"]);
    ch.scopes = Some(vec!["admin:read".into()]);
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    let r = srv.token(&a, &[("grant_type", "client_credentials"), ("scope", "admin:read")]).await;
    let admin = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let up = named_upstream("ops").await;
    let admin_aud = srv.url("/api/admin/v1");
    let gw = srv
        .gateway(up, |c| {
            c.auth_methods = Some(vec!["bearer".into()]);
            let mut r = route("/ops", OneOrMany::One(format!("http://{up}")));
            r.audience = Some(admin_aud.clone());
            c.routes = vec![r];
        })
        .await
        .unwrap();
    let c = gw.client();
    let (s, b) = get(&c, &gw.url("/elsewhere"), Some(&admin)).await;
    assert_eq!((s, b["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")), "{b}");
    assert_eq!(get(&c, &gw.url("/ops/x"), Some(&admin)).await.0, 200, "the route that names the admin API");
    gw.stop().await;
}

#[tokio::test]
async fn a_websocket_upgrade_passes_after_the_checks() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::start().await;
    let mut ch = app(&["client_credentials"]);
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    let t = srv.token(&a, &[("grant_type", "client_credentials")]).await.json::<Value>().await.unwrap();
    let t = t["access_token"].as_str().unwrap().to_string();
    let up = upgrade_echo_upstream().await;
    let gw = srv.gateway(up, |c| c.auth_methods = Some(vec!["bearer".into()])).await.unwrap();

    let open = |token: Option<String>| {
        let (addr, ca) = (gw.addr(), gw.ca_pem.clone());
        async move {
            use base64::Engine;
            let mut roots = rustls::RootCertStore::empty();
            let b64: String = ca.lines().filter(|l| !l.starts_with("-----")).collect();
            roots.add(base64::engine::general_purpose::STANDARD.decode(b64).unwrap().into()).unwrap();
            let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap();
            let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
            let req = format!(
                "GET /chat HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            );
            tls.write_all(req.as_bytes()).await.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if tls.read(&mut b).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(b[0]);
            }
            (String::from_utf8_lossy(&head).into_owned(), tls)
        }
    };
    // Without a token: refused before anything reaches the upstream.
    let (head, _) = open(None).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    // With one: 101, then bytes flow both ways.
    let (head, mut tls) = open(Some(t)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
    tls.write_all(b"ping over the tunnel").await.unwrap();
    let mut got = vec![0u8; 20];
    tls.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping over the tunnel");
    drop(tls);
    gw.stop().await;
}
