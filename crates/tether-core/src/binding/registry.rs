//! The binder of each binding type: the one place that lists them, and the helpers that answer
//! per-type questions for a stored binding (its `cnf`, its `token_type`, which types a browser
//! logout spares).

use serde_json::{Value, json};

use super::{SessionTie, TokenBinder, certificate, client_request, cookie, device_flow, dpop, none, sso_session};
use crate::model::BindingType;
use crate::store::BindingRecord;

/// The binder of a binding type. Exhaustive: a new [`BindingType`] variant does not compile
/// until it has a line here.
pub fn binder(kind: BindingType) -> &'static dyn TokenBinder {
    match kind {
        BindingType::None => &none::NoBinding,
        BindingType::Cookie => &cookie::Cookie,
        BindingType::SsoSession => &sso_session::SsoSession,
        BindingType::Certificate => &certificate::Certificate,
        BindingType::DeviceFlow => &device_flow::DeviceFlow,
        BindingType::ClientRequest => &client_request::ClientRequest,
        BindingType::Dpop => &dpop::Dpop,
    }
}

/// Every binder, in [`BindingType::ALL`] order.
pub fn all() -> impl Iterator<Item = &'static dyn TokenBinder> {
    BindingType::ALL.iter().map(|k| binder(*k))
}

/// The stored form of a binding value of `kind` (public value kept for `cnf` when the type has
/// one).
pub fn record(kind: BindingType, value: &str) -> BindingRecord {
    super::record(kind, value, binder(kind).cnf_member().is_some())
}

/// The `cnf` claim (RFC 7800) of a bound token, for the binding types that have one (B-4).
pub fn cnf(b: &BindingRecord) -> Option<Value> {
    let member = binder(b.kind).cnf_member()?;
    let v = b.cnf.as_ref()?;
    Some(json!({ member: v }))
}

/// `token_type` of an access token with this binding (RFC 6749 §7.1, RFC 9449 §5).
pub fn token_type(b: Option<&BindingRecord>) -> &'static str {
    b.map(|b| binder(b.kind).token_type()).unwrap_or("Bearer")
}

/// B-6: the binding types whose tokens a browser logout never revokes.
pub fn spared_by_logout() -> Vec<BindingType> {
    all().filter(|b| b.session_tie() == SessionTie::Never).map(|b| b.kind()).collect()
}

/// Binding types whose tokens end with their login session whatever the app's flags.
pub fn tied_to_session() -> Vec<BindingType> {
    all().filter(|b| b.session_tie() == SessionTie::Always).map(|b| b.kind()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_its_own_binder() {
        for k in BindingType::ALL {
            assert_eq!(binder(*k).kind(), *k);
        }
    }

    #[test]
    fn cnf_and_token_type_agree() {
        for k in BindingType::ALL {
            let r = record(*k, "value");
            let has_cnf = cnf(&r).is_some();
            assert_eq!(has_cnf, matches!(k, BindingType::Certificate | BindingType::Dpop), "{k}");
            assert_eq!(token_type(Some(&r)) == "DPoP", *k == BindingType::Dpop, "{k}");
        }
        assert_eq!(token_type(None), "Bearer");
        assert_eq!(spared_by_logout(), vec![BindingType::DeviceFlow, BindingType::ClientRequest]);
        assert_eq!(tied_to_session(), vec![BindingType::SsoSession]);
    }
}
