//! `loadgen`: a closed-loop HTTP/1.1 load generator for the gateway benchmark (`bench/gateway`).
//!
//! ```text
//! loadgen --url URL [--connect ADDR] [--connections 64] [--duration 10] [--warmup 2]
//!         [--header 'Name: value']... [--cacert PEM] [--cert PEM --key PEM] [--timeout 10]
//! ```
//!
//! Opens `--connections` keep-alive HTTP/1.1 connections (plain TCP for `http://`; rustls for
//! `https://`, trusting only `--cacert`, ALPN `http/1.1`, presenting the client certificate when
//! `--cert`/`--key` are given). Each connection sends `GET` requests for the URL's path and query
//! back to back: the next request leaves as soon as the previous response has been read in full.
//! `--connect` sends the TCP connection to another address while the URL's host still gives SNI,
//! the name the server certificate is checked against and the `Host` header.
//!
//! The first `--warmup` seconds are not measured (connection set-up and TLS handshakes fall there);
//! a request is measured when it starts and ends within the following `--duration` seconds.
//! Prints one JSON line on stdout:
//!
//! ```text
//! {"requests":N,"errors":E,"non2xx":..,"failed":..,"rps":R,"p50_ms":..,"p99_ms":..,"max_ms":..}
//! ```
//!
//! `requests` counts every response received in the window (whatever its status; latencies are
//! taken over the same set), `rps` is `requests / duration`; `errors` = `non2xx` (responses
//! outside 2xx) + `failed` (connection or protocol errors and timeouts; the connection is then
//! replaced). The first non-2xx response and the first failure are printed to stderr once each, so
//! that a misconfigured run is obvious. The percentiles are `null` when nothing was received.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use http::header::{HOST, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsConnector;

#[derive(Parser)]
#[command(name = "loadgen", about = "Closed-loop HTTP/1.1 load generator; prints one JSON line")]
struct Args {
    /// Target URL, http:// or https://; its path and query are requested with GET
    #[arg(long)]
    url: String,
    /// Open the TCP connections to this address instead of resolving the URL's host (the host
    /// still gives SNI, the name checked in the server certificate and the Host header)
    #[arg(long, value_name = "ADDR")]
    connect: Option<SocketAddr>,
    /// Concurrent keep-alive connections, each with one request in flight
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Extra request header "Name: value" (repeatable)
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// PEM file with the CA certificate(s) to trust for https:// (required for https://)
    #[arg(long, value_name = "PEM")]
    cacert: Option<PathBuf>,
    /// PEM client certificate (chain) to present
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key of --cert
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Seconds after which a request (or a connection attempt) counts as failed
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

/// Everything a connection task needs, shared read-only.
struct Target {
    addr: SocketAddr,
    /// The TLS connector and the server name (SNI, certificate check) for https://.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Origin-form request target (path and query).
    path: Uri,
    /// Host plus the --header values, cloned into every request.
    headers: HeaderMap,
    timeout: Duration,
}

/// The measured interval.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, from: Instant, to: Instant) -> bool {
        from >= self.start && to <= self.end
    }
}

/// What one connection task saw in the window.
#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    non2xx: u64,
    failed: u64,
}

