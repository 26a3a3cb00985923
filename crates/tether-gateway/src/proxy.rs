//! Forwarding a verified request to its route's upstream (gateway.md G-6): the original method,
//! path (or its rest after the route's prefix, with `strip_prefix`), query and body (streamed,
//! never buffered whole), minus hop-by-hop headers and anything the client claimed about
//! authentication, plus `X-Forwarded-*`, `X-Authenticated-*` and the token in
//! `upstream_access_token_header`. Connections to the upstream are pooled (keep-alive), over
//! TLS for `https://` upstreams (verified against the system's roots or `upstream_ca_file`).
//! The upstream URI is built from typed parts ([`upstream_uri`]), never by pasting the client's
//! request target after the upstream's URL. No answer from a target (refused, TLS failure,
//! `upstream_timeout_seconds`) is 502 and counts against its health ([`crate::routes`]); no
//! healthy target is 503.

use std::net::SocketAddr;

use axum::body::Body;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::guard::{Authenticated, Guard, Rejection, strip_authenticated_headers};
use crate::routes::Route;

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// The trust anchors of `https://` upstreams: `upstream_ca_file`, else the system's.
fn roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("upstream_ca_file {}: {e}", path.display()))?;
            for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                let c = c.map_err(|e| format!("upstream_ca_file {}: not PEM certificates: {e}", path.display()))?;
                roots.add(c).map_err(|e| format!("upstream_ca_file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("upstream_ca_file {} holds no certificate", path.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    Ok(roots)
}

/// The upstream client: HTTP/1.1, keep-alive pool, TLS for `https://` targets.
pub fn client(ca_file: Option<&std::path::Path>) -> Result<UpstreamClient, String> {
    let tls =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots(ca_file)?)
            .with_no_client_auth();
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_keepalive(Some(std::time::Duration::from_secs(60)));
    c.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(c);
    Ok(Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(https))
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The `Upgrade` a request asks for (HTTP/1.1 `Connection: upgrade`), if any.
fn upgrade_of(req: &Request<Body>) -> Option<HeaderValue> {
    let asks = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| req.headers().get(header::UPGRADE).cloned()).flatten()
}

fn strip_hop_by_hop(h: &mut http::HeaderMap) {
    // Called twice per request (request and answer), usually with nothing to remove: one scan
    // of the names first instead of a hashed lookup per hop-by-hop name.
    if !h.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        return;
    }
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// Milliseconds since the Unix epoch (passive health; wall-clock, never a protocol decision).
#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn unavailable_upstream(g: &Guard) -> Response<Body> {
    g.reject(Rejection {
        status: StatusCode::SERVICE_UNAVAILABLE,
        error: Some("temporarily_unavailable"),
        description: "no upstream of this route is healthy; try again".into(),
        headers: Vec::new(),
    })
}

