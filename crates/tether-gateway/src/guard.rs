//! The checks of gateway.md G-1 to G-6, independent of proxying: find the token, validate it
//! (`bearer` JWT against the issuer's JWKS, or `introspection`), then demand its proof of
//! possession. **A token with a `cnf` member never passes without its proof**, whatever the
//! modes; the modes only decide what unbound tokens get.
//!
//! Verified JWTs are cached by token hash until their `exp`, but at most
//! [`crate::issuer::JWKS_MAX_AGE`] seconds, so a busy client does not cost a signature check per
//! request while a key the issuer retires stops verifying within that time; the proof (certificate thumbprint, DPoP) is still checked on
//! every request, since it belongs to the request, not the token.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode, request::Parts};
use serde_json::{Value, json};
use tether_core::cert::ClientCertTrust;
use tether_core::clock::SharedClock;
use tether_core::keys::{parse_jws, verify_with_jwk};
use tether_tls::accept::ConnInfo;
use tether_tls::client_cert::{CaTrust, ProxyCertConfig, inspect};

use tether_core::error::{ErrorCode, OAuthError};
use tether_core::resource::{self, Confirmation, Credentials, Policy, Refusal, ResourceRequest};

use crate::cache::{TokenCache, token_hash};
use crate::config::{AuthMethod, Config};
use crate::dpop::{self, GatewayProofs};
use crate::issuer::{Issuer, IssuerError};
use crate::routes::RoutePolicy;

/// Signature algorithms accepted on access tokens (asymmetric only).
pub const JWT_ALGS: &[&str] =
    &["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"];
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY: i64 = 30;
const MAX_JWT_CACHE: usize = 50_000;

/// A request that passed: who it is for. Inserted as a request extension for inner services.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub token: String,
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    /// Which method validated the token.
    pub method: AuthMethod,
}

impl Authenticated {
    /// A request on an `anonymous` route that sent no token: nothing is forwarded about it.
    pub fn anonymous() -> Self {
        Authenticated { token: String::new(), sub: None, client_id: None, scope: None, method: AuthMethod::Bearer }
    }

    pub fn is_anonymous(&self) -> bool {
        self.token.is_empty()
    }
}

/// A refusal, rendered per G-6. Refusals of the resource-side check are core's
/// [`Refusal`]s, mapped here to a status; the gateway adds its own (413, 502, 503).
#[derive(Debug)]
pub struct Rejection {
    pub status: StatusCode,
    /// `None`: no credentials were sent (the challenge carries no `error`).
    pub error: Option<&'static str>,
    pub description: String,
    /// Extra headers (e.g. `DPoP-Nonce`).
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
}

/// The status of each error code at a resource (RFC 6750 §3.1, RFC 9449 §7.1).
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNAUTHORIZED,
    }
}

impl From<OAuthError> for Rejection {
    fn from(e: OAuthError) -> Self {
        let mut headers = Vec::new();
        if let Some(v) = e.dpop_nonce.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
            headers.push((http::HeaderName::from_static("dpop-nonce"), v));
        }
        Rejection { status: status_of(e.code), error: Some(e.code.as_str()), description: e.description, headers }
    }
}

impl From<Refusal> for Rejection {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::NoCredentials => Rejection::no_credentials(),
            Refusal::Error(e) => e.into(),
        }
    }
}

