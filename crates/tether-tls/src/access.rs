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
//!
//! **The line is formatted here, not by `tracing`'s formatter**, when the process installs a
//! writer ([`set_writer`]; `tether serve` and `tether gateway` do): a [`Record`] is written in one
//! fixed layout, text or JSON ([`Record::write`]), straight into the log buffer. Going through
//! `tracing`'s event dispatch and `tracing-subscriber`'s fmt layer (field visitors, `Debug`
//! formatting, its own timestamp) cost 8–10 µs of CPU per request, a tenth of a token issuance
//! and a fifth of an introspection (bench/ab); the direct line costs well under one. The line has
//! the same fields and, in JSON, the same members as the `tracing` event it replaces, which is
//! still what a process without a writer (a test, a library user) gets. `RUST_LOG` still decides
//! whether the line is written at all.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use axum::body::HttpBody;
use http::{Method, Request, Response, Uri, header};
use ipnet::IpNet;

use crate::accept::ConnInfo;

/// The client a request authenticated as (a response extension the access log reads). Put it
/// on a response only once the client's credentials were checked.
#[derive(Clone, Debug)]
pub struct AuthenticatedClient(pub String);

/// What the gateway adds to its access line (a response extension): the route, the token's
/// subject, and why a request was refused.
#[derive(Clone, Debug, Default)]
pub struct AccessNote {
    pub route: Option<String>,
    pub sub: Option<String>,
    pub reason: Option<&'static str>,
}

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
    let duration_us = u64::try_from(seen.start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let bytes = resp.body().size_hint().exact().or_else(|| {
        resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
    });
    let note = resp.extensions().get::<AccessNote>();
    let record = Record {
        method: seen.method.as_str(),
        path: seen.uri.path(),
        status: resp.status().as_u16(),
        duration_us,
        bytes,
        ip: seen.ip,
        client_id: resp.extensions().get::<AuthenticatedClient>().map(|c| c.0.as_str()),
        route: note.and_then(|n| n.route.as_deref()),
        sub: note.and_then(|n| n.sub.as_deref()),
        reason: note.and_then(|n| n.reason),
    };
    if let Some(w) = WRITER.get() {
        w(&record);
        return;
    }
    tracing::info!(
        target: "access",
        method = record.method,
        path = record.path,
        status = record.status,
        duration_ms = duration_us as f64 / 1000.0,
        bytes = record.bytes,
        ip = record.ip.map(tracing::field::display),
        client_id = record.client_id,
        route = record.route,
        sub = record.sub,
        reason = record.reason,
        "access"
    );
}

/// One request's access-log line.
#[derive(Debug)]
pub struct Record<'a> {
    pub method: &'a str,
    /// The path alone, never the query.
    pub path: &'a str,
    pub status: u16,
    /// Until the response head was ready.
    pub duration_us: u64,
    /// The response body's size, when it is known in advance.
    pub bytes: Option<u64>,
    pub ip: Option<IpAddr>,
    pub client_id: Option<&'a str>,
    /// The gateway's: the route, the token's subject, why it refused.
    pub route: Option<&'a str>,
    pub sub: Option<&'a str>,
    pub reason: Option<&'a str>,
}

/// How [`Record::write`] lays a line out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `2026-11-30T13:54:22.123456Z  INFO access method=POST path=/oauth2/token status=200 …`
    Text,
    /// `{"timestamp":"…","level":"INFO","message":"access","method":"POST",…}`
    Json,
}