pub async fn forward(
    g: &Guard,
    client: &UpstreamClient,
    route: &Route,
    mut req: Request<Body>,
    who: &Authenticated,
    remote: Option<SocketAddr>,
) -> Response<Body> {
    let Some(target) = route.pick(now_ms()) else {
        return unavailable_upstream(g);
    };
    let path = route.upstream_path(req.uri().path()).into_owned();
    let query = req.uri().query().map(str::to_string);
    let Some(uri) = upstream_uri(&target.url, &path, query.as_deref()) else {
        return g.reject(Rejection::invalid_request("only origin-form request targets (/path?query) can be forwarded"));
    };
    let host = req
        .headers()
        .get(header::HOST)
        .cloned()
        .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    *req.uri_mut() = uri;
    // A proxy speaks its own HTTP version to each side (RFC 9110 §6.2): HTTP/1.1 upstream, and to
    // the client the version it used (HTTP/1.1 for any 1.x client), never the upstream's.
    let upgrade = (req.version() == http::Version::HTTP_11).then(|| upgrade_of(&req)).flatten();
    let client_version = match req.version() {
        http::Version::HTTP_2 => http::Version::HTTP_2,
        _ => http::Version::HTTP_11,
    };
    *req.version_mut() = http::Version::HTTP_11;
    // A WebSocket (or other) upgrade, on HTTP/1.1, after every check passed: the upgrade headers
    // go on to the upstream, and on its 101 both connections are joined.
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let h = req.headers_mut();
    strip_hop_by_hop(h);
    if let Some(u) = &upgrade {
        h.insert(header::UPGRADE, u.clone());
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    strip_authenticated_headers(h);
    h.remove(header::HOST);
    if route.preserve_host
        && let Some(host) = &host
    {
        h.insert(header::HOST, host.clone());
    }
    h.remove(header::AUTHORIZATION);
    h.remove("dpop");
    // The token, as configured (default: Authorization: Bearer <token>); none on an anonymous
    // route's tokenless request.
    let (name, scheme) = &g.cfg.upstream_token_header;
    if !who.is_anonymous() {
        let value = match scheme {
            Some(s) => format!("{s} {}", who.token),
            None => who.token.clone(),
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name.clone(), v);
        }
    }
    if let Some(r) = remote {
        let ip = r.ip().to_string();
        let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert("x-forwarded-for", v);
        }
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    if let Some(host) = host {
        h.insert("x-forwarded-host", host);
    }
    let mut set = |n: &'static str, v: &Option<String>| {
        if let Some(v) = v.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            h.insert(n, v);
        }
    };
    set("x-authenticated-sub", &who.sub);
    set("x-authenticated-client", &who.client_id);
    set("x-authenticated-scope", &who.scope);
    // A request without a body can be sent again: a target that refuses the connection is then
    // replaced by the next healthy one, so a dead target costs the client nothing.
    let bodyless = !req.headers().contains_key(header::TRANSFER_ENCODING)
        && req.headers().get(header::CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0")
        && matches!(
            *req.method(),
            http::Method::GET | http::Method::HEAD | http::Method::DELETE | http::Method::OPTIONS
        );
    // (Kept only where there is another target to try: a copy of the headers per request.)
    let again = (bodyless && route.targets.len() > 1).then(|| (req.method().clone(), req.headers().clone()));
    let mut target = target;
    let mut req = req;
    let sent = loop {
        let started = std::time::Instant::now();
        let sent = match route.timeout {
            Some(t) => match tokio::time::timeout(t, client.request(req)).await {
                Ok(r) => r.map_err(Some),
                Err(_) => Err(None),
            },
            None => client.request(req).await.map_err(Some),
        };
        route.metrics.upstream_latency(started.elapsed());
        match (&sent, &again) {
            (Err(Some(e)), Some((method, headers))) if e.is_connect() => {
                target.failed(now_ms());
                tracing::warn!(error = %e, upstream = %target.url, "upstream refused the connection; trying another");
                let next = route.pick_other(now_ms(), target);
                let rebuilt = next.and_then(|n| {
                    let uri = upstream_uri(&n.url, &path, query.as_deref())?;
                    let mut r = Request::new(Body::empty());
                    *r.method_mut() = method.clone();
                    *r.uri_mut() = uri;
                    *r.version_mut() = http::Version::HTTP_11;
                    *r.headers_mut() = headers.clone();
                    Some((n, r))
                });
                match rebuilt {
                    Some((n, r)) => {
                        target = n;
                        req = r;
                        continue;
                    }
                    None => break sent,
                }
            }
            _ => break sent,
        }
    };
    match sent {
        Ok(mut resp) if resp.status() == StatusCode::SWITCHING_PROTOCOLS && client_upgrade.is_some() => {
            target.succeeded();
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            if let Some(client_upgrade) = client_upgrade {
                tokio::spawn(async move {
                    match (client_upgrade.await, upstream_upgrade.await) {
                        (Ok(c), Ok(u)) => {
                            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                            let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                        }
                        (c, u) => tracing::debug!(client = c.is_ok(), upstream = u.is_ok(), "upgrade not completed"),
                    }
                });
            }
            // The 101 keeps its Connection/Upgrade headers: they are the answer.
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, Body::empty())
        }
        Ok(resp) => {
            target.succeeded();
            let (mut parts, body) = resp.into_parts();
            parts.version = client_version;
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(Some(e)) if tether_tls::body::is_read_timeout(&e) => {
            tracing::debug!("the client stopped sending the request body");
            g.reject(Rejection::body_timeout())
        }
        Err(e) => {
            target.failed(now_ms());
            match &e {
                Some(e) => tracing::warn!(error = %e, upstream = %target.url, "upstream unreachable"),
                None => tracing::warn!(upstream = %target.url, "upstream timed out (upstream_timeout_seconds)"),
            }
            g.reject(Rejection {
                status: StatusCode::BAD_GATEWAY,
                error: Some("bad_gateway"),
                description: "the upstream service cannot be reached".into(),
                headers: Vec::new(),
            })
        }
    }
}

