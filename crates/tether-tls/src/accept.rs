//! The accept loop. It *requests* a client certificate and accepts any parseable one (or none):
//! RFC 8705 binds tokens to self-signed certificates too, so trust is decided per client in the
//! protocol layer, not here. The handshake still proves possession of the certificate's private
//! key (the CertificateVerify signature is checked). Each connection's peer certificate (DER) is
//! handed to handlers as a request extension ([`ConnInfo`]).
//!
//! The loop also keeps every connection within its [`HttpLimits`]: a connection counts against
//! the cap from accept to close; a per-connection watchdog closes it when the header read
//! timeout (handshake and first request, or an HTTP/1.1 head that started) or the idle timeout
//! (no request in flight, HTTP/1.1 and HTTP/2) passes; every request body carries the body read
//! timeout ([`crate::body::ReadTimeoutBody`]). A request counts as in flight from the call of the
//! service to the end of its response body, so slow handlers and long responses are never cut.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::body::ReadTimeoutBody;
pub use crate::limits::HttpLimits;
use crate::pki::TlsMaterial;

/// What a handler may know about the connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub tls: bool,
    /// DER of the client certificate presented in the TLS handshake.
    pub peer_cert: Option<Arc<Vec<u8>>>,
    /// Its `x5t#S256` thumbprint, computed once per connection (a gateway checks it on every
    /// request of the connection).
    pub peer_thumbprint: Option<Arc<str>>,
}

#[derive(Debug)]
struct RequestAnyClientCert {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for RequestAnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map(|_| ClientCertVerified::assertion())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Checked against the certificate's key directly: webpki's certificate parser refuses
        // X.509 v1 certificates, which `openssl x509 -req` still produces by default, and nothing
        // here needs more than the key (trust is decided per client, above TLS).
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let spki = SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &spki,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

pub fn server_config(material: &TlsMaterial, request_client_cert: bool) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(material.chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key: PrivateKeyDer<'static> =
        PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes()).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => "the key file holds no private key".to_string(),
            e => format!("bad private key PEM: {e}"),
        })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if request_client_cert {
        builder.with_client_cert_verifier(Arc::new(RequestAnyClientCert { provider }))
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder.with_single_cert(certs, key).map_err(|e| format!("certificate and key do not match: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Serve `app` on `listener` (TLS when `tls` is set) until `shutdown` turns true; then stop
/// accepting and let in-flight requests finish (up to `grace`). Every connection counts against
/// `limits.connections` (shared with the process's other listeners) and lives under the
/// `limits` timeouts.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    limits: HttpLimits,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    // Every connection task holds a sender; when all are gone, `recv` returns None.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = wait_shutdown(&mut shutdown) => break,
        };
        // Room for this connection: at the cap, it waits here (one per listener) and the next
        // ones wait in the kernel's accept queue, costing the process no file descriptor.
        let permit = tokio::select! {
            p = limits.connections.acquire() => p,
            _ = wait_shutdown(&mut shutdown) => break,
        };
        let accepted = Instant::now();
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _done = done;
            match acceptor {
                Some(acceptor) => {
                    // The handshake counts against the header read timeout.
                    let deadline = accepted + limits.header_read_timeout;
                    let mut stop = shutdown.clone();
                    let handshake = tokio::select! {
                        r = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => r,
                        _ = wait_shutdown(&mut stop) => return,
                    };
                    let tls = match handshake {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake not completed in time");
                            return;
                        }
                    };
                    let peer_cert =
                        tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| Arc::new(c.to_vec()));
                    let peer_thumbprint = peer_cert.as_ref().map(|d| Arc::from(tether_core::cert::thumbprint(d)));
                    let info = ConnInfo { remote, tls: true, peer_cert, peer_thumbprint };
                    serve_connection(tls, info, app, &limits, accepted, shutdown).await;
                }
                None => {
                    let info = ConnInfo { remote, tls: false, peer_cert: None, peer_thumbprint: None };
                    serve_connection(tcp, info, app, &limits, accepted, shutdown).await;
                }
            }
        });
    }
    drop(listener);
    drop(done_tx);
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        tracing::warn!("some connections were still busy after the shutdown grace period");
    }
}

