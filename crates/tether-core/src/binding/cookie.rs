//! `cookie` binding (B-1, B-2, B-7): the token is bound to a random UUID kept in the browser's
//! `atbv` cookie. The value is fixed at the authorization endpoint when the code is issued (the
//! token request, often from a back end, need not carry the cookie) and stored with the code, so
//! this binder binds nothing by itself: the `authorization_code` grant brings the code's binding,
//! and every other grant is issued unbound.

use super::{BindContext, TokenBinder};
use crate::error::OAuthError;
use crate::model::BindingType;
use crate::provider::Provider;
use crate::secret::random_bytes;

pub const COOKIE: &str = "atbv";

pub struct Cookie;

impl TokenBinder for Cookie {
    fn kind(&self) -> BindingType {
        BindingType::Cookie
    }

    fn bind(&self, _: &BindContext<'_>) -> Result<Option<String>, OAuthError> {
        Ok(None)
    }
}

/// A random UUID v4 (RFC 9562 §5.4), lowercase hyphenated.
pub fn new_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::secret::hex(&b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn is_uuid(v: &str) -> bool {
    v.len() == 36
        && v.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// B-7: the browser's existing `atbv` is kept only if a stored token is bound to it (so a value a
/// third party planted in the cookie is not adopted); otherwise a new one is minted. Returns the
/// value and whether the cookie must be (re)set.
pub async fn value_for(p: &Provider, existing: Option<&str>) -> Result<(String, bool), OAuthError> {
    if let Some(v) = existing.filter(|v| is_uuid(v))
        && p.store.binding_in_use(BindingType::Cookie, &super::binding_ref(v)).await?
    {
        return Ok((v.to_string(), false));
    }
    Ok((new_uuid(), true))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn uuids_are_v4() {
        let u = new_uuid();
        assert!(is_uuid(&u), "{u}");
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(u, new_uuid());
        assert!(!is_uuid("not-a-uuid"));
    }
}
