//! OpenID Connect Back-Channel Logout 1.0: when a login session ends, every app that holds tokens
//! from it and registered a `backchannel_logout_uri` receives a `logout_token` by a direct POST,
//! so a resource server or an app's back end learns of the logout at once rather than at its next
//! introspection.
//!
//! "A session ends" means every way: RP-initiated logout, an operator ending it (admin API, or a
//! user disabled or deleted), another user signing in on the same browser, its lifetime or its idle
//! timeout running out. Rather than hook each of those paths (and miss the ones that are only the
//! clock), one background job ([`run_once`], every second on every node) asks the store for the
//! sessions that ended since it last looked ([`Store::queue_logouts`]: a `logout_pending` mark on
//! each session started by this version) and queues one delivery per app in the database. The
//! queue is durable: a node that dies mid-delivery leaves the row, and another node takes it when
//! its claim lapses ([`LEASE`]); a claim is exclusive, so exactly one node posts each attempt.
//!
//! Each attempt is signed anew (`iat` now, `exp` [`TOKEN_LIFETIME`] later, so a receiver never
//! sees a stale token) with the same `jti` (the delivery's id, so a receiver can drop a
//! duplicate). A 2xx answer ends the delivery; a 5xx, a 429, a timeout or a connection failure is
//! retried with exponential backoff ([`backoff`]) for up to [`GIVE_UP_AFTER`] seconds; any other
//! answer (400: the receiver refused the token) is not retried. A delivery given up leaves an
//! audit event (`logout.backchannel_failed`).
//!
//! The token: header `typ: logout+jwt`, signed with the app's ID-token algorithm and key; claims
//! `iss`, `aud` (the client_id), `iat`, `exp`, `jti`, `sub` (the user id, as in ID tokens), `sid`
//! (the session id, as ID tokens' `sid`), `events` with the back-channel logout event; never
//! `nonce` (§2.4).

use std::sync::Arc;

use serde_json::json;

use crate::audit::{Actor, kind};
use crate::error::OAuthError;
use crate::keys::Alg;
use crate::model::{App, IdTokenAlg};
use crate::provider::Provider;
use crate::store::LogoutDelivery;

pub use crate::logout_poster::{LogoutPoster, Posted};

/// The `events` member's key (§2.4).
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The JWS `typ` (§2.4).
pub const TYP: &str = "logout+jwt";
/// `exp - iat` of a logout token.
pub const TOKEN_LIFETIME: i64 = 120;
/// A delivery is given up this long after it was queued.
pub const GIVE_UP_AFTER: i64 = 600;
/// How long a node's claim on a delivery lasts (beyond a post's timeout).
pub const LEASE: i64 = 30;
/// Sessions looked at and deliveries claimed per run.
const BATCH: u32 = 100;

/// Seconds before attempt `attempts + 1`: 1, 2, 4 … 64, then every 64 s.
pub fn backoff(attempts: i64) -> i64 {
    1 << attempts.clamp(0, 6)
}

/// A logout token for one delivery, signed now with the app's ID-token key.
pub fn logout_token(p: &Provider, app: &App, d: &LogoutDelivery) -> Result<String, OAuthError> {
    let alg = match app.id_token_alg {
        IdTokenAlg::RS256 => Alg::RS256,
        IdTokenAlg::ES256 => Alg::ES256,
    };
    let now = p.now();
    let mut claims = json!({
        "iss": p.issuer(),
        "aud": app.client_id,
        "iat": now,
        "exp": now + TOKEN_LIFETIME,
        "jti": d.id,
        "events": { EVENT: {} },
    });
    if let Some(sub) = &d.sub {
        claims["sub"] = json!(sub);
    }
    if let Some(sid) = &d.sid {
        claims["sid"] = json!(sid);
    }
    Ok(p.signing_key(alg)?.sign_jwt(TYP, &claims))
}

/// The background job: every second, on every node (the store gives each delivery to one node).
/// `None` when the provider has no poster.
pub fn spawn(p: &Arc<Provider>) -> Option<tokio::task::JoinHandle<()>> {
    let poster = p.config.logout_poster.clone()?;
    let weak = Arc::downgrade(p);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(p) = weak.upgrade() else { return };
            if let Err(e) = run_once(&p, &poster).await {
                tracing::warn!(error = %e.description, "back-channel logout run failed; will retry");
            }
        }
    }))
}

/// One run: queue the logouts of sessions that ended, then post the deliveries that are due.
/// Returns how many were queued and how many posts were made.
pub async fn run_once(p: &Arc<Provider>, poster: &Arc<dyn LogoutPoster>) -> Result<(u64, usize), OAuthError> {
    let now = p.now();
    let targets: Vec<(String, String)> = p
        .store
        .list_apps()
        .await?
        .into_iter()
        .filter_map(|a| a.app.backchannel_logout_uri.map(|u| (a.app.client_id, u)))
        .collect();
    let queued = p.store.queue_logouts(now, now - p.config.session_idle_timeout, &targets, BATCH).await?;
    let due = p.store.claim_logouts(now, now + LEASE, BATCH).await?;
    let posts = due.len();
    // Concurrently: one slow receiver does not hold up the others.
    let mut posting = tokio::task::JoinSet::new();
    for d in due {
        let (p, poster) = (p.clone(), poster.clone());
        posting.spawn(async move { deliver(&p, &*poster, &d).await });
    }
    while let Some(r) = posting.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e.description, "back-channel logout delivery failed; will retry");
        }
    }
    Ok((queued, posts))
}

async fn deliver(p: &Provider, poster: &dyn LogoutPoster, d: &LogoutDelivery) -> Result<(), OAuthError> {
    // An app deleted since (or that dropped its URI) gets nothing.
    let Some(app) = p.find_app(&d.client_id).await? else {
        return Ok(p.store.finish_logout(&d.id).await?);
    };
    if app.app.backchannel_logout_uri.is_none() {
        return Ok(p.store.finish_logout(&d.id).await?);
    }
    let token = logout_token(p, &app.app, d)?;
    let guarded = app.app.registered && !p.config.registration.allow_private_uris;
    let reason = match poster.post(&d.uri, &token, guarded).await {
        Posted::Delivered => return Ok(p.store.finish_logout(&d.id).await?),
        Posted::Refused(why) => why,
        Posted::Failed(why) => {
            let next = p.now() + backoff(d.attempts);
            if next <= d.created_at + GIVE_UP_AFTER {
                tracing::info!(client_id = %d.client_id, attempt = d.attempts + 1, error = %why,
                    "back-channel logout not delivered; will retry");
                return Ok(p.store.retry_logout(&d.id, next, &why).await?);
            }
            format!("{why}; gave up after {} attempts", d.attempts + 1)
        }
    };
    tracing::warn!(client_id = %d.client_id, error = %reason, "back-channel logout given up");
    let detail = json!({"target": d.client_id, "uri": d.uri, "attempts": d.attempts + 1, "reason": reason});
    p.event(kind::LOGOUT_BACKCHANNEL_FAILED, &Actor::default(), detail);
    Ok(p.store.finish_logout(&d.id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_stays_at_a_minute() {
        let seq: Vec<i64> = (0..9).map(backoff).collect();
        assert_eq!(seq, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
        // Within GIVE_UP_AFTER, a receiver that stays down gets about a dozen attempts.
        let mut t = 0;
        let mut n = 0;
        while t + backoff(n) <= GIVE_UP_AFTER {
            t += backoff(n);
            n += 1;
        }
        assert!((8..=16).contains(&n), "{n} attempts");
    }
}
