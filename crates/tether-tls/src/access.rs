//! The access log: one `info` event per HTTP request on the log target `access`, with the
//! method, the path (never the query string), the status, the time to the response head, the
//! response body's size when it is known, the client's address (behind trusted proxies, the
//! forwarded one: [`crate::forwarded`]) and the authenticated client, when the handler knows
//! it and says so with an [`AuthenticatedClient`] response extension.
//!
//! Nothing else of the request is looked at: no header value (but the forwarding headers of a
//! trusted proxy, for the address), no body, no token. The fields are structured, so a JSON
//! formatter writes one object per request. When the target is filtered out (`RUST_LOG=access=off`)
//! the layer costs one cached interest check per request.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::HttpBody;
use http::{Method, Request, Response, Uri, header};
use ipnet::IpNet;

use crate::accept::ConnInfo;

/// The client a request authenticated as (a response extension the access log reads). Put it
/// on a response only once the client's credentials were checked.
#[derive(Clone, Debug)]
pub struct AuthenticatedClient(pub String);

/// The access log as a `tower` layer; `trusted` are the proxies whose forwarding headers name
/// the client's address.
#[derive(Clone)]
pub struct AccessLogLayer {
    trusted: Arc<[IpNet]>,
}

impl AccessLogLayer {
    pub fn new(trusted: &[IpNet]) -> Self {
        AccessLogLayer { trusted: trusted.into() }
    }
}

impl<S> tower::Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { trusted: self.trusted.clone(), inner }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    trusted: Arc<[IpNet]>,
    inner: S,
}

/// What the log line needs from the request, taken before the request is handed on.
struct Seen {
    start: Instant,
    method: Method,
    uri: Uri,
    ip: Option<IpAddr>,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for AccessLog<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: HttpBody,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = AccessFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let seen = tracing::enabled!(target: "access", tracing::Level::INFO).then(|| Seen {
            start: Instant::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            ip: req
                .extensions()
                .get::<ConnInfo>()
                .map(|c| crate::forwarded::client_ip(c.remote.ip(), &self.trusted, req.headers())),
        });
        AccessFuture { inner: self.inner.call(req), seen }
    }
}

pin_project_lite::pin_project! {
    pub struct AccessFuture<F> {
        #[pin]
        inner: F,
        seen: Option<Seen>,
    }
}

impl<F, ResBody, E> Future for AccessFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: HttpBody,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let (Ok(resp), Some(seen)) = (&out, this.seen.take()) {
            log(&seen, resp);
        }
        Poll::Ready(out)
    }
}

fn log<B: HttpBody>(seen: &Seen, resp: &Response<B>) {
    let duration_ms = seen.start.elapsed().as_micros() as f64 / 1000.0;
    let bytes = resp.body().size_hint().exact().or_else(|| {
        resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
    });
    let client_id = resp.extensions().get::<AuthenticatedClient>().map(|c| c.0.as_str());
    tracing::info!(
        target: "access",
        method = %seen.method,
        path = seen.uri.path(),
        status = resp.status().as_u16(),
        duration_ms,
        bytes,
        ip = seen.ip.map(tracing::field::display),
        client_id,
        "access"
    );
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use axum::body::Body;
    use tower::{Layer, ServiceExt};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn one_line_per_request_without_the_query() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt().json().flatten_event(true).with_writer(move || w.clone()).finish();
        let _g = tracing::subscriber::set_default(sub);
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let svc = AccessLogLayer::new(&trusted).layer(tower::service_fn(|_req: Request<Body>| async {
            let mut r = Response::new(Body::from("hello"));
            r.extensions_mut().insert(AuthenticatedClient("c1".into()));
            Ok::<_, Infallible>(r)
        }));
        let mut req = Request::post("/oauth2/token?code=SECRET").header("x-forwarded-for", "203.0.113.7");
        req.extensions_mut().unwrap().insert(ConnInfo {
            remote: "10.1.2.3:4444".parse().unwrap(),
            tls: true,
            peer_cert: None,
        });
        svc.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains("SECRET") && !text.contains('?'), "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["message"], "access");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/oauth2/token");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 5);
        assert_eq!(v["ip"], "203.0.113.7");
        assert_eq!(v["client_id"], "c1");
        assert!(v["duration_ms"].as_f64().is_some(), "{v}");
    }
}
