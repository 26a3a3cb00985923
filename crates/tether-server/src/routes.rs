//! The router: every route (paths from `tether_core::endpoint::paths`), which of them sit behind
//! the health check, CORS for the endpoints browsers call directly (per app: [`crate::cors`]),
//! request metrics, the JSON fallbacks (404, 405), and the separate metrics router.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::handler::Handler;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tether_core::endpoint::paths;
use tether_core::error::OAuthError;
use tether_core::provider::Provider;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::admin_api;
use crate::cors;
use crate::csrf;
use crate::endpoints;
use crate::error::{ApiError, WithStatus};
use crate::health;
use crate::pages::{authorize, device, logout};
use crate::state::{AppState, Options};

/// The main listener's router; with `admin` the admin API too (no `admin_listen`).
pub fn router(p: Arc<Provider>, opts: Options, admin: bool) -> Router {
    let state = AppState { p, opts: Arc::new(opts) };
    let admin_routes = if admin {
        Router::new().nest(paths::ADMIN_API, admin_api::routes()).merge(crate::console::routes(state.clone()))
    } else {
        Router::new()
    };
    // Endpoints that need the database answer 503 while the provider is unhealthy. Userinfo
    // checks for itself, after it has refused requests without credentials.
    let healthy = middleware::from_fn_with_state(state.clone(), health::require_healthy);
    // The pages' forms are bound to a pre-session browser cookie (login CSRF).
    let browser_cookie = middleware::from_fn_with_state(state.clone(), csrf::browser_cookie);
    let origins = state.p.clone();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().map(|o| origins.origin_allowed(o)).unwrap_or(false)
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE, HeaderName::from_static("dpop")])
        .expose_headers([HeaderName::from_static("dpop-nonce"), WWW_AUTHENTICATE])
        .max_age(Duration::from_secs(600));
    let browser = Router::new()
        // OPTIONS routes exist so that the CORS layer (which answers preflights itself) wraps them.
        .route(paths::TOKEN, post(endpoints::token_endpoint.layer(healthy.clone())).options(preflight))
        .route(paths::USERINFO, get(endpoints::userinfo_endpoint).post(endpoints::userinfo_endpoint).options(preflight))
        .route(paths::REVOKE, post(endpoints::revoke_endpoint.layer(healthy.clone())).options(preflight))
        .layer(cors)
        // Outside the CORS layer: an actual request's answer only for its own app's origins.
        .layer(middleware::from_fn_with_state(state.clone(), cors::per_app));
    Router::new()
        .route(paths::OIDC_DISCOVERY, get(endpoints::discovery_endpoint))
        .route(paths::OAUTH_DISCOVERY, get(endpoints::discovery_endpoint))
        .route(paths::JWKS, get(endpoints::jwks_endpoint))
        .route(paths::AUTHORIZE, get(authorize::get).post(authorize::post).layer(browser_cookie.clone()))
        .route(paths::INTROSPECT, post(endpoints::introspect_endpoint.layer(healthy.clone())))
        .route(paths::PAR, post(endpoints::par_endpoint.layer(healthy.clone())))
        .route(paths::DEVICE_AUTHORIZE, post(endpoints::device_authorize.layer(healthy)))
        .route(paths::DEVICE, get(device::get).post(device::post).layer(browser_cookie.clone()))
        .route(paths::LOGOUT, get(logout::get).post(logout::post).layer(browser_cookie))
        .route(paths::HEALTH, get(health::healthz))
        .merge(crate::registration::routes())
        .merge(browser)
        .merge(admin_routes)
        .route_layer(middleware::from_fn(track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The `admin_listen` listener's router: the admin API only (admin-api.md A-1).
pub fn admin_router(p: Arc<Provider>, opts: Options) -> Router {
    let state = AppState { p, opts: Arc::new(opts) };
    Router::new()
        .nest(paths::ADMIN_API, admin_api::routes())
        .merge(crate::console::routes(state.clone()))
        .route(paths::HEALTH, get(health::healthz))
        .route_layer(middleware::from_fn(track))
        .fallback(not_found)
        .with_state(state)
}

pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        paths::METRICS,
        get(move || {
            let h = handle.clone();
            async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()) }
        }),
    )
}

async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let endpoint = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("tether_http_request_duration_seconds", "endpoint" => endpoint.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("tether_http_requests_total", "endpoint" => endpoint, "status" => status).increment(1);
    resp
}

async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn not_found() -> Response {
    ApiError(OAuthError::invalid_request("no such endpoint")).into_response().with_status(StatusCode::NOT_FOUND)
}

async fn method_not_allowed(method: Method) -> Response {
    ApiError(OAuthError::invalid_request(format!("method {method} is not allowed on this endpoint")))
        .into_response()
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
}