/// Drive one connection: hyper (HTTP/1.1 or HTTP/2) plus the watchdog of [`Activity`], which
/// closes it when a deadline of `limits` passes with no request in flight.
async fn serve_connection<I>(
    io: I,
    info: ConnInfo,
    app: Router,
    limits: &HttpLimits,
    accepted: Instant,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote = info.remote;
    let activity = Arc::new(Activity::new(accepted));
    let body_timeout = limits.body_read_timeout;
    let act = activity.clone();
    let svc = tower::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = act.request_started(req.version());
        let mut req = req.map(|b| ReadTimeoutBody::new(b, body_timeout));
        req.extensions_mut().insert(info.clone());
        let call = app.clone().oneshot(req);
        async move {
            let resp = match call.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(resp.map(|inner| Tracked { inner, _in_flight: in_flight }))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // HTTP/1.1 head and idle timing is the watchdog's (hyper's own header timer would also run
    // between requests). HTTP/2 pings find dead peers while streams are open.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.idle_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    let io = TokioIo::new(WatchedIo { inner: io, activity: activity.clone() });
    let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(svc));
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let deadline = activity.deadline(limits);
        let sleep = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = sleep => {
                let Some(why) = activity.expired(limits, Instant::now()) else { continue };
                tracing::debug!(%remote, reason = why.as_str(), "closing the connection");
                if why == Expired::Idle {
                    // Between requests: close politely (HTTP/2 GOAWAY), briefly.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
                }
                return;
            }
            _ = activity.changed.notified() => {}
            _ = wait_shutdown(&mut shutdown), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Why a connection's deadline passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expired {
    /// No first request (TLS handshake included) within the header read timeout.
    NoRequest,
    /// An HTTP/1.1 request head started but did not end within the header read timeout.
    Head,
    /// No new request within the idle timeout.
    Idle,
}

impl Expired {
    fn as_str(self) -> &'static str {
        match self {
            Expired::NoRequest => "no request within the header read timeout",
            Expired::Head => "request head not completed within the header read timeout",
            Expired::Idle => "idle timeout",
        }
    }
}

/// What the watchdog of one connection knows: requests in flight (from the call of the service
/// to the end of its response body), when the connection went idle, and when the bytes of a new
/// HTTP/1.1 request head started to arrive.
struct Activity {
    state: Mutex<ConnState>,
    /// Reads matter only while an HTTP/1.1 connection is idle (they start the next head).
    watch_reads: AtomicBool,
    changed: Notify,
}

struct ConnState {
    accepted: Instant,
    in_flight: usize,
    served: bool,
    h2: bool,
    idle_since: Instant,
    head_started: Option<Instant>,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Activity {
            state: Mutex::new(ConnState {
                accepted,
                in_flight: 0,
                served: false,
                h2: false,
                idle_since: accepted,
                head_started: None,
            }),
            watch_reads: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn request_started(self: &Arc<Self>, version: http::Version) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.served = true;
        s.head_started = None;
        s.h2 |= version == http::Version::HTTP_2;
        self.watch_reads.store(false, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn request_finished(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            s.head_started = None;
            self.watch_reads.store(!s.h2, Ordering::Relaxed);
            drop(s);
            self.changed.notify_one();
        }
    }

    fn on_read(&self) {
        if !self.watch_reads.load(Ordering::Relaxed) {
            return;
        }
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
            self.watch_reads.store(false, Ordering::Relaxed);
            drop(s);
            self.changed.notify_one();
        }
    }

    fn next(&self, limits: &HttpLimits) -> Option<(Instant, Expired)> {
        let s = self.lock();
        if s.in_flight > 0 {
            None
        } else if !s.served {
            Some((s.accepted + limits.header_read_timeout, Expired::NoRequest))
        } else if let Some(t) = s.head_started {
            Some((t + limits.header_read_timeout, Expired::Head))
        } else {
            Some((s.idle_since + limits.idle_timeout, Expired::Idle))
        }
    }

    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        self.next(limits).map(|(d, _)| d)
    }

    fn expired(&self, limits: &HttpLimits, now: Instant) -> Option<Expired> {
        self.next(limits).filter(|(d, _)| *d <= now).map(|(_, why)| why)
    }
}

/// A request in flight; dropped with its response body (or its handler, if the client left).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its request counted as in flight until it is sent.
struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B: HttpBody + Unpin> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's IO (above TLS), telling [`Activity`] when bytes arrive.
struct WatchedIo<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for WatchedIo<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WatchedIo<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
