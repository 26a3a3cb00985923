//! `tether gateway --config FILE`: the HTTPS listener (requesting, never requiring, a client
//! certificate); per request the path check and the route ([`crate::routes`]), the
//! [`crate::GuardLayer`] with the route's policy, and the proxy to the route's upstream; around
//! them the access log (`[log] access`, `tether_tls::access`, with the route, the token's `sub`
//! and `client_id`, and the rejection reason) and the metrics ([`crate::metrics`]). A second
//! listener, `metrics_listen`, serves `/healthz`, `/readyz` and `/metrics`.
//!
//! **Reload** ([`Running::reload`], on `SIGHUP`): the routes and every policy key (top-level and
//! per route) are swapped at once, between requests, without touching a connection; a file that
//! does not validate is refused and the running configuration kept. Keys the running gateway
//! cannot change (listeners, certificates, the issuer and its credentials, caches, the replay
//! store) are named in a warning and keep their old values until a restart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, Response, StatusCode};
use tether_core::clock::SharedClock;
use tether_tls::access::{AccessLogLayer, AccessNote, AuthenticatedClient};
use tether_tls::{accept as tls, pki};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::guard::{Authenticated, Guard, Rejection};
use crate::layer::GuardLayer;
use crate::metrics::{self, Refused};
use crate::proxy;
use crate::routes::{self, RoutePolicy, Routes};

/// The routes in force; replaced whole by a reload.
pub type SharedRoutes = Arc<RwLock<Arc<Routes>>>;

pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub guard: Arc<Guard>,
    routes: SharedRoutes,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Apply a new configuration's routes and policies (see the module docs). `Err`: it does not
    /// validate; nothing changed.
    pub fn reload(&self, new: &Config) -> Result<(), String> {
        let mut new = new.clone();
        if new.listen.port() == 0 && new.public_url.ends_with(":0") {
            new.public_url = format!("{}:{}", new.public_url.trim_end_matches(":0"), self.addr.port());
        }
        let routes = new.routes()?;
        let old = &self.guard.cfg;
        let fixed: Vec<&str> = [
            ("listen", old.listen != new.listen),
            ("workers", old.workers != new.workers),
            ("metrics_listen", old.metrics_listen != new.metrics_listen),
            ("cert_file", old.cert_file != new.cert_file),
            ("key_file", old.key_file != new.key_file),
            ("issuer", old.issuer != new.issuer),
            ("ca_file", old.ca_file != new.ca_file),
            ("client_id", old.client_id != new.client_id),
            ("client_secret", old.client_secret != new.client_secret),
            ("upstream_ca_file", old.upstream_ca_file != new.upstream_ca_file),
            ("replay_store", old.replay_store != new.replay_store),
            ("session_secret", old.session_secret != new.session_secret),
            ("cache_ttl", old.cache_ttl != new.cache_ttl),
            ("client_ca_file", old.client_ca_file != new.client_ca_file),
            ("trusted_proxies", old.trusted_proxies != new.trusted_proxies),
        ]
        .into_iter()
        .filter_map(|(k, changed)| changed.then_some(k))
        .collect();
        if !fixed.is_empty() {
            tracing::warn!(keys = %fixed.join(", "), "these keys change only at a restart; their old values stay");
        }
        if let Ok(mut r) = self.routes.write() {
            *r = Arc::new(routes);
        }
        tracing::info!("configuration reloaded: routes and policies replaced");
        Ok(())
    }

    /// The routes in force (for tests and the health report).
    pub fn routes(&self) -> Arc<Routes> {
        current(&self.routes)
    }
}

fn current(routes: &SharedRoutes) -> Arc<Routes> {
    routes.read().map(|r| r.clone()).unwrap_or_default()
}

/// The route a request was given (a request extension, for the proxy).
#[derive(Clone)]
struct Matched {
    routes: Arc<Routes>,
    index: usize,
}

