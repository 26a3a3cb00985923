//! CORS for the endpoints browsers call directly (token, userinfo, revocation), per app.
//!
//! A preflight names no app, so it is answered (by `tower_http`'s layer in [`crate::routes`]) for
//! any origin some app registered with `--allowed-origin`. The actual request names its app — the
//! client a token or revocation request names, the client an access token at userinfo was issued
//! to — and its handler tags the answer with it ([`CorsClient`]); [`per_app`] then removes the
//! `Access-Control-Allow-*` headers unless the request's `Origin` is one of *that* app's origins.
//! An answer that names no app (an unknown token, a body that could not be read) is not readable
//! cross-origin.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// The app an answer was given for (a response extension set by the browser endpoints).
#[derive(Clone, Debug)]
pub(crate) struct CorsClient(pub Option<String>);

/// Tag a browser endpoint's answer with the app it answered for.
pub(crate) fn for_client(mut resp: Response, client: Option<String>) -> Response {
    resp.extensions_mut().insert(CorsClient(client));
    resp
}

/// Middleware around the CORS layer: an actual request's answer is readable only from an origin
/// of the app it answered for.
pub(crate) async fn per_app(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let preflight = req.method() == Method::OPTIONS && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    let origin = req.headers().get(ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_owned);
    let mut resp = next.run(req).await;
    let Some(origin) = origin else { return resp };
    if preflight {
        return resp;
    }
    let allowed = resp
        .extensions()
        .get::<CorsClient>()
        .and_then(|c| c.0.as_deref())
        .is_some_and(|client_id| s.p.origin_allowed_for(client_id, &origin));
    if !allowed {
        let h = resp.headers_mut();
        h.remove(ACCESS_CONTROL_ALLOW_ORIGIN);
        h.remove(ACCESS_CONTROL_ALLOW_CREDENTIALS);
        h.remove(ACCESS_CONTROL_EXPOSE_HEADERS);
    }
    resp
}