impl Rejection {
    /// Why a request was refused, as a metric label and in the access log. Decided by the refusal's
    /// status and code, and for `invalid_token` by what the check found.
    pub fn reason(&self) -> &'static str {
        let r = self;
        let d = r.description.to_ascii_lowercase();
        match (r.status, r.error) {
            (_, None) => "no_token",
            (StatusCode::NOT_FOUND, _) => "no_route",
            (StatusCode::BAD_GATEWAY, _) => "upstream_unreachable",
            (StatusCode::SERVICE_UNAVAILABLE, _) => "unavailable",
            (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT, _) => "bad_request",
            (_, Some("insufficient_scope")) => "scope",
            (_, Some("invalid_dpop_proof" | "use_dpop_nonce")) if d.contains("replay") || d.contains("already") => {
                "dpop_replayed"
            }
            (_, Some("invalid_dpop_proof" | "use_dpop_nonce")) => "dpop_invalid",
            _ if d.contains("dpop") => "dpop_invalid",
            _ if d.contains("certificate") => "pop_certificate",
            _ if d.contains("signature") || d.contains("not a valid jwt") || d.contains("does not publish") => {
                "bad_signature"
            }
            _ if d.contains("expired") || d.contains("not valid yet") => "expired",
            _ if d.contains("(aud)") || d.contains("admin api token") || d.contains("not meant for") => "audience",
            _ if d.contains("not active") => "introspection_inactive",
            (StatusCode::BAD_REQUEST, _) => "bad_request",
            _ => "invalid_token",
        }
    }

    fn new(status: StatusCode, error: &'static str, d: impl Into<String>) -> Self {
        Rejection { status, error: Some(error), description: d.into(), headers: Vec::new() }
    }
    pub fn invalid_token(d: impl Into<String>) -> Self {
        OAuthError::invalid_token(d).into()
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        OAuthError::invalid_request(d).into()
    }
    /// A request body that stopped arriving (`[http] body_read_timeout_seconds`): 408.
    pub fn body_timeout() -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "invalid_request", "the request body did not arrive in time")
    }
    pub fn unavailable(d: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", d)
    }
    fn no_credentials() -> Self {
        Rejection {
            status: StatusCode::UNAUTHORIZED,
            error: None,
            description: "no access token in the request".into(),
            headers: Vec::new(),
        }
    }
    /// Back to core's terms, for the challenges.
    fn refusal(&self) -> Refusal {
        let code = match self.error {
            None => return Refusal::NoCredentials,
            Some("invalid_dpop_proof") => ErrorCode::InvalidDpopProof,
            Some("use_dpop_nonce") => ErrorCode::UseDpopNonce,
            Some("invalid_request") => ErrorCode::InvalidRequest,
            Some("insufficient_scope") => ErrorCode::InsufficientScope,
            Some("temporarily_unavailable") => ErrorCode::TemporarilyUnavailable,
            Some(_) => ErrorCode::InvalidToken,
        };
        Refusal::Error(OAuthError::new(code, self.description.clone()))
    }
}

pub struct Guard {
    pub cfg: Config,
    pub issuer: Issuer,
    pub clock: SharedClock,
    proxy_cert: ProxyCertConfig,
    client_trust: Option<CaTrust>,
    /// token hash → (claims, exp)
    jwt_cache: RwLock<TokenCache>,
    realm: String,
    /// The top-level policy (a request that carries no route's).
    pub default_policy: Arc<RoutePolicy>,
    pub(crate) dpop_nonce_key: tether_core::crypto::MacKey,
    pub(crate) replay: dpop::ReplayStore,
}

impl Guard {
    /// The guard, with its DPoP replay store opened (a database when `replay_store` names one).
    pub async fn open(cfg: Config, clock: SharedClock) -> Result<Self, String> {
        let replay = dpop::ReplayStore::open(&cfg.replay_store).await?;
        Self::with_replay(cfg, clock, replay)
    }

    /// With an in-memory replay cache (`replay_store = "memory"`).
    pub fn new(cfg: Config, clock: SharedClock) -> Result<Self, String> {
        let replay = dpop::ReplayStore::Memory(Default::default());
        Self::with_replay(cfg, clock, replay)
    }

