//! Client authentication at the token, introspection and revocation endpoints (RFC 6749 §2.3,
//! RFC 7591 §2 method names). One module per `token_endpoint_auth_method`; [`authenticate`] finds
//! which one the request used, refuses requests that use two, and checks that it fits the method
//! the client is registered for (either secret method for a secret client).
//!
//! **No client enumeration** (RFC 6749 §5.2, security hardening): every failure that depends on
//! the client — an unknown `client_id`, a wrong secret, the wrong method, a certificate that does
//! not fit, a public client where a confidential one is needed — answers the same `invalid_client`
//! with the one description [`FAILED`]; the reason goes to [`OAuthError::source`], which the HTTP
//! adapter logs (never the secret). An unknown client still has its presented secret hashed, so
//! the CPU work does not tell it apart from a known one. Only failures that say nothing about any
//! client (no credentials at all, a malformed `Authorization` header, two methods at once) keep
//! their own description.

pub mod client_secret_basic;
pub mod client_secret_jwt;
pub mod client_secret_post;
pub mod jwt_bearer;
pub mod none;
pub mod private_key_jwt;
pub mod self_signed_tls_client_auth;
pub mod tls_client_auth;

use std::sync::Arc;

use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::model::{AppRecord, AuthMethod};
use crate::provider::Provider;

/// The credentials a request carried, before they are checked. `Debug` shows the client, never
/// the secret.
pub enum Presented<'a> {
    Basic {
        client_id: String,
        secret: crate::secret::Secret,
    },
    Post {
        client_id: &'a str,
        secret: &'a str,
    },
    /// A signed JWT (`private_key_jwt` or `client_secret_jwt`, by the JWS `alg`).
    Jwt {
        client_id: String,
        assertion: &'a str,
        method: AuthMethod,
    },
    None {
        client_id: &'a str,
    },
}

impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Basic { client_id, .. } => write!(f, "Basic {{ client_id: {client_id:?}, secret: [redacted] }}"),
            Presented::Post { client_id, .. } => write!(f, "Post {{ client_id: {client_id:?}, secret: [redacted] }}"),
            Presented::Jwt { client_id, method, .. } => {
                write!(f, "Jwt {{ client_id: {client_id:?}, method: {method} }}")
            }
            Presented::None { client_id } => write!(f, "None {{ client_id: {client_id:?} }}"),
        }
    }
}

/// Work out which method a request used. `authorization` is the raw `Authorization` header.
pub fn presented<'a>(form: &'a Form, authorization: Option<&str>) -> Result<Presented<'a>, OAuthError> {
    let basic = client_secret_basic::parse(authorization)?;
    let post_secret = form.get("client_secret");
    if let Some(jwt) = assertion(form)? {
        if basic.is_some() || post_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "the client authenticated twice (client_assertion and a client secret); use one method",
            ));
        }
        let named = jwt_bearer::named_client(jwt);
        let client_id = match (form.get("client_id"), named) {
            (Some(form_id), Some(named)) if form_id != named => {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the client the client_assertion names (its sub)",
                ));
            }
            (Some(id), _) => id.to_string(),
            (None, Some(named)) => named,
            (None, None) => {
                return Err(OAuthError::invalid_client(
                    "the client_assertion is not a JWT naming its client (sub), and the body has no client_id",
                ));
            }
        };
        let hmac = jwt_bearer::parse(jwt).is_ok_and(|a| a.alg.starts_with("HS"));
        let method = if hmac { AuthMethod::ClientSecretJwt } else { AuthMethod::PrivateKeyJwt };
        return Ok(Presented::Jwt { client_id, assertion: jwt, method });
    }
    match (basic, post_secret) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request(
            "the client authenticated twice (Authorization header and client_secret); use one method",
        )),
        (Some((client_id, secret)), None) => {
            if let Some(form_id) = form.get("client_id")
                && form_id != client_id
            {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the one in the Authorization header",
                ));
            }
            Ok(Presented::Basic { client_id, secret })
        }
        (None, Some(secret)) => {
            let client_id = form.require("client_id")?;
            Ok(Presented::Post { client_id, secret })
        }
        (None, None) => match form.get("client_id") {
            Some(client_id) => Ok(Presented::None { client_id }),
            None => Err(OAuthError::invalid_client(
                "client authentication is required (HTTP Basic, client_secret in the body, or client_id for public clients)",
            )),
        },
    }
}

/// The `client_assertion` of a request that sends one (RFC 7521 §4.2): both parameters or none,
/// and only the JWT bearer type.
fn assertion(form: &Form) -> Result<Option<&str>, OAuthError> {
    match (form.get("client_assertion_type"), form.get("client_assertion")) {
        (None, None) => Ok(None),
        (Some(t), Some(a)) if t == jwt_bearer::ASSERTION_TYPE => Ok(Some(a)),
        (Some(t), Some(_)) => Err(OAuthError::invalid_request(format!(
            "client_assertion_type {t:?} is not supported (use {})",
            jwt_bearer::ASSERTION_TYPE
        ))),
        (Some(_), None) => Err(OAuthError::invalid_request("client_assertion_type without client_assertion")),
        (None, Some(_)) => Err(OAuthError::invalid_request("client_assertion without client_assertion_type")),
    }
}

