//! The resource-side check (RFC 6750, RFC 8705 §3, RFC 9449 §7, gateway.md G-1 and G-3 to G-6):
//! what a protected resource does with a presented access token, shared by Tether's own
//! userinfo endpoint and the gateway, so the two can never disagree.
//!
//! 1. [`extract`] the credentials: one `Authorization` header (`Bearer` or `DPoP` scheme) or an
//!    `access_token` form field (RFC 6750 §2.2), never the query string, never two at once.
//! 2. The caller validates the token its own way (a store lookup; a JWT signature or
//!    introspection) and states what it is bound to as a [`Confirmation`].
//! 3. [`check`] demands the proof of possession, in one fixed order: the scheme fits the token
//!    (a `jkt`-bound token only with `DPoP`, `DPoP` only with a `jkt`-bound token, strict modes);
//!    the DPoP proof (one header, every §4.3 check with `ath`), its key against `cnf.jkt`, then
//!    its `jti` is spent; then the client certificate against `cnf.x5t#S256`. **A bound token
//!    never passes without its proof**, whatever the modes; the modes only decide what unbound
//!    tokens get.
//! 4. Failures are [`Refusal`]s; [`challenges`] builds the `WWW-Authenticate` values, with the one
//!    list of DPoP algorithms ([`crate::dpop::ALGS`]). Status codes are the adapters' business.
//!
//! Everything here takes plain values (header bytes, strings), so it needs no HTTP framework.

use async_trait::async_trait;
use serde_json::Value;

use crate::dpop::ProofOk;
use crate::error::{ErrorCode, OAuthError};
use crate::secret::ct_eq;
use crate::store::BindingRecord;
use crate::token::MAX_TOKEN_LEN;

/// How the client sent the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Dpop,
}

/// A presented access token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub token: String,
    pub scheme: Scheme,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("token", &"[redacted]").field("scheme", &self.scheme).finish()
    }
}

/// Why a request is refused.
#[derive(Debug)]
pub enum Refusal {
    /// No credentials at all: a challenge without an error code (RFC 6750 §3.1).
    NoCredentials,
    /// Anything else, with its RFC code.
    Error(OAuthError),
}

impl From<OAuthError> for Refusal {
    fn from(e: OAuthError) -> Self {
        Refusal::Error(e)
    }
}

impl Refusal {
    pub fn error(&self) -> Option<&OAuthError> {
        match self {
            Refusal::NoCredentials => None,
            Refusal::Error(e) => Some(e),
        }
    }
}

/// What proof an unbound token needs (gateway.md G-4/G-5: `proof_of_possession_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopMode {
    Off,
    Optional,
    Strict,
}

impl PopMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => Self::Off,
            "optional" => Self::Optional,
            "strict" => Self::Strict,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub mtls: PopMode,
    pub dpop: PopMode,
}

impl Policy {
    /// Tether's own endpoints: bound tokens are proven, unbound ones pass.
    pub const OPTIONAL: Policy = Policy { mtls: PopMode::Optional, dpop: PopMode::Optional };
}

/// What a token is bound to, as its `cnf` claim says (RFC 7800).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    pub x5t: Option<String>,
    pub jkt: Option<String>,
}

impl Confirmation {
    /// From a token's claims (a JWT payload or an introspection response): `cnf` absent, empty
    /// or with exactly one member Tether knows.
    pub fn from_claims(claims: &Value) -> Result<Self, OAuthError> {
        let m = match claims.get("cnf") {
            None | Some(Value::Null) => return Ok(Self::default()),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(OAuthError::invalid_token("the token's cnf claim must be an object")),
        };
        if m.is_empty() {
            return Ok(Self::default());
        }
        if m.len() != 1 {
            return Err(OAuthError::invalid_token("the token's cnf claim must hold exactly one confirmation"));
        }
        let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        let c = Self { x5t: s("x5t#S256"), jkt: s("jkt") };
        if c == Self::default() {
            return Err(OAuthError::invalid_token(
                "the token is bound by a confirmation method this resource does not know",
            ));
        }
        Ok(c)
    }

    /// From a stored binding (through its binder's `cnf`).
    pub fn of(b: Option<&BindingRecord>) -> Self {
        let cnf = b.and_then(crate::binding::registry::cnf).map(|c| serde_json::json!({ "cnf": c }));
        cnf.and_then(|c| Self::from_claims(&c).ok()).unwrap_or_default()
    }
}

