//! Forwarding a verified request to the upstream (gateway.md G-6): the original method, path,
//! query and body (streamed, never buffered whole), minus hop-by-hop headers and anything the
//! client claimed about authentication, plus `X-Forwarded-*`, `X-Authenticated-*` and the token
//! in `upstream_access_token_header`. Connections to the upstream are pooled (keep-alive).

use std::net::SocketAddr;

use axum::body::Body;
use http::header::{self, HeaderName, HeaderValue};
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
    let base = &g.cfg.upstream;
    let path_q = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target = format!("{}{}", base.as_str().trim_end_matches('/'), path_q);
    let Ok(uri) = target.parse::<Uri>() else {
        return g.reject(Rejection::invalid_request("the request path cannot be forwarded"));
    };
    let host = req
        .headers()
        .get(header::HOST)
        .cloned()
        .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    *req.uri_mut() = uri;
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
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
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