/// The one description of every client authentication failure that depends on the client.
pub const FAILED: &str = "client authentication failed";

/// A SHA-256 hash (base64url) no secret has: an unknown client's secret is checked against it.
const NO_SUCH_HASH: &str = "unknown-client-0000000000000000000000000000";

/// The uniform `invalid_client` answer, with `detail` kept for the log only.
pub fn failed(client_id: &str, used: AuthMethod, detail: impl std::fmt::Display) -> OAuthError {
    let mut e = OAuthError::invalid_client(FAILED);
    e.source = Some(format!("client authentication failed for client_id {client_id:?} ({used}): {detail}"));
    e
}

impl Presented<'_> {
    pub fn client_id(&self) -> &str {
        match self {
            Presented::Basic { client_id, .. } | Presented::Jwt { client_id, .. } => client_id.as_str(),
            Presented::Post { client_id, .. } | Presented::None { client_id } => client_id,
        }
    }

    pub fn method(&self) -> AuthMethod {
        match self {
            Presented::Basic { .. } => AuthMethod::ClientSecretBasic,
            Presented::Post { .. } => AuthMethod::ClientSecretPost,
            Presented::Jwt { method, .. } => *method,
            Presented::None { .. } => AuthMethod::None,
        }
    }
}

/// Authenticate the client of a request sent to `endpoint` (a path: a client assertion may name
/// that endpoint's URL as its audience). `peer_cert`: the request's client certificate (for the
/// RFC 8705 methods).
pub async fn authenticate(
    p: &Provider,
    form: &Form,
    authorization: Option<&str>,
    peer_cert: Option<&crate::cert::ClientCert>,
    endpoint: &str,
) -> Result<Arc<AppRecord>, OAuthError> {
    let presented = presented(form, authorization)?;
    let (client_id, used) = (presented.client_id().to_owned(), presented.method());
    check(p, presented, peer_cert, endpoint).await.map_err(|e| match e.code {
        ErrorCode::InvalidClient => failed(&client_id, used, e.description),
        _ => e,
    })
}

/// [`authenticate`] after the credentials were found; its `invalid_client` errors carry the reason,
/// which [`authenticate`] moves to the log.
async fn check(
    p: &Provider,
    presented: Presented<'_>,
    peer_cert: Option<&crate::cert::ClientCert>,
    endpoint: &str,
) -> Result<Arc<AppRecord>, OAuthError> {
    let Some(app) = p.find_app(presented.client_id()).await? else {
        // The same work as for a known client: hash what was presented.
        std::hint::black_box(match &presented {
            Presented::Basic { secret, .. } => crate::secret::verify_secret(secret.expose(), NO_SUCH_HASH),
            Presented::Post { secret, .. } => crate::secret::verify_secret(secret, NO_SUCH_HASH),
            Presented::Jwt { .. } | Presented::None { .. } => false,
        });
        return Err(OAuthError::invalid_client("unknown client"));
    };
    let registered = app.app.auth_method;
    let used = presented.method();
    // The two secret methods carry the same secret with the same strength; like Keycloak and WSO2
    // we accept either for a secret client (openid-client, for one, defaults to
    // client_secret_post). Everything else must be the registered method.
    let secret_method = |m: AuthMethod| matches!(m, AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost);
    // A certificate-authenticated client names itself with client_id, like a public one.
    let cert_client = matches!(registered, AuthMethod::SelfSignedTlsClientAuth | AuthMethod::TlsClientAuth)
        && used == AuthMethod::None;
    if used != registered && !(secret_method(used) && secret_method(registered)) && !cert_client {
        return Err(OAuthError::invalid_client(format!(
            "this client is registered for {registered} authentication but the request used {used}"
        )));
    }
    match presented {
        Presented::Basic { secret, .. } => client_secret_basic::verify(&app, secret.expose(), p.now())?,
        Presented::Post { secret, .. } => client_secret_post::verify(&app, secret, p.now())?,
        Presented::Jwt { assertion, method: AuthMethod::ClientSecretJwt, .. } => {
            client_secret_jwt::verify(p, &app, assertion, endpoint).await?
        }
        Presented::Jwt { assertion, .. } => private_key_jwt::verify(p, &app, assertion, endpoint).await?,
        Presented::None { .. } if registered == AuthMethod::TlsClientAuth => {
            tls_client_auth::verify(p, &app, peer_cert)?
        }
        Presented::None { .. } if cert_client => self_signed_tls_client_auth::verify(p, &app, peer_cert)?,
        Presented::None { .. } => none::verify(&app)?,
    }
    Ok(app)
}
