//! `client_secret_basic` (RFC 6749 §2.3.1): HTTP Basic with the form-urlencoded client id and
//! secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::OAuthError;
use crate::model::AppRecord;
use crate::secret::Secret;

/// `Ok(None)` when there is no Basic header; an error when there is one and it is malformed.
pub fn parse(authorization: Option<&str>) -> Result<Option<(String, Secret)>, OAuthError> {
    let Some(h) = authorization else { return Ok(None) };
    let h = h.trim();
    let Some((scheme, rest)) = h.split_once(' ') else { return Ok(None) };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let bad = || OAuthError::invalid_client("malformed HTTP Basic credentials");
    let raw = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| -> String {
        form_urlencoded::parse(format!("v={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    let id = decode(id);
    if id.is_empty() {
        return Err(bad());
    }
    Ok(Some((id, Secret::new(decode(secret)))))
}

pub fn verify(app: &AppRecord, secret: &str, now: i64) -> Result<(), OAuthError> {
    super::client_secret_post::verify(app, secret, now)
}