type Writer = Box<dyn Fn(&Record<'_>) + Send + Sync>;
static WRITER: OnceLock<Writer> = OnceLock::new();

/// Where this process's access lines go from now on, instead of a `tracing` event (see the module
/// docs). Set once; a second call is ignored and answers `false`.
pub fn set_writer(w: impl Fn(&Record<'_>) + Send + Sync + 'static) -> bool {
    WRITER.set(Box::new(w)).is_ok()
}

impl Record<'_> {
    /// Append the whole line, with its newline, to `out`.
    pub fn write(&self, layout: Layout, at: SystemTime, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let ms = (self.duration_us / 1000, self.duration_us % 1000);
        // Writing to a Vec cannot fail.
        match layout {
            Layout::Json => {
                out.extend_from_slice(b"{\"timestamp\":\"");
                rfc3339_micros(at, out);
                out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"access\",\"method\":");
                json_str(self.method, out);
                out.extend_from_slice(b",\"path\":");
                json_str(self.path, out);
                let _ = write!(out, ",\"status\":{},\"duration_ms\":{}.{:03}", self.status, ms.0, ms.1);
                if let Some(b) = self.bytes {
                    let _ = write!(out, ",\"bytes\":{b}");
                }
                if let Some(ip) = self.ip {
                    let _ = write!(out, ",\"ip\":\"{ip}\"");
                }
                for (k, v) in
                    [("client_id", self.client_id), ("route", self.route), ("sub", self.sub), ("reason", self.reason)]
                {
                    if let Some(v) = v {
                        out.extend_from_slice(b",\"");
                        out.extend_from_slice(k.as_bytes());
                        out.extend_from_slice(b"\":");
                        json_str(v, out);
                    }
                }
                out.extend_from_slice(b"}\n");
            }
            Layout::Text => {
                rfc3339_micros(at, out);
                out.extend_from_slice(b"  INFO access method=");
                out.extend_from_slice(self.method.as_bytes());
                out.extend_from_slice(b" path=");
                text_value(self.path, out);
                let _ = write!(out, " status={} duration_ms={}.{:03}", self.status, ms.0, ms.1);
                if let Some(b) = self.bytes {
                    let _ = write!(out, " bytes={b}");
                }
                if let Some(ip) = self.ip {
                    let _ = write!(out, " ip={ip}");
                }
                for (k, v) in
                    [("client_id", self.client_id), ("route", self.route), ("sub", self.sub), ("reason", self.reason)]
                {
                    if let Some(v) = v {
                        out.push(b' ');
                        out.extend_from_slice(k.as_bytes());
                        out.push(b'=');
                        text_value(v, out);
                    }
                }
                out.push(b'\n');
            }
        }
    }
}

/// A JSON string, escaped.
pub fn json_str(s: &str, out: &mut Vec<u8>) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// A text-layout value: as it is when it is plain, else quoted and escaped (so a value can never
/// forge another field or a second line).
fn text_value(s: &str, out: &mut Vec<u8>) {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' && b != b'=') {
        out.extend_from_slice(s.as_bytes());
    } else {
        json_str(s, out);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), as `tracing-subscriber` writes its timestamps.
pub fn rfc3339_micros(at: SystemTime, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let d = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
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
            peer_thumbprint: None,
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

    #[test]
    fn the_direct_line_has_the_tracing_events_members_and_escapes_what_it_must() {
        let r = Record {
            method: "POST",
            path: "/a b\"/c",
            status: 401,
            duration_us: 6_912,
            bytes: Some(102),
            ip: Some("203.0.113.7".parse().unwrap()),
            client_id: Some("x\ny=1"),
            route: None,
            sub: None,
            reason: None,
        };
        // 2026-11-30T13:54:22.123456Z
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_796_046_862_123_456);
        let mut out = Vec::new();
        r.write(Layout::Json, at, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["timestamp"], "2026-11-30T13:54:22.123456Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "access");
        assert_eq!(v["path"], "/a b\"/c");
        assert_eq!(v["status"], 401);
        assert_eq!(v["duration_ms"].as_f64(), Some(6.912));
        assert_eq!(v["bytes"], 102);
        assert_eq!(v["ip"], "203.0.113.7");
        assert_eq!(v["client_id"], "x\ny=1");

        let none = Record { bytes: None, ip: None, client_id: None, path: "/p", duration_us: 5, ..r };
        let mut out = Vec::new();
        none.write(Layout::Json, SystemTime::UNIX_EPOCH, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["duration_ms"].as_f64(), Some(0.005));
        assert!(v.get("bytes").is_none() && v.get("ip").is_none() && v.get("client_id").is_none(), "{v}");

        let mut out = Vec::new();
        r.write(Layout::Text, at, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "2026-11-30T13:54:22.123456Z  INFO access method=POST path=\"/a b\\\"/c\" status=401 \
             duration_ms=6.912 bytes=102 ip=203.0.113.7 client_id=\"x\\ny=1\"\n"
        );
    }

    #[test]
    fn civil_dates_across_leap_years_and_centuries() {
        for (secs, want) in [
            (951_782_400u64, "2000-02-29T00:00:00"),
            (4_107_542_399, "2100-02-28T23:59:59"),
            (4_107_542_400, "2100-03-01T00:00:00"),
            (1_709_164_800, "2024-02-29T00:00:00"),
        ] {
            let mut out = Vec::new();
            rfc3339_micros(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs), &mut out);
            assert!(String::from_utf8(out).unwrap().starts_with(want), "{secs}");
        }
    }
}