/// The gateway as a router: path check and route, guard, then proxy.
pub fn router(guard: Arc<Guard>, routes: SharedRoutes) -> Result<Router, String> {
    let client = proxy::client(guard.cfg.upstream_ca_file.as_deref())?;
    let g = guard.clone();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let g = g.clone();
        let client = client.clone();
        async move {
            let remote = req.extensions().get::<tls::ConnInfo>().map(|c| c.remote);
            let mut req = req;
            let matched = req.extensions_mut().remove::<Matched>();
            let (Some(who), Some(m)) = (req.extensions_mut().remove::<Authenticated>(), matched) else {
                return Ok::<Response<Body>, Infallible>(g.reject(Rejection::invalid_token("not authenticated")));
            };
            let route = &m.routes.routes[m.index];
            let mut resp = proxy::forward(&g, &client, route, req, &who, remote).await;
            // The access log names the verified token's client and subject.
            let note = AccessNote { route: None, sub: who.sub.clone(), reason: None };
            resp.extensions_mut().insert(note);
            if let Some(c) = who.client_id {
                resp.extensions_mut().insert(AuthenticatedClient(c));
            }
            Ok(resp)
        }
    });
    let guarded = tower::ServiceBuilder::new().layer(GuardLayer::new(guard.clone())).service(svc);
    // Before any token is checked: a request target the proxy cannot forward (`OPTIONS *`,
    // authority form) and a path that could reach another route than it seems (encoded
    // slashes, dot-segments) are refused; no route is 404. An answer to HEAD carries no body
    // (the gateway's own refusals have one; over HTTP/2 nothing strips it).
    let unrouted = Arc::new(metrics::RouteMetrics::new("none"));
    let svc = tower::service_fn(move |req: Request<Body>| {
        let guarded = guarded.clone();
        let g = guard.clone();
        let routes = routes.clone();
        let unrouted = unrouted.clone();
        async move {
            let head = req.method() == http::Method::HEAD;
            // HTTP/1 request that announces a body: if the gateway refuses it, the body may be
            // left unread, and the connection cannot carry another request.
            let http1_body = req.version() < http::Version::HTTP_2
                && (req.headers().contains_key(http::header::TRANSFER_ENCODING)
                    || req.headers().get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0"));
            let (mut parts, body) = req.into_parts();
            let all = current(&routes);
            let checked = if !parts.uri.path().starts_with('/') {
                Err(Rejection::invalid_request("only origin-form request targets (/path?query) can be forwarded"))
            } else if let Err(why) = routes::check_path(parts.uri.path()) {
                Err(Rejection::invalid_request(why))
            } else {
                let host = routes::request_host(&parts);
                match all.position(host.as_deref(), parts.uri.path()) {
                    Some(i) => Ok(i),
                    None => Err(Rejection {
                        status: StatusCode::NOT_FOUND,
                        error: Some("not_found"),
                        description: "no route matches this request".into(),
                        headers: Vec::new(),
                    }),
                }
            };
            let routed = checked.as_ref().ok().copied();
            let mut resp = match checked {
                Ok(index) => {
                    let policy: Arc<RoutePolicy> = all.routes[index].policy.clone();
                    parts.extensions.insert(policy);
                    parts.extensions.insert(Matched { routes: all.clone(), index });
                    tower::ServiceExt::oneshot(guarded, Request::from_parts(parts, body)).await?
                }
                Err(r) => g.reject(r),
            };
            let refused = resp.extensions().get::<Refused>().map(|r| r.0);
            let m = match routed {
                Some(i) => &all.routes[i].metrics,
                None => &*unrouted,
            };
            m.answered(resp.status().as_u16(), refused);
            let sub = resp.extensions_mut().remove::<AccessNote>().and_then(|n| n.sub);
            resp.extensions_mut().insert(AccessNote { route: Some(m.route().to_string()), sub, reason: refused });
            // A refusal of a request whose body was not read says it closes the connection
            // (RFC 9112 §9.6), so a client never sends its next request on a connection the
            // server is about to close.
            if http1_body && (refused.is_some() || routed.is_none()) {
                resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Ok::<Response<Body>, Infallible>(if head { resp.map(|_| Body::empty()) } else { resp })
        }
    });
    Ok(Router::new().fallback_service(svc))
}

/// `/healthz` (the process answers), `/readyz` (the issuer's keys are loaded and a route has a
/// healthy upstream) and `/metrics`.
fn ops_router(guard: Arc<Guard>, routes: SharedRoutes) -> Router {
    use axum::routing::get;
    let handle = tether_tls::prometheus::handle();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let guard = guard.clone();
                let routes = routes.clone();
                async move {
                    let keys = guard.issuer.keys_ready(guard.clock.now()).await;
                    let now = proxy::now_ms();
                    let upstream = current(&routes).routes.iter().any(|r| r.any_healthy(now));
                    let body = serde_json::json!({"issuer_keys": keys, "healthy_upstream": upstream});
                    let status = if keys && upstream { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                    (status, axum::Json(body))
                }
            }),
        )
        .route("/metrics", get(move || std::future::ready(handle.render())))
}

/// A listening socket on `addr` that other workers may share (SO_REUSEPORT), as a std listener
/// (each worker registers it with its own runtime).
fn listening_socket(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
        .map_err(|e| e.to_string())?;
    let fail = |e: std::io::Error| format!("cannot listen on {addr} (listen): {e}");
    socket.set_reuseaddr(true).map_err(fail)?;
    #[cfg(unix)]
    socket.set_reuseport(true).map_err(fail)?;
    socket.bind(addr).map_err(fail)?;
    let listener = socket.listen(1024).map_err(fail)?;
    listener.into_std().map_err(fail)
}

