//! Errors as the protocol speaks them: a closed set of RFC error codes, a description meant for the
//! client, and (never shown to the client) a private source. HTTP status mapping lives in the
//! adapter; this module only says which code it is (ARCHITECTURE.md pattern 5).

use std::fmt;

/// RFC 6749 §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1, RFC 8707 §2, RFC 8628 §3.5, RFC 9449 §7 codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    /// RFC 9101 §6.3.
    InvalidRequestObject,
    /// RFC 7591 §3.2.2.
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidToken,
    InsufficientScope,
    AccessDenied,
    UnsupportedTokenType,
    LoginRequired,
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    InvalidDpopProof,
    UseDpopNonce,
    TemporarilyUnavailable,
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidRequestObject => "invalid_request_object",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::LoginRequired => "login_required",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::ExpiredToken => "expired_token",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error the client may see.
#[derive(Debug)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    /// Private detail for logs; never sent.
    pub source: Option<String>,
    /// A fresh DPoP nonce for the `DPoP-Nonce` header (RFC 9449 §8).
    pub dpop_nonce: Option<String>,
    /// Seconds for `Retry-After`: with `temporarily_unavailable` a 503, with any other code a
    /// throttle's 429.
    pub retry_after: Option<i64>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self { code, description: description.into(), source: None, dpop_nonce: None, retry_after: None }
    }
    /// Answer with `Retry-After: secs`.
    pub fn retry_after(mut self, secs: i64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, d)
    }
    pub fn invalid_token(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidToken, d)
    }
    /// An internal failure: the client sees a generic text, the detail goes to the log only.
    pub fn server(detail: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::ServerError,
            description: "the server could not complete the request".into(),
            source: Some(detail.into()),
            dpop_nonce: None,
            retry_after: None,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for OAuthError {}

/// Storage failures, as the protocol layer needs to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy: the request may be retried (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was hit (e.g. a username that exists).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    /// A stored row holds a value this version cannot read (an unknown enum text, bad JSON): the
    /// row is reported, never read as some default.
    #[error("corrupt row in {table}.{column}: {detail}")]
    Corrupt { table: &'static str, column: &'static str, detail: String },
    /// Anything else: a bug or corrupt data.
    #[error("storage error: {0}")]
    Other(String),
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(d) => Self {
                code: ErrorCode::TemporarilyUnavailable,
                description: "the database is temporarily unavailable; retry shortly".into(),
                source: Some(d),
                dpop_nonce: None,
                retry_after: Some(1),
            },
            other => OAuthError::server(other.to_string()),
        }
    }
}

pub type OAuthResult<T> = Result<T, OAuthError>;
