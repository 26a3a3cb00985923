//! Posting back-channel logout tokens (OIDC Back-Channel Logout 1.0 §2.5) for the core's queue
//! ([`tether_core::backchannel`], which decides what to send, when, and what to retry).
//! A form POST of `logout_token`, 5 s per attempt, no redirects (the token goes to the URI the
//! app registered and nowhere else), the system's trust anchors, no cookies.

use std::time::Duration;

use async_trait::async_trait;
use tether_core::backchannel::{LogoutPoster, Posted};

#[derive(Debug)]
pub struct HttpLogoutPoster(reqwest::Client);

impl HttpLogoutPoster {
    pub fn new() -> Result<Self, String> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .build()
            .map(HttpLogoutPoster)
            .map_err(|e| format!("cannot build the back-channel logout HTTP client: {e}"))
    }
}

#[async_trait]
impl LogoutPoster for HttpLogoutPoster {
    async fn post(&self, uri: &str, logout_token: &str) -> Posted {
        let sent =
            self.0.post(uri).header("cache-control", "no-store").form(&[("logout_token", logout_token)]).send().await;
        match sent {
            Ok(r) if r.status().is_success() => Posted::Delivered,
            Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                Posted::Failed(format!("HTTP {}", r.status().as_u16()))
            }
            Ok(r) => Posted::Refused(format!("HTTP {}", r.status().as_u16())),
            // Timeouts and connection failures; the error text never holds the token.
            Err(e) => Posted::Failed(if e.is_timeout() { "timed out".into() } else { without_url(&e) }),
        }
    }
}

/// What went wrong, from reqwest's error's causes (its own text repeats the URL, which the
/// delivery row holds already).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = String::from(if e.is_connect() { "cannot connect" } else { "request failed" });
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
