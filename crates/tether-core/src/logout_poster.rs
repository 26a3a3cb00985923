//! What the back-channel logout job ([`crate::backchannel`]) needs from HTTP: a POST of a logout
//! token and how it went. The HTTP side lives in the server crate; tests give their own.

use async_trait::async_trait;

/// How a POST went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// A 2xx answer.
    Delivered,
    /// An answer that says the token will never be accepted (400 and the like): not retried.
    Refused(String),
    /// A 5xx, a 429, a timeout, no connection: retried.
    Failed(String),
}

/// Posts `logout_token=…` (the HTTP side lives in the server crate).
#[async_trait]
pub trait LogoutPoster: Send + Sync + std::fmt::Debug {
    /// `guarded`: the URI is a registered client's, so only addresses outside the server's own
    /// networks may be reached (and no redirect followed).
    async fn post(&self, uri: &str, logout_token: &str, guarded: bool) -> Posted;
}