    fn with_replay(cfg: Config, clock: SharedClock, replay: dpop::ReplayStore) -> Result<Self, String> {
        let proxy_cert = ProxyCertConfig::parse(cfg.client_cert_header.as_deref(), &cfg.trusted_proxies)
            .map_err(|e| e.replace("[tls] ", ""))?;
        let client_trust =
            cfg.client_ca_file.as_deref().map(CaTrust::load).transpose().map_err(|e| e.replace("[tls] ", ""))?;
        let realm =
            url::Url::parse(&cfg.issuer).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
        let d = cfg.defaults();
        let default_policy = Arc::new(RoutePolicy {
            name: "default".into(),
            auth_methods: d.auth_methods.to_vec(),
            pop_mtls: d.pop_mtls,
            pop_dpop: d.pop_dpop,
            required_scopes: d.required_scopes.to_vec(),
            audience: d.audience.map(str::to_string),
            public_url: d.public_url.to_string(),
            anonymous: false,
        });
        Ok(Guard {
            default_policy,
            issuer: Issuer::new(&cfg)?,
            dpop_nonce_key: dpop::nonce_key(&cfg),
            replay,
            cfg,
            clock,
            proxy_cert,
            client_trust,
            jwt_cache: RwLock::new(HashMap::new()),
            realm,
        })
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The challenges of G-6 for this configuration (core's challenge builder).
    pub fn challenges(&self, r: &Rejection) -> Vec<HeaderValue> {
        resource::challenges(&self.realm, &r.refusal(), self.cfg.pop_dpop)
            .into_iter()
            .filter_map(|v| HeaderValue::from_str(&v).ok())
            .collect()
    }

    /// Render a refusal: status, challenges, JSON body (with `message` for Kong clients), and
    /// `X-Content-Type-Options: nosniff` like every response the gateway writes itself.
    pub fn reject(&self, r: Rejection) -> http::Response<axum::body::Body> {
        let message = match r.status {
            StatusCode::NOT_FOUND => "Not Found",
            StatusCode::UNAUTHORIZED => "Unauthorized",
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::BAD_REQUEST => "Bad Request",
            StatusCode::REQUEST_TIMEOUT => "Request Timeout",
            StatusCode::PAYLOAD_TOO_LARGE => "Payload Too Large",
            StatusCode::BAD_GATEWAY => "Bad Gateway",
            StatusCode::SERVICE_UNAVAILABLE => "Service Unavailable",
            _ => "Error",
        };
        let body = match r.error {
            Some(e) => json!({"error": e, "error_description": r.description, "message": message}),
            None => json!({"message": message}),
        };
        let mut resp = http::Response::new(axum::body::Body::from(body.to_string()));
        *resp.status_mut() = r.status;
        let h = resp.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if matches!(r.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            for c in self.challenges(&r) {
                h.append(WWW_AUTHENTICATE, c);
            }
        }
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        let reason = r.reason();
        for (k, v) in r.headers {
            h.append(k, v);
        }
        resp.extensions_mut().insert(crate::metrics::Refused(reason));
        resp
    }

    /// G-1: the token and how it was sent (core's extraction). `Ok(None)`: no credentials.
    pub fn credentials(&self, parts: &Parts) -> Result<Option<Credentials>, Rejection> {
        let query_token =
            parts.uri.query().is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token"));
        let sources = resource::Sources {
            authorization: parts.headers.get_all(AUTHORIZATION).iter().map(HeaderValue::as_bytes).collect(),
            query_token,
            form_token: None,
        };
        Ok(resource::extract(&sources)?)
    }

    /// The client certificate of the request (G-4): the TLS connection's, or — only from a
    /// trusted proxy — the configured header's; restricted to `client_ca_file` when set.
    /// Returns its `x5t#S256` thumbprint.
    pub fn certificate(&self, parts: &Parts) -> Result<Option<String>, Rejection> {
        let Some(conn) = parts.extensions.get::<ConnInfo>() else { return Ok(None) };
        let forwarded = match self.proxy_cert.forwarded(conn.remote.ip(), &parts.headers) {
            Ok(f) => f,
            Err(e) => return Err(Rejection::invalid_request(e)),
        };
        let der: &[u8] = match &forwarded {
            Some(der) => der,
            // A trusted proxy's own TLS certificate never stands in for its clients'.
            None if self.proxy_cert.from_trusted_proxy(conn.remote.ip()) => return Ok(None),
            None => {
                if self.proxy_cert.header.as_ref().is_some_and(|h| parts.headers.contains_key(h)) {
                    tracing::warn!(peer = %conn.remote, "client certificate header from an untrusted peer ignored");
                }
                match (&conn.peer_cert, &conn.peer_thumbprint, &self.client_trust) {
                    // The hot path: the connection's thumbprint, computed once at its handshake.
                    (_, Some(t), None) => return Ok(Some(t.to_string())),
                    (Some(d), _, _) => d.as_slice(),
                    (None, _, _) => return Ok(None),
                }
            }
        };
        let Some(trust) = &self.client_trust else {
            // The TLS handshake (or the header decoder) already parsed it; the thumbprint is all
            // the proof needs, so the hot path skips a second X.509 parse and any copy.
            return Ok(Some(tether_core::cert::thumbprint(der)));
        };
        let Some(cert) = inspect(der.to_vec()) else {
            return Err(Rejection::invalid_request("the client certificate cannot be parsed"));
        };
        if let Err(e) = trust.verify(&cert, self.now()) {
            tracing::info!(error = %e, "client certificate not accepted (client_ca_file)");
            return Ok(None);
        }
        Ok(Some(cert.thumbprint()))
    }

    /// G-2 `bearer`: a JWT access token signed by the issuer.
    async fn verify_jwt(&self, token: &str) -> Result<Arc<Value>, Rejection> {
        let now = self.now();
        let key = token_hash(token);
        if let Ok(c) = self.jwt_cache.read()
            && let Some((claims, until)) = c.get(&key)
            && now < *until
        {
            return Ok(claims.clone());
        }
        let (header, claims, input, sig) =
            parse_jws(token).ok_or_else(|| Rejection::invalid_token("the access token is not a valid JWT"))?;
        let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
        let typed = typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt");
        if !typed && !(self.cfg.accept_untyped_jwt && (typ.is_empty() || typ.eq_ignore_ascii_case("JWT"))) {
            return Err(Rejection::invalid_token(format!(
                "the token is not a JWT access token (typ {typ:?}, RFC 9068 requires at+jwt)"
            )));
        }
        if claims.get("nonce").is_some() || claims.get("at_hash").is_some() {
            return Err(Rejection::invalid_token("an ID token is not an access token"));
        }
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if !JWT_ALGS.contains(&alg) {
            return Err(Rejection::invalid_token(format!("signature algorithm {alg:?} is not accepted")));
        }
        let kid =
            header.get("kid").and_then(Value::as_str).ok_or_else(|| Rejection::invalid_token("the JWT has no kid"))?;
        let jwk = match self.issuer.key(kid, self.now()).await {
            Ok(Some(k)) => k,
            Ok(None) => {
                return Err(Rejection::invalid_token("the JWT is signed with a key the issuer does not publish"));
            }
            Err(IssuerError::Unreachable(e)) => return Err(self.unreachable(e)),
        };
        if !verify_with_jwk(&jwk, alg, input.as_bytes(), &sig) {
            return Err(Rejection::invalid_token("the JWT signature is invalid"));
        }
        if claims.get("iss").and_then(Value::as_str) != Some(self.cfg.issuer.as_str()) {
            return Err(Rejection::invalid_token("the JWT was issued by another issuer"));
        }
        let exp =
            claims.get("exp").and_then(Value::as_i64).ok_or_else(|| Rejection::invalid_token("the JWT has no exp"))?;
        if now >= exp + LEEWAY {
            return Err(Rejection::invalid_token("the access token has expired"));
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64)
            && now + LEEWAY < nbf
        {
            return Err(Rejection::invalid_token("the access token is not valid yet"));
        }
        let claims = Arc::new(claims);
        if let Ok(mut c) = self.jwt_cache.write() {
            if c.len() >= MAX_JWT_CACHE {
                c.retain(|_, (_, e)| now < *e);
                if c.len() >= MAX_JWT_CACHE {
                    c.clear();
                }
            }
            // Re-verified against the current key set at least every JWKS_MAX_AGE seconds.
            let until = (exp + LEEWAY).min(now + crate::issuer::JWKS_MAX_AGE);
            c.insert(key, (claims.clone(), until));
        }
        Ok(claims)
    }

    fn unreachable(&self, e: String) -> Rejection {
        tracing::warn!(error = %e, "the issuer cannot be reached");
        Rejection::unavailable("the authorization server cannot be reached to validate the token; try again")
    }

    async fn introspect(&self, token: &str) -> Result<Arc<Value>, Rejection> {
        match self.issuer.introspect(token, self.now()).await {
            Ok(v) if v.get("active") == Some(&Value::Bool(true)) => Ok(v),
            Ok(_) => Err(Rejection::invalid_token("the access token is not active (unknown, expired or revoked)")),
            Err(IssuerError::Unreachable(e)) => Err(self.unreachable(e)),
        }
    }

    /// G-2: validate the token with the configured methods; returns its claims (JWT payload or
    /// introspection response) and the method.
    pub async fn validate(&self, token: &str, methods: &[AuthMethod]) -> Result<(Arc<Value>, AuthMethod), Rejection> {
        let jwt_shaped = token.matches('.').count() == 2;
        if jwt_shaped && methods.contains(&AuthMethod::Bearer) {
            let claims = self.verify_jwt(token).await?;
            if self.cfg.introspect_jwt_tokens {
                self.introspect(token).await?;
            }
            return Ok((claims, AuthMethod::Bearer));
        }
        // The session method's tokens (the gateway's own, often opaque) are introspected too.
        if methods.contains(&AuthMethod::Introspection) || methods.contains(&AuthMethod::Session) {
            return Ok((self.introspect(token).await?, AuthMethod::Introspection));
        }
        Err(Rejection::invalid_token("this gateway accepts only JWT access tokens (auth_methods = bearer)"))
    }

    /// G-3 to G-5: the proof of possession (core's resource-side check, in its fixed order),
    /// then the audience and scope requirements.
    pub async fn check_token(
        &self,
        parts: &Parts,
        credentials: &Credentials,
        claims: &Value,
        policy: &RoutePolicy,
    ) -> Result<(), Rejection> {
        let cnf = Confirmation::from_claims(claims)?;
        let thumbprint = self.certificate(parts)?;
        let req = ResourceRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            credentials,
            dpop: parts.headers.get_all("dpop").iter().map(HeaderValue::as_bytes).collect(),
            cert_thumbprint: thumbprint.as_deref(),
        };
        let proofs = GatewayProofs {
            cfg: &self.cfg,
            public_url: &policy.public_url,
            now: self.now(),
            nonce_key: &self.dpop_nonce_key,
            replay: &self.replay,
        };
        resource::check(&req, &cnf, Policy { mtls: policy.pop_mtls, dpop: policy.pop_dpop }, &proofs).await?;
        self.policy(claims, policy)
    }

    /// The checks every admitted token passes, whatever carried it (also a session's): `aud`
    /// when `audience` is configured, then `required_scopes` (403).
    pub fn policy(&self, claims: &Value, policy: &RoutePolicy) -> Result<(), Rejection> {
        // An admin API token (its audience is the issuer's admin API) is never forwarded to an
        // upstream unless the configuration names that audience (admin-api.md A-2).
        let admin_aud = format!("{}{}", self.cfg.issuer, tether_core::endpoint::paths::ADMIN_API);
        let names_admin = match claims.get("aud") {
            Some(Value::String(s)) => *s == admin_aud,
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(admin_aud.as_str())),
            _ => false,
        };
        if names_admin && policy.audience.as_deref() != Some(admin_aud.as_str()) {
            return Err(Rejection::invalid_token("an admin API token is not accepted here"));
        }
        if let Some(aud) = &policy.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(s)) => s == aud,
                Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(aud)),
                _ => false,
            };
            if !ok {
                return Err(Rejection::invalid_token(format!("the access token is not meant for {aud} (aud)")));
            }
        }
        let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
        if let Some(missing) = policy.required_scopes.iter().find(|s| !scope.split(' ').any(|x| x == s.as_str())) {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("the access token lacks the scope {missing:?}"),
            ));
        }
        Ok(())
    }

    /// Every check for one request. `Ok(None)`: no credentials (the caller decides: a session,
    /// or a 401 without `error`).
    pub async fn authenticate(&self, parts: &Parts) -> Result<Option<Authenticated>, Rejection> {
        let policy = self.policy_of(parts);
        let Some(credentials) = self.credentials(parts)? else { return Ok(None) };
        let (claims, method) = self.validate(&credentials.token, &policy.auth_methods).await?;
        self.check_token(parts, &credentials, &claims, &policy).await?;
        Ok(Some(authenticated(credentials.token, &claims, method)))
    }

    /// The policy of a request: its route's (a request extension the gateway's router sets), or
    /// the top-level one (the layer used on its own).
    pub fn policy_of(&self, parts: &Parts) -> Arc<RoutePolicy> {
        parts.extensions.get::<Arc<RoutePolicy>>().cloned().unwrap_or_else(|| self.default_policy.clone())
    }

    /// For callers without a session method: credentials are required.
    pub async fn require(&self, parts: &Parts) -> Result<Authenticated, Rejection> {
        self.authenticate(parts).await?.ok_or_else(Rejection::no_credentials)
    }
}

pub(crate) fn authenticated(token: String, claims: &Value, method: AuthMethod) -> Authenticated {
    let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    Authenticated { token, sub: s("sub"), client_id: s("client_id"), scope: s("scope"), method }
}

/// Remove what a client must never be able to set for the upstream (G-1).
pub fn strip_authenticated_headers(h: &mut HeaderMap) {
    let client_set = |k: &http::HeaderName| k.as_str().starts_with("x-authenticated-");
    // Called on every request: one scan, and nothing allocated unless there is one to remove.
    if !h.keys().any(client_set) {
        return;
    }
    let names: Vec<http::HeaderName> = h.keys().filter(|k| client_set(k)).cloned().collect();
    for n in names {
        h.remove(n);
    }
}

pub(crate) fn no_credentials() -> Rejection {
    Rejection::no_credentials()
}
