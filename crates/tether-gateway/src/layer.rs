//! The gateway's checks as a request pipeline and a `tower` layer (G-7): form-body tokens
//! (RFC 6750 §2.2), the session method's callback and cookie, then [`Guard::authenticate`].
//! A token in the `Authorization` header is checked before the body is read; the body is read
//! (bounded in size and by the body read timeout) only for the body-token method, or, once the
//! header's token has passed, to refuse a second token in a form body (G-1).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response};
use tether_core::resource;
use tether_tls::body::{ReadError, ReadTimeoutBody};

use crate::config;
use crate::guard::{self, Guard, Rejection};
use crate::session;

impl Guard {
    /// Run every check for a request. `Ok`: the request (with [`Authenticated`] in its
    /// extensions and client-set `X-Authenticated-*` headers removed) may go on; `Err`: the
    /// response to send instead (a refusal, or the session method's redirects).
    pub async fn handle(&self, req: Request<Body>) -> Result<Request<Body>, Response<Body>> {
        let (mut parts, body) = req.into_parts();
        guard::strip_authenticated_headers(&mut parts.headers);
        // A token in the Authorization header is checked before anything reads the body: a
        // client without a valid token never makes the gateway wait for, or buffer, a body.
        let header_credentials = parts.headers.contains_key(http::header::AUTHORIZATION);
        let mut body = body;
        if !header_credentials {
            body = match self.body_token(&mut parts, body).await {
                Ok(b) => b,
                Err(r) => return Err(self.reject(r)),
            };
        }
        let session = self.cfg.auth_methods.contains(&config::AuthMethod::Session);
        if session && self.cfg.redirect_uri.as_ref().is_some_and(|u| u.path() == parts.uri.path()) {
            return Err(session::callback(self, &parts).await);
        }
        let anonymous = self.policy_of(&parts).anonymous;
        let who = match self.authenticate(&parts).await {
            Ok(Some(a)) => a,
            // An anonymous route needs no token (one that is sent was checked in full above).
            Ok(None) if anonymous => guard::Authenticated::anonymous(),
            Ok(None) if session => match session::from_cookie(self, &parts).await {
                Ok(Some(a)) => a,
                Ok(None) if session::browser_navigation(&parts) => {
                    return Err(session::login_redirect(self, &parts).await);
                }
                Ok(None) => return Err(self.reject(guard::no_credentials())),
                Err(r) => return Err(self.reject(r)),
            },
            Ok(None) => return Err(self.reject(guard::no_credentials())),
            Err(r) => return Err(self.reject(r)),
        };
        if header_credentials {
            // G-1: a token in the header and in a form body as well is ambiguous (400). The body
            // is read for this only now that the header's token has passed.
            body = match self.body_token(&mut parts, body).await {
                Ok(b) => b,
                Err(r) => return Err(self.reject(r)),
            };
        }
        tracing::debug!(sub = ?who.sub, client = ?who.client_id, method = ?who.method, "request admitted");
        parts.extensions.insert(who);
        Ok(Request::from_parts(parts, body))
    }
}

/// Form bodies the gateway reads to look for `access_token` (RFC 6750 §2.2); larger ones are refused.
pub const MAX_FORM_BODY: usize = 1024 * 1024;

impl Guard {
    /// G-1 and RFC 6750 §2.2: a form-encoded body may carry the token (it then counts as a
    /// `Bearer` credential); with an `Authorization` header as well it is ambiguous (400). Only
    /// form bodies are read (and forwarded unchanged), at most [`MAX_FORM_BODY`] bytes and each
    /// byte within the body read timeout; everything else streams untouched.
    async fn body_token(&self, parts: &mut http::request::Parts, body: Body) -> Result<Body, Rejection> {
        let is_form = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        if !is_form || parts.method == http::Method::GET {
            return Ok(body);
        }
        // Bodies that come through `tether_tls::accept` already carry the body read timeout; a
        // service that uses the layer on its own listener gets the gateway's as well.
        let body = ReadTimeoutBody::new(body, self.cfg.body_read_timeout());
        let expects_continue = parts
            .headers
            .get(http::header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
        let bytes =
            tether_tls::body::read_limited(body, MAX_FORM_BODY, !expects_continue).await.map_err(|e| match e {
                ReadError::TooLarge => Rejection {
                    status: http::StatusCode::PAYLOAD_TOO_LARGE,
                    error: Some("invalid_request"),
                    description: format!("form bodies larger than {MAX_FORM_BODY} bytes are not accepted"),
                    headers: Vec::new(),
                },
                ReadError::TimedOut => Rejection::body_timeout(),
                ReadError::Failed(_) => Rejection::invalid_request("the request body could not be read"),
            })?;
        let token = form_urlencoded::parse(&bytes).find(|(k, _)| k == "access_token").map(|(_, v)| v.into_owned());
        if let Some(t) = token {
            // The same extraction rules as every other credential (core's resource check); the
            // token then travels on as a `Bearer` header.
            let sources = resource::Sources {
                authorization: parts
                    .headers
                    .get_all(http::header::AUTHORIZATION)
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect(),
                query_token: false,
                form_token: Some(&t),
            };
            resource::extract(&sources).map_err(Rejection::from)?;
            let v = http::HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                Rejection::from(tether_core::error::OAuthError::invalid_token("malformed access token"))
            })?;
            parts.headers.insert(http::header::AUTHORIZATION, v);
        }
        Ok(Body::from(bytes))
    }
}

/// The gateway's checks as a `tower` layer (G-7).
#[derive(Clone)]
pub struct GuardLayer {
    guard: Arc<Guard>,
}

impl GuardLayer {
    pub fn new(guard: Arc<Guard>) -> Self {
        GuardLayer { guard }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = GuardService<S>;
    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService { guard: self.guard.clone(), inner }
    }
}

#[derive(Clone)]
pub struct GuardService<S> {
    guard: Arc<Guard>,
    inner: S,
}

impl<S> tower::Service<Request<Body>> for GuardService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let guard = self.guard.clone();
        // The ready inner service goes with this call; a fresh clone stays for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match guard.handle(req).await {
                Ok(req) => inner.call(req).await,
                Err(resp) => Ok(resp),
            }
        })
    }
}