/// How DPoP proofs are verified and spent where the check runs (the authorization server's
/// issuer URLs and database; the gateway's public URL and replay store).
#[async_trait]
pub trait ProofChecker: Send + Sync {
    /// Every check of RFC 9449 §4.3 but replay, for `method` at `path` with `ath` of `token`.
    fn verify(&self, proof: &str, method: &str, path: &str, token: &str) -> Result<ProofOk, OAuthError>;
    /// Remember the proof's `jti`; `invalid_dpop_proof` when it was seen before.
    async fn spend(&self, ok: &ProofOk) -> Result<(), OAuthError>;
}

/// Where the credentials may be.
#[derive(Default)]
pub struct Sources<'a> {
    /// Every `Authorization` header value.
    pub authorization: Vec<&'a [u8]>,
    /// An `access_token` in the query string.
    pub query_token: bool,
    /// An `access_token` form field (RFC 6750 §2.2).
    pub form_token: Option<&'a str>,
}

fn malformed() -> OAuthError {
    OAuthError::invalid_token("malformed access token")
}

fn token_value(t: &str) -> Result<String, OAuthError> {
    let t = t.trim();
    if t.is_empty() || t.len() > MAX_TOKEN_LEN {
        return Err(malformed());
    }
    Ok(t.to_string())
}

/// Step 1: the credentials. `Ok(None)`: none at all.
pub fn extract(src: &Sources<'_>) -> Result<Option<Credentials>, OAuthError> {
    if src.authorization.len() > 1 {
        return Err(OAuthError::invalid_request("more than one Authorization header"));
    }
    let header = src.authorization.first();
    let ways = usize::from(header.is_some()) + usize::from(src.form_token.is_some()) + usize::from(src.query_token);
    if ways > 1 {
        return Err(OAuthError::invalid_request("the access token was sent in more than one way"));
    }
    if src.query_token {
        return Err(OAuthError::invalid_request(
            "send the access token in the Authorization header, not the query string",
        ));
    }
    if let Some(t) = src.form_token {
        return Ok(Some(Credentials { token: token_value(t)?, scheme: Scheme::Bearer }));
    }
    let Some(raw) = header else { return Ok(None) };
    let v =
        std::str::from_utf8(raw).map_err(|_| OAuthError::invalid_request("the Authorization header is not text"))?;
    let (scheme, token) =
        v.trim().split_once(' ').ok_or_else(|| OAuthError::invalid_token("malformed Authorization header"))?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(OAuthError::invalid_token(format!(
            "unsupported authorization scheme {scheme:?} (use Bearer or DPoP)"
        )));
    };
    Ok(Some(Credentials { token: token_value(token)?, scheme }))
}

/// The request as the proof-of-possession check sees it.
pub struct ResourceRequest<'a> {
    pub method: &'a str,
    /// The path the client addressed (the checker adds its own public base URL).
    pub path: &'a str,
    pub credentials: &'a Credentials,
    /// Every `DPoP` header value.
    pub dpop: Vec<&'a [u8]>,
    /// `x5t#S256` of the request's client certificate, when it presented one.
    pub cert_thumbprint: Option<&'a str>,
}

fn dpop_invalid(d: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidDpopProof, d)
}

/// Step 3: the proof of possession for a token bound as `cnf` says, in the fixed order.
pub async fn check(
    req: &ResourceRequest<'_>,
    cnf: &Confirmation,
    policy: Policy,
    proofs: &dyn ProofChecker,
) -> Result<(), OAuthError> {
    let scheme = req.credentials.scheme;
    match (&cnf.jkt, scheme) {
        (Some(_), Scheme::Bearer) => {
            return Err(OAuthError::invalid_token(
                "the access token is DPoP-bound and must be sent with the DPoP scheme and a proof",
            ));
        }
        (None, Scheme::Dpop) => {
            return Err(OAuthError::invalid_token(
                "the DPoP scheme was used with an access token that is not DPoP-bound",
            ));
        }
        (None, Scheme::Bearer) if policy.dpop == PopMode::Strict => {
            return Err(OAuthError::invalid_token("a DPoP-bound access token is required"));
        }
        (Some(jkt), Scheme::Dpop) => {
            let proof = match req.dpop.as_slice() {
                [] => return Err(dpop_invalid("the DPoP header is missing")),
                [one] => std::str::from_utf8(one).map_err(|_| dpop_invalid("the DPoP header is not text"))?,
                _ => return Err(dpop_invalid("more than one DPoP header")),
            };
            let ok = proofs.verify(proof, req.method, req.path, &req.credentials.token)?;
            if !ct_eq(ok.jkt.as_bytes(), jkt.as_bytes()) {
                return Err(dpop_invalid(
                    "the DPoP proof is not signed with the key the access token is bound to (jkt)",
                ));
            }
            proofs.spend(&ok).await?;
        }
        (None, Scheme::Bearer) => {}
    }
    match (&cnf.x5t, req.cert_thumbprint) {
        (Some(bound), Some(presented)) if !ct_eq(bound.as_bytes(), presented.as_bytes()) => {
            Err(OAuthError::invalid_token("the client certificate thumbprint does not match the x5t#S256 claim"))
        }
        (Some(_), Some(_)) => Ok(()),
        (Some(_), None) => Err(OAuthError::invalid_token(
            "the access token is bound to a client certificate (x5t#S256) and none was presented",
        )),
        (None, None) if policy.mtls == PopMode::Strict => {
            Err(OAuthError::invalid_token("a client certificate is required"))
        }
        (None, Some(_)) if policy.mtls == PopMode::Strict => {
            Err(OAuthError::invalid_token("x5t#S256 claim required but not found"))
        }
        (None, _) => Ok(()),
    }
}