/// One worker: a single-threaded runtime serving its own listener, with its own router and
/// upstream connection pool, so a request, its checks and its upstream exchange stay on one thread
/// (no hop between tasks on different cores, memory freed where it was allocated). The guard,
/// its caches and the routes are shared by every worker.
#[allow(clippy::too_many_arguments)]
fn worker(
    socket: std::net::TcpListener,
    guard: Arc<Guard>,
    routes: SharedRoutes,
    tls_cfg: Arc<rustls::ServerConfig>,
    rx: watch::Receiver<bool>,
    limits: tether_tls::limits::HttpLimits,
    trusted: Vec<ipnet::IpNet>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start a gateway worker: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        let prepared = socket
            .set_nonblocking(true)
            .map_err(|e| e.to_string())
            .and_then(|()| tokio::net::TcpListener::from_std(socket).map_err(|e| e.to_string()))
            .and_then(|l| router(guard.clone(), routes).map(|app| (l, app)));
        let (listener, app) = match prepared {
            Ok(x) => x,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let app = if guard.cfg.access_log { app.layer(AccessLogLayer::new(&trusted)) } else { app };
        let _ = ready.send(Ok(()));
        tls::serve(listener, Some(tls_cfg), app, rx, Duration::from_secs(20), limits).await;
    });
}

pub async fn start(cfg: Config, clock: SharedClock) -> Result<Running, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    pki::create_private_dir(&cfg.data_dir)
        .map_err(|e| format!("cannot create data_dir {}: {e}", cfg.data_dir.display()))?;
    let material = match (&cfg.cert_file, &cfg.key_file) {
        (Some(c), Some(k)) => pki::from_files(c, k)?,
        (None, None) => pki::ensure_local(&cfg.data_dir)?,
        _ => return Err("cert_file and key_file must be given together".into()),
    };
    let tls_cfg = tls::server_config(&material, true)?;
    let workers = cfg.workers.max(1);
    // One listening socket per worker, all on the same address (SO_REUSEPORT): the kernel spreads
    // connections over them, and each worker serves its own (see `worker`).
    let first = listening_socket(cfg.listen)?;
    let addr = first.local_addr().map_err(|e| e.to_string())?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(listening_socket(addr)?);
    }
    let metrics_listener = match cfg.metrics_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| format!("cannot listen on {a} (metrics_listen): {e}"))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr()).transpose().map_err(|e| e.to_string())?;
    let mut cfg = cfg;
    if cfg.listen.port() == 0 && cfg.public_url.ends_with(":0") {
        // `public_url` defaults to https:// + listen; with an ephemeral port use the real one.
        cfg.public_url = format!("{}{}", cfg.public_url.trim_end_matches(":0"), format_args!(":{}", addr.port()));
    }
    let routes: SharedRoutes = Arc::new(RwLock::new(Arc::new(cfg.routes()?)));
    let guard = Arc::new(Guard::open(cfg, clock).await?);
    // Warm the issuer's metadata; an unreachable issuer is not fatal (requests get 503 until it answers).
    if let Err(crate::issuer::IssuerError::Unreachable(e)) = guard.issuer.endpoints().await {
        tracing::warn!(error = %e, "the issuer is not reachable yet; requests will get 503 until it is");
    }
    let limits = guard.cfg.limits();
    let (tx, rx) = watch::channel(false);
    let trusted = tether_tls::client_cert::ProxyCertConfig::parse(None, &guard.cfg.trusted_proxies)?.trusted;
    let mut tasks = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let (guard, routes, tls_cfg, rx, limits, trusted) =
            (guard.clone(), routes.clone(), tls_cfg.clone(), rx.clone(), limits.clone(), trusted.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name(format!("tether-gw-{i}"))
            .spawn(move || {
                worker(socket, guard, routes, tls_cfg, rx, limits, trusted, ready_tx);
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start a gateway worker thread: {e}"))?;
        ready_rx.recv().map_err(|_| "a gateway worker stopped at start".to_string())??;
        tasks.push(tokio::spawn(async move {
            let _ = done_rx.await;
        }));
    }
    if let Some(l) = metrics_listener {
        let ops = ops_router(guard.clone(), routes.clone());
        tasks.push(tokio::spawn(tls::serve(l, None, ops, rx, Duration::from_secs(5), limits)));
    }
    Ok(Running { addr, metrics_addr, guard, routes, shutdown: tx, tasks })
}