static NON2XX_REPORTED: AtomicBool = AtomicBool::new(false);
static FAILURE_REPORTED: AtomicBool = AtomicBool::new(false);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let warmup = seconds(args.warmup, "--warmup")?;
    let duration = seconds(args.duration, "--duration")?;
    if duration.is_zero() {
        bail!("--duration must be more than 0");
    }
    let target = Arc::new(Target::new(&args).await?);

    // Fail fast on a wrong address, CA or client certificate rather than reporting a run in
    // which every request failed.
    drop(timeout(target.timeout, connect(&target)).await.context("connection attempt timed out")??);

    let start = Instant::now() + warmup;
    let window = Window { start, end: start + duration };
    let tasks: Vec<_> = (0..args.connections).map(|_| tokio::spawn(worker(Arc::clone(&target), window))).collect();
    let mut latencies = Vec::new();
    let (mut non2xx, mut failed) = (0u64, 0u64);
    for task in tasks {
        let stats = task.await.context("a connection task panicked")?;
        latencies.extend_from_slice(&stats.latencies_us);
        non2xx += stats.non2xx;
        failed += stats.failed;
    }
    latencies.sort_unstable();

    let requests = latencies.len();
    let rps = requests as f64 / duration.as_secs_f64();
    let line = json!({
        "requests": requests,
        "errors": non2xx + failed,
        "non2xx": non2xx,
        "failed": failed,
        "rps": round(rps, 1),
        "p50_ms": percentile_ms(&latencies, 50.0),
        "p99_ms": percentile_ms(&latencies, 99.0),
        "max_ms": latencies.last().map(|&us| round(f64::from(us) / 1000.0, 3)),
    });
    println!("{line}");
    Ok(())
}

impl Target {
    async fn new(args: &Args) -> anyhow::Result<Target> {
        let uri: Uri = args.url.parse().with_context(|| format!("invalid --url {:?}", args.url))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("--url must start with http:// or https://, got {:?}", args.url),
        };
        let authority = uri.authority().context("--url has no host")?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path: Uri = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .parse()
            .context("invalid path in --url")?;

        let addr = match args.connect {
            Some(addr) => addr,
            None => tokio::net::lookup_host((host, port))
                .await
                .with_context(|| format!("cannot resolve {host}"))?
                .next()
                .with_context(|| format!("{host} resolves to no address"))?,
        };

        let mut headers = HeaderMap::new();
        // host[:port] as written in the URL, without any userinfo.
        let host_header = authority.as_str().rsplit_once('@').map_or(authority.as_str(), |(_, h)| h);
        headers.insert(HOST, HeaderValue::from_str(host_header).context("host of --url")?);
        for h in &args.headers {
            let (name, value) = h.split_once(':').with_context(|| format!("--header {h:?} is not 'Name: value'"))?;
            let name =
                HeaderName::from_bytes(name.trim().as_bytes()).with_context(|| format!("header name in {h:?}"))?;
            let value = HeaderValue::from_str(value.trim()).with_context(|| format!("header value in {h:?}"))?;
            if name == HOST {
                headers.insert(name, value);
            } else {
                headers.append(name, value);
            }
        }

        let tls = if https {
            let config = tls_config(args)?;
            let name = ServerName::try_from(host.to_owned())
                .with_context(|| format!("{host:?} is not a valid TLS server name"))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Target { addr, tls, path, headers, timeout: seconds(args.timeout, "--timeout")? })
    }
}

/// The TLS client configuration: aws-lc-rs, only the given CA, optional client certificate.
fn tls_config(args: &Args) -> anyhow::Result<rustls::ClientConfig> {
    let ca = args.cacert.as_deref().context("https:// needs --cacert (the CA of the server certificate)")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).with_context(|| format!("unusable CA certificate in {}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .with_context(|| format!("client certificate {} / key {}", cert.display(), key.display()))?,
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection makes a full handshake (and presents the certificate): connections are
    // long-lived here, and the server's view of the client certificate never depends on tickets.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("bad PEM in {}", path.display()))?
        .with_context(|| format!("no private key in {}", path.display()))
}

/// One connection's loop: (re)connect when needed, then requests back to back until the window
/// closes.
async fn worker(target: Arc<Target>, window: Window) -> Stats {
    let mut stats = Stats::default();
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    while Instant::now() < window.end {
        if conn.is_none() {
            let attempt = Instant::now();
            let result = match timeout(target.timeout, connect(&target)).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!("connecting timed out after {:?}", target.timeout)),
            };
            match result {
                Ok(sender) => conn = Some(sender),
                Err(e) => {
                    failure(&mut stats, window, attempt, &e).await;
                    continue;
                }
            }
        }
        let Some(sender) = conn.as_mut() else { continue };
        // A connection the server closed after its last response (`Connection: close`, idle
        // timeout) is replaced without counting a failure: no request was lost on it.
        let ready = timeout(target.timeout, sender.ready()).await;
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(_closed)) => {
                conn = None;
                continue;
            }
            Err(_) => {
                conn = None;
                let e = anyhow::anyhow!("connection not ready after {:?}", target.timeout);
                failure(&mut stats, window, Instant::now(), &e).await;
                continue;
            }
        }

        let started = Instant::now();
        let result = match timeout(target.timeout, request(&target, sender)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("request timed out after {:?}", target.timeout)),
        };
        let finished = Instant::now();
        match result {
            Ok(status) => {
                if window.contains(started, finished) {
                    stats.latencies_us.push(micros(finished - started));
                    if !status.is_success() {
                        stats.non2xx += 1;
                    }
                }
            }
            Err(e) => {
                conn = None;
                failure(&mut stats, window, started, &e).await;
            }
        }
    }
    stats
}