fn quoted(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect()
}

/// Step 4: the `WWW-Authenticate` challenges of a refusal (RFC 6750 §3, RFC 9449 §7.1): the
/// `Bearer` and/or `DPoP` schemes the resource accepts, the error on the scheme it concerns.
pub fn challenges(realm: &str, refusal: &Refusal, dpop_mode: PopMode) -> Vec<String> {
    let err = refusal.error();
    let attrs = match err {
        Some(e) => format!(", error=\"{}\", error_description=\"{}\"", e.code.as_str(), quoted(&e.description)),
        None => String::new(),
    };
    let dpop_error = err.is_some_and(|e| matches!(e.code, ErrorCode::InvalidDpopProof | ErrorCode::UseDpopNonce));
    let realm = quoted(realm);
    let bearer = format!("Bearer realm=\"{realm}\"{}", if dpop_error { "" } else { &attrs });
    let dpop = format!(
        "DPoP algs=\"{}\", realm=\"{realm}\"{}",
        crate::dpop::ALGS.join(" "),
        if dpop_error || dpop_mode == PopMode::Strict { &attrs } else { "" }
    );
    match dpop_mode {
        PopMode::Strict => vec![dpop],
        _ if dpop_error => vec![dpop, bearer],
        PopMode::Optional => vec![bearer, dpop],
        PopMode::Off => vec![bearer],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(auth: &[&str], query: bool, form: Option<&str>) -> Result<Option<Credentials>, OAuthError> {
        extract(&Sources {
            authorization: auth.iter().map(|s| s.as_bytes()).collect(),
            query_token: query,
            form_token: form,
        })
    }

    #[test]
    fn extraction() {
        assert_eq!(ex(&[], false, None).unwrap(), None);
        let c = ex(&["DPoP abc"], false, None).unwrap().unwrap();
        assert_eq!((c.token.as_str(), c.scheme), ("abc", Scheme::Dpop));
        assert_eq!(ex(&[], false, Some("t")).unwrap().unwrap().scheme, Scheme::Bearer);
        assert_eq!(ex(&["Bearer a", "Bearer b"], false, None).unwrap_err().code, ErrorCode::InvalidRequest);
        assert_eq!(ex(&["Bearer a"], false, Some("b")).unwrap_err().code, ErrorCode::InvalidRequest);
        assert_eq!(ex(&[], true, None).unwrap_err().code, ErrorCode::InvalidRequest);
        assert_eq!(ex(&["Basic x"], false, None).unwrap_err().code, ErrorCode::InvalidToken);
        assert_eq!(ex(&["Bearer "], false, None).unwrap_err().code, ErrorCode::InvalidToken);
        assert!(!format!("{c:?}").contains("abc"));
    }

    #[test]
    fn confirmation_from_claims() {
        let c = Confirmation::from_claims(&serde_json::json!({"cnf": {"jkt": "k"}})).unwrap();
        assert_eq!(c.jkt.as_deref(), Some("k"));
        assert!(Confirmation::from_claims(&serde_json::json!({"cnf": {"x": 1}})).is_err());
        assert!(Confirmation::from_claims(&serde_json::json!({"cnf": {"jkt": "a", "x5t#S256": "b"}})).is_err());
        assert_eq!(Confirmation::from_claims(&serde_json::json!({})).unwrap(), Confirmation::default());
    }

    #[test]
    fn challenge_shapes() {
        let e = Refusal::Error(dpop_invalid("x"));
        let c = challenges("r", &e, PopMode::Optional);
        assert!(c[0].starts_with("DPoP algs=") && c[0].contains("invalid_dpop_proof"), "{c:?}");
        assert!(!c[1].contains("error="));
        let n = challenges("r", &Refusal::NoCredentials, PopMode::Off);
        assert_eq!(n, vec!["Bearer realm=\"r\"".to_string()]);
    }
}
