//! Forwarding a verified request to the upstream (gateway.md G-6): the original method, path,
//! query and body (streamed, never buffered whole), minus hop-by-hop headers and anything the
//! client claimed about authentication, plus `X-Forwarded-*`, `X-Authenticated-*` and the token
//! in `upstream_access_token_header`. Connections to the upstream are pooled (keep-alive). The
//! upstream URI is built from typed parts ([`upstream_uri`]), never by pasting the client's
//! request target after the upstream's URL.

use std::net::SocketAddr;

use axum::body::Body;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::guard::{Authenticated, Guard, Rejection, strip_authenticated_headers};

pub type UpstreamClient = Client<HttpConnector, Body>;

pub fn client() -> UpstreamClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_keepalive(Some(std::time::Duration::from_secs(60)));
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(c)
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

fn strip_hop_by_hop(h: &mut http::HeaderMap) {
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

pub async fn forward(
    g: &Guard,
    client: &UpstreamClient,
    mut req: Request<Body>,
    who: &Authenticated,
    remote: Option<SocketAddr>,
) -> Response<Body> {
    let Some(uri) = upstream_uri(&g.cfg.upstream, req.uri()) else {
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
    let client_version = match req.version() {
        http::Version::HTTP_2 => http::Version::HTTP_2,
        _ => http::Version::HTTP_11,
    };
    *req.version_mut() = http::Version::HTTP_11;
    let h = req.headers_mut();
    strip_hop_by_hop(h);
    strip_authenticated_headers(h);
    h.remove(header::HOST);
    h.remove(header::AUTHORIZATION);
    h.remove("dpop");
    // The token, as configured (default: Authorization: Bearer <token>).
    let (name, scheme) = &g.cfg.upstream_token_header;
    let value = match scheme {
        Some(s) => format!("{s} {}", who.token),
        None => who.token.clone(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(name.clone(), v);
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
    match client.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            parts.version = client_version;
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) if tether_tls::body::is_read_timeout(&e) => {
            tracing::debug!("the client stopped sending the request body");
            g.reject(Rejection::body_timeout())
        }
        Err(e) => {
            tracing::warn!(error = %e, upstream = %g.cfg.upstream, "upstream unreachable");
            g.reject(Rejection {
                status: StatusCode::BAD_GATEWAY,
                error: Some("bad_gateway"),
                description: "the upstream service cannot be reached".into(),
                headers: Vec::new(),
            })
        }
    }
}

/// The upstream URI of a request target: scheme and authority from `upstream` (the
/// configuration), then its base path followed by the target's path and query, parsed as a path
/// (so the target can never name another host or scheme). Only origin-form targets are
/// forwarded: `None` for the asterisk form (`OPTIONS *`) and anything else without a path that
/// starts with `/`.
pub fn upstream_uri(upstream: &url::Url, target: &Uri) -> Option<Uri> {
    let path = target.path();
    if !path.starts_with('/') {
        return None;
    }
    let base = upstream.path().trim_end_matches('/');
    let mut pq = String::with_capacity(base.len() + path.len() + target.query().map_or(0, |q| q.len() + 1));
    pq.push_str(base);
    pq.push_str(path);
    if let Some(q) = target.query() {
        pq.push('?');
        pq.push_str(q);
    }
    let path_and_query = PathAndQuery::try_from(pq).ok()?;
    let authority = Authority::try_from(&upstream[url::Position::BeforeHost..url::Position::AfterPort]).ok()?;
    Uri::builder().scheme(upstream.scheme()).authority(authority).path_and_query(path_and_query).build().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_origin_form_targets_reach_the_upstream() {
        let up = url::Url::parse("http://127.0.0.1:9000").unwrap();
        let t = |s: &str| upstream_uri(&up, &s.parse::<Uri>().unwrap()).map(|u| u.to_string());
        assert_eq!(t("/orders?x=1").as_deref(), Some("http://127.0.0.1:9000/orders?x=1"));
        assert_eq!(t("/").as_deref(), Some("http://127.0.0.1:9000/"));
        assert_eq!(t("*"), None);
        assert_eq!(t("evil.example:443"), None);
        // Absolute form: only the path and query are taken.
        assert_eq!(t("http://evil.example/x?y").as_deref(), Some("http://127.0.0.1:9000/x?y"));
        let based = url::Url::parse("http://[::1]:9000/api/").unwrap();
        let u = upstream_uri(&based, &"/orders".parse::<Uri>().unwrap()).unwrap();
        assert_eq!(u.to_string(), "http://[::1]:9000/api/orders");
    }
}