/// Counts a failure that started in the window, reports the first one, and backs off a little so
/// that a dead server does not turn the loop into a busy spin.
async fn failure(stats: &mut Stats, window: Window, started: Instant, e: &anyhow::Error) {
    if window.contains(started, Instant::now()) {
        stats.failed += 1;
    }
    if !FAILURE_REPORTED.swap(true, Ordering::Relaxed) {
        eprintln!("loadgen: first failed request: {e:#}");
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A new HTTP/1.1 connection (TCP, then TLS for https://).
async fn connect(target: &Target) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let tcp = TcpStream::connect(target.addr).await.with_context(|| format!("cannot connect to {}", target.addr))?;
    tcp.set_nodelay(true)?;
    match &target.tls {
        None => http1_handshake(tcp).await,
        Some((connector, name)) => {
            let tls = connector
                .connect(name.clone(), tcp)
                .await
                .with_context(|| format!("TLS handshake with {} ({})", target.addr, name.to_str()))?;
            http1_handshake(tls).await
        }
    }
}

async fn http1_handshake<S>(stream: S) -> anyhow::Result<SendRequest<Empty<Bytes>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("HTTP/1.1 handshake")?;
    // The connection future drives the socket; it ends when the sender is dropped or the peer
    // closes, and the sender then reports the error.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One GET on a ready connection, its response body read in full (so that the connection can
/// be reused).
async fn request(target: &Target, sender: &mut SendRequest<Empty<Bytes>>) -> anyhow::Result<StatusCode> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = target.path.clone();
    *req.headers_mut() = target.headers.clone();
    let resp = sender.send_request(req).await.context("request failed")?;
    let status = resp.status();
    let www_authenticate = if status.is_success() { None } else { resp.headers().get(WWW_AUTHENTICATE).cloned() };
    let body = resp.into_body().collect().await.context("reading the response body")?.to_bytes();
    if !status.is_success() && !NON2XX_REPORTED.swap(true, Ordering::Relaxed) {
        let shown = &body[..body.len().min(2000)];
        eprintln!(
            "loadgen: first non-2xx response: {status}{}\n{}",
            www_authenticate
                .map(|v| format!("\nwww-authenticate: {}", String::from_utf8_lossy(v.as_bytes())))
                .unwrap_or_default(),
            String::from_utf8_lossy(shown),
        );
    }
    Ok(status)
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{flag} must be a non-negative number of seconds"))
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Nearest-rank percentile of sorted microsecond values, in milliseconds.
fn percentile_ms(sorted_us: &[u32], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted_us.len() as f64).ceil() as usize;
    let us = sorted_us[rank.clamp(1, sorted_us.len()) - 1];
    Some(round(f64::from(us) / 1000.0, 3))
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}
