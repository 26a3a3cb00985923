//! `tether gateway --config FILE`: the HTTPS listener (requesting, never requiring, a client
//! certificate), the [`crate::GuardLayer`], and the proxy to `upstream`; around them the access
//! log (`[log] access`, `tether_tls::access`), which names the verified token's client and, from
//! a `trusted_proxies` peer, the forwarded client address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, Response};
use tether_core::clock::SharedClock;
use tether_tls::access::{AccessLogLayer, AuthenticatedClient};
use tether_tls::{accept as tls, pki};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::guard::Authenticated;
use crate::guard::Guard;
use crate::layer::GuardLayer;
use crate::proxy;

pub struct Running {
    pub addr: SocketAddr,
    pub guard: Arc<Guard>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The gateway as a router: guard, then proxy.
pub fn router(guard: Arc<Guard>) -> Router {
    let client = proxy::client();
    let g = guard.clone();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let g = g.clone();
        let client = client.clone();
        async move {
            let remote = req.extensions().get::<tls::ConnInfo>().map(|c| c.remote);
            let mut req = req;
            let Some(who) = req.extensions_mut().remove::<Authenticated>() else {
                return Ok::<Response<Body>, Infallible>(
                    g.reject(crate::guard::Rejection::invalid_token("not authenticated")),
                );
            };
            let mut resp = proxy::forward(&g, &client, req, &who, remote).await;
            // The access log names the verified token's client.
            if let Some(c) = who.client_id {
                resp.extensions_mut().insert(AuthenticatedClient(c));
            }
            Ok(resp)
        }
    });
    let guarded = tower::ServiceBuilder::new().layer(GuardLayer::new(guard.clone())).service(svc);
    // A request target the proxy cannot forward (`OPTIONS *`, authority form) is refused before
    // any token is checked. An answer to HEAD carries no body (the gateway's own refusals have
    // one; over HTTP/2 nothing strips it, and the client would see a protocol error instead).
    let svc = tower::service_fn(move |req: Request<Body>| {
        let guarded = guarded.clone();
        let g = guard.clone();
        async move {
            let head = req.method() == http::Method::HEAD;
            let resp = if req.uri().path().starts_with('/') {
                tower::ServiceExt::oneshot(guarded, req).await?
            } else {
                let r = crate::guard::Rejection::invalid_request(
                    "only origin-form request targets (/path?query) can be forwarded",
                );
                g.reject(r)
            };
            Ok::<Response<Body>, Infallible>(if head { resp.map(|_| Body::empty()) } else { resp })
        }
    });
    Router::new().fallback_service(svc)
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
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {} (listen): {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut cfg = cfg;
    if cfg.listen.port() == 0 && cfg.public_url.ends_with(":0") {
        // `public_url` defaults to https:// + listen; with an ephemeral port use the real one.
        cfg.public_url = format!("{}{}", cfg.public_url.trim_end_matches(":0"), format_args!(":{}", addr.port()));
    }
    let guard = Arc::new(Guard::open(cfg, clock).await?);
    // Warm the issuer's metadata; an unreachable issuer is not fatal (requests get 503 until it answers).
    if let Err(crate::issuer::IssuerError::Unreachable(e)) = guard.issuer.endpoints().await {
        tracing::warn!(error = %e, "the issuer is not reachable yet; requests will get 503 until it is");
    }
    let limits = guard.cfg.limits();
    let (tx, rx) = watch::channel(false);
    let app = router(guard.clone());
    let app = if guard.cfg.access_log {
        let trusted = tether_tls::client_cert::ProxyCertConfig::parse(None, &guard.cfg.trusted_proxies)?.trusted;
        app.layer(AccessLogLayer::new(&trusted))
    } else {
        app
    };
    let task = tokio::spawn(tls::serve(listener, Some(tls_cfg), app, rx, Duration::from_secs(20), limits));
    Ok(Running { addr, guard, shutdown: tx, task })
}
