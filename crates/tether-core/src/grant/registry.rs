//! Every grant this build supports, in the order discovery lists them. The token endpoint finds
//! a request's grant here; adding a grant is one module and one line.

use super::{Grant, authorization_code, client_credentials, device_code, password, refresh_token, token_exchange};

static GRANTS: &[&dyn Grant] = &[
    &authorization_code::AuthorizationCode,
    &refresh_token::RefreshToken,
    &password::Password,
    &client_credentials::ClientCredentials,
    &token_exchange::TokenExchange,
    &device_code::DeviceCode,
];

pub fn all() -> &'static [&'static dyn Grant] {
    GRANTS
}

/// The grant of a `grant_type` wire value.
pub fn find(grant_type: &str) -> Option<&'static dyn Grant> {
    GRANTS.iter().copied().find(|g| g.grant_type().as_str() == grant_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GrantType;

    #[test]
    fn every_grant_type_is_registered_once() {
        for g in GrantType::ALL {
            assert_eq!(GRANTS.iter().filter(|x| x.grant_type() == *g).count(), 1, "{g}");
            assert!(find(g.as_str()).is_some());
        }
        assert!(find("implicit").is_none());
    }
}
