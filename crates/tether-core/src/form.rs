//! `application/x-www-form-urlencoded` request bodies, parsed strictly: a parameter sent twice is an
//! error (RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once"),
//! except those the RFCs allow to repeat (`resource`, RFC 8707 §2).

use crate::error::OAuthError;

#[derive(Default, Clone)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

/// Names only: a form carries passwords, codes, refresh tokens and client secrets, and a `Debug`
/// print must never put them in a log.
impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.pairs.iter().map(|(k, _)| (k, "[redacted]"))).finish()
    }
}

const REPEATABLE: &[&str] = &["resource", "audience"];

impl Form {
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(body) {
            if !REPEATABLE.contains(&k.as_ref()) && pairs.iter().any(|(pk, _)| pk == &k) {
                return Err(OAuthError::invalid_request(format!("parameter {k} is included more than once")));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self { pairs })
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    /// The value, with empty values treated as absent (RFC 6749 §3.1).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty()).collect()
    }

    pub fn require(&self, key: &str) -> Result<&str, OAuthError> {
        self.get(key).ok_or_else(|| OAuthError::invalid_request(format!("missing parameter: {key}")))
    }

    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn duplicates_refused_except_resource() {
        assert!(Form::parse(b"a=1&a=2").is_err());
        let f = Form::parse(b"resource=x&resource=y&b=%2B+").unwrap();
        assert_eq!(f.get_all("resource"), vec!["x", "y"]);
        assert_eq!(f.get("b"), Some("+ "));
        assert_eq!(Form::parse(b"c=").unwrap().get("c"), None);
    }
}
#[cfg(test)]
mod debug_tests {
    #[test]
    fn debug_prints_no_values() {
        let f = super::Form::parse(b"grant_type=password&password=hunter2&code=abc").unwrap();
        let d = format!("{f:?}");
        assert!(d.contains("password") && !d.contains("hunter2") && !d.contains("abc"), "{d}");
    }
}
