//! Posting back-channel logout tokens (OIDC Back-Channel Logout 1.0 §2.5) for the core's queue
//! ([`tether_core::backchannel`], which decides what to send, when, and what to retry).
//! A form POST of `logout_token`, 5 s per attempt, no redirects (the token goes to the URI the
//! app registered and nowhere else), the system's trust anchors, no cookies; a registered client's
//! URI only to addresses outside the server's networks ([`crate::outbound`]).

use std::time::Duration;

use async_trait::async_trait;
use tether_core::backchannel::{LogoutPoster, Posted};

#[derive(Debug)]
pub struct HttpLogoutPoster {
    plain: reqwest::Client,
    guarded: reqwest::Client,
}

impl HttpLogoutPoster {
    pub fn new() -> Result<Self, String> {
        let t = Duration::from_secs(5);
        Ok(HttpLogoutPoster { plain: crate::outbound::client(t, false)?, guarded: crate::outbound::client(t, true)? })
    }
}

#[async_trait]
impl LogoutPoster for HttpLogoutPoster {
    async fn post(&self, uri: &str, logout_token: &str, guarded: bool) -> Posted {
        // A guard refusal is not retried: the address will not become allowed.
        if guarded && let Some(f) = crate::outbound::literal_forbidden(uri) {
            return Posted::Refused(f.to_string());
        }
        let client = if guarded { &self.guarded } else { &self.plain };
        let sent =
            client.post(uri).header("cache-control", "no-store").form(&[("logout_token", logout_token)]).send().await;
        if let Err(e) = &sent
            && let Some(why) = crate::outbound::is_forbidden(e)
        {
            return Posted::Refused(why);
        }
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
