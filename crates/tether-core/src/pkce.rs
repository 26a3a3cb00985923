//! PKCE (RFC 7636). `S256` for everyone; `plain` only for confidential clients.

use crate::error::OAuthError;
use crate::secret::{b64url, ct_eq, sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    S256,
    Plain,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::S256 => "S256",
            Method::Plain => "plain",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "S256" => Some(Method::S256),
            "plain" => Some(Method::Plain),
            _ => None,
        }
    }
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
pub fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

pub fn verify(method: Method, challenge: &str, verifier: &str) -> Result<(), OAuthError> {
    if !valid_verifier(verifier) {
        return Err(OAuthError::invalid_grant("code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]"));
    }
    let computed = match method {
        Method::S256 => b64url(&sha256(verifier.as_bytes())),
        Method::Plain => verifier.to_string(),
    };
    if ct_eq(computed.as_bytes(), challenge.as_bytes()) {
        Ok(())
    } else {
        Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verify(Method::S256, challenge, verifier).is_ok());
        assert!(verify(Method::S256, challenge, &verifier.replace('d', "e")).is_err());
    }
}
