//! Device authorization (RFC 8628, token-binding.md B-8) without HTTP: the device authorization
//! endpoint, and the verification step a signed-in user takes on the device page.
//!
//! The `device_code` is a 256-bit secret; the `user_code` is 8 letters from a 20-letter alphabet
//! without vowels (RFC 8628 §6.1: no words, no look-alikes), about 34.6 bits, so wrong entries
//! are throttled by the page. Both are stored only as hashes (B-11).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::client_auth;
use crate::error::OAuthError;
use crate::form::Form;
use crate::grant;
use crate::model::{AppRecord, GrantType};
use crate::provider::Provider;
use crate::secret::{Secret, hash_secret, random_bytes};
use crate::store::{DeviceRecord, DeviceStatus, SessionRecord};

pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const USER_CODE_LEN: usize = 8;

/// A uniformly random user code (rejection sampling: 240 is the largest multiple of 20 ≤ 256).
pub fn new_user_code() -> String {
    let mut out = String::with_capacity(USER_CODE_LEN);
    while out.len() < USER_CODE_LEN {
        for b in random_bytes::<16>() {
            if b < 240 && out.len() < USER_CODE_LEN {
                out.push(USER_CODE_ALPHABET[usize::from(b % 20)] as char);
            }
        }
    }
    out
}

/// What the user typed, compared case- and dash-insensitively (spaces ignored too); `None` if it
/// cannot be a user code at all.
pub fn normalize_user_code(input: &str) -> Option<String> {
    let s: String = input.chars().filter(|c| *c != '-' && !c.is_whitespace()).map(|c| c.to_ascii_uppercase()).collect();
    (s.len() == USER_CODE_LEN && s.bytes().all(|b| USER_CODE_ALPHABET.contains(&b))).then_some(s)
}

/// `XXXX-XXXX`.
pub fn display_user_code(normalized: &str) -> String {
    if normalized.len() == USER_CODE_LEN {
        format!("{}-{}", &normalized[..4], &normalized[4..])
    } else {
        normalized.to_string()
    }
}

/// `POST /oauth2/device_authorize` (RFC 8628 §3.1–3.2).
///
/// Returns the answer and the client that authenticated (`None` when none did), for the access log.
pub async fn authorize(
    p: &Provider,
    form: &Form,
    authorization: Option<&str>,
    peer_cert: Option<&crate::cert::ClientCert>,
) -> (Option<String>, Result<Value, OAuthError>) {
    let mut client_id = None;
    let answer = device_authorization(p, form, authorization, peer_cert, &mut client_id).await;
    (client_id, answer)
}

async fn device_authorization(
    p: &Provider,
    form: &Form,
    authorization: Option<&str>,
    peer_cert: Option<&crate::cert::ClientCert>,
    client_id: &mut Option<String>,
) -> Result<Value, OAuthError> {
    let app = client_auth::authenticate(p, form, authorization, peer_cert, super::paths::DEVICE_AUTHORIZE).await?;
    *client_id = Some(app.app.client_id.clone());
    if !app.app.allows_grant(GrantType::DeviceCode) {
        return Err(OAuthError::unauthorized_client("this client is not allowed the device_code grant"));
    }
    let scopes = grant::requested_scopes(&app.app, form)?;
    let audience = grant::requested_audience(&app.app, form)?;
    let now = p.now();
    let device_code = Secret::generate();
    // A collision with a live code is astronomically unlikely; still, never hand out a duplicate.
    let mut user_code = new_user_code();
    for _ in 0..4 {
        if p.store.find_device_by_user_code(&hash_secret(&user_code), now).await?.is_none() {
            break;
        }
        user_code = new_user_code();
    }
    let rec = DeviceRecord {
        device_hash: device_code.hash(),
        user_code_hash: hash_secret(&user_code),
        client_id: app.app.client_id.clone(),
        scope: crate::scope::canonical(&scopes),
        audience,
        expires_at: now + p.config.device_expires_in,
        interval: p.config.device_interval,
        last_polled: None,
        status: DeviceStatus::Pending,
        user_id: None,
        session_id: None,
        auth_time: None,
    };
    p.store.insert_device(&rec).await?;
    let shown = display_user_code(&user_code);
    let verification_uri = format!("{}/oauth2/device", p.issuer());
    let complete = format!("{verification_uri}?user_code={shown}");
    Ok(json!({
        "device_code": device_code.expose(),
        "user_code": shown,
        "verification_uri": verification_uri,
        "verification_uri_complete": complete,
        "expires_in": p.config.device_expires_in,
        "interval": p.config.device_interval,
    }))
}

/// The pending authorization a typed user code names, with its app; `None` when the code is
/// malformed, unknown, expired or already decided (the page says so without telling which).
pub async fn pending(p: &Provider, input: &str) -> Result<Option<(DeviceRecord, Arc<AppRecord>)>, OAuthError> {
    let Some(norm) = normalize_user_code(input) else { return Ok(None) };
    let Some(rec) = p.store.find_device_by_user_code(&hash_secret(&norm), p.now()).await? else { return Ok(None) };
    if rec.status != DeviceStatus::Pending {
        return Ok(None);
    }
    let Some(app) = p.find_app(&rec.client_id).await? else { return Ok(None) };
    Ok(Some((rec, app)))
}

/// The signed-in user approves or denies. False when it was decided meanwhile.
pub async fn decide(
    p: &Provider,
    rec: &DeviceRecord,
    approve: bool,
    session: &SessionRecord,
) -> Result<bool, OAuthError> {
    let user = p.store.get_user(&session.user_id).await?;
    if user.as_ref().is_none_or(|u| u.user.disabled) {
        return Err(OAuthError::new(crate::error::ErrorCode::AccessDenied, "this account cannot approve devices"));
    }
    let decided =
        p.store.decide_device(&rec.device_hash, approve, &session.user_id, &session.id, session.auth_time).await?;
    if decided {
        let kind = if approve { crate::audit::kind::DEVICE_APPROVED } else { crate::audit::kind::DEVICE_DENIED };
        let actor = crate::audit::Actor::client(&rec.client_id).with_user(user.map(|u| u.user.username).as_deref());
        p.event(kind, &actor, json!({"target": rec.client_id}));
    }
    Ok(decided)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes() {
        let c = new_user_code();
        assert_eq!(c.len(), 8);
        assert_eq!(normalize_user_code(&c).as_deref(), Some(c.as_str()));
        let shown = display_user_code(&c);
        assert_eq!(shown.len(), 9);
        assert_eq!(normalize_user_code(&shown.to_lowercase()).as_deref(), Some(c.as_str()));
        assert_eq!(normalize_user_code("bcdf ghjk").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalize_user_code("ABCD-EFGH"), None, "vowels are not in the alphabet");
        assert_eq!(normalize_user_code("BCDF-GHJ"), None);
    }
}