/// The upstream URI of a request: scheme and authority from the target `upstream` (the
/// configuration), then its base path followed by `path` and `query`, parsed as a path (so the
/// request can never name another host or scheme). Only origin-form targets are forwarded:
/// `None` for a path that does not start with `/` (the asterisk form `OPTIONS *`, the authority
/// form).
pub fn upstream_uri(upstream: &url::Url, path: &str, query: Option<&str>) -> Option<Uri> {
    if !path.starts_with('/') {
        return None;
    }
    let base = upstream.path().trim_end_matches('/');
    let mut pq = String::with_capacity(base.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(base);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    let path_and_query = PathAndQuery::try_from(pq).ok()?;
    let authority = Authority::try_from(&upstream[url::Position::BeforeHost..url::Position::AfterPort]).ok()?;
    Uri::builder().scheme(upstream.scheme()).authority(authority).path_and_query(path_and_query).build().ok()
}

/// `tether health`: GET `url` (http or https; `ca_file` adds a CA to trust, e.g. the local CA of
/// `tether serve`) within `timeout`. Returns the status code.
pub async fn probe(url: &str, ca_file: Option<&std::path::Path>, timeout: std::time::Duration) -> Result<u16, String> {
    let uri: Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("{url:?}: only http:// and https:// URLs can be checked"));
    }
    let c = client(ca_file)?;
    let req = Request::get(uri).body(Body::empty()).map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, c.request(req)).await {
        Ok(Ok(r)) => Ok(r.status().as_u16()),
        Ok(Err(e)) => {
            // hyper's "client error (Connect)" says little: add the causes (refused, TLS, …).
            let mut why = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                why.push_str(&format!(": {s}"));
                src = s.source();
            }
            Err(format!("{url}: {why}"))
        }
        Err(_) => Err(format!("{url}: no answer within {} s", timeout.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_origin_form_targets_reach_the_upstream() {
        let up = url::Url::parse("http://127.0.0.1:9000").unwrap();
        let t = |s: &str| {
            let u = s.parse::<Uri>().unwrap();
            upstream_uri(&up, u.path(), u.query()).map(|u| u.to_string())
        };
        assert_eq!(t("/orders?x=1").as_deref(), Some("http://127.0.0.1:9000/orders?x=1"));
        assert_eq!(t("/").as_deref(), Some("http://127.0.0.1:9000/"));
        assert_eq!(t("*"), None);
        assert_eq!(t("evil.example:443"), None);
        // Absolute form: only the path and query are taken.
        assert_eq!(t("http://evil.example/x?y").as_deref(), Some("http://127.0.0.1:9000/x?y"));
        let based = url::Url::parse("http://[::1]:9000/api/").unwrap();
        let u = upstream_uri(&based, "/orders", None).unwrap();
        assert_eq!(u.to_string(), "http://[::1]:9000/api/orders");
    }
}
