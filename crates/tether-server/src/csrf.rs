//! Cross-site request forgery defences for the pages' form posts: the signed hidden `csrf` value
//! (a timestamp and a MAC under the provider's form key, bound to what the form is about) and the
//! browser's own word on where a submission comes from (`Sec-Fetch-Site`, `Origin`).

use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderName};
use tether_core::provider::Provider;

use crate::extract::header;

/// A form is valid this long after it was shown.
const FORM_LIFETIME: i64 = 1800;

/// The hidden `csrf` value for a form about `subject`: a timestamp and a MAC over it and the
/// subject (the pending request, or the step and code of a device form).
pub(crate) fn token(p: &Provider, subject: &str) -> String {
    let ts = p.now();
    format!("{ts}.{}", p.form_key.mac_b64(format!("{ts}|{subject}").as_bytes()))
}

/// Is `token` a [`token`] for `subject`, issued at most [`FORM_LIFETIME`] seconds ago?
pub(crate) fn verify(p: &Provider, subject: &str, token: &str) -> bool {
    let Some((ts, mac)) = token.split_once('.') else { return false };
    let Ok(t) = ts.parse::<i64>() else { return false };
    let Some(tag) = tether_core::secret::b64url_decode(mac) else { return false };
    let now = p.now();
    t <= now + 60 && now - t <= FORM_LIFETIME && p.form_key.verify(format!("{t}|{subject}").as_bytes(), &tag)
}

/// Login CSRF defence for form posts: browsers say where a submission comes from; a cross-site
/// post is refused. Scripts send neither header and are not browsers to protect.
pub(crate) fn same_origin(p: &Provider, headers: &HeaderMap) -> bool {
    if let Some(site) = header(headers, HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match header(headers, ORIGIN) {
        None | Some("null") => true,
        Some(o) => {
            let issuer_origin =
                url::Url::parse(p.issuer()).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
            o == issuer_origin
                || headers.get(HOST).and_then(|h| h.to_str().ok()).is_some_and(|h| o.ends_with(&format!("://{h}")))
        }
    }
}
