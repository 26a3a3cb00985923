//! `application/x-www-form-urlencoded` request bodies, parsed strictly: a parameter sent twice is an
//! error (RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once"),
//! except those the RFCs allow to repeat (`resource`, RFC 8707 §2).

use std::collections::HashSet;

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
    /// Parse a body, refusing a repeated parameter (the first one that repeats is named). Linear in
    /// the number of parameters: a body of many keys costs no more than its length.
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let mut seen: HashSet<&str> = HashSet::with_capacity(pairs.len());
        for (k, _) in &pairs {
            if !REPEATABLE.contains(&k.as_str()) && !seen.insert(k.as_str()) {
                return Err(OAuthError::invalid_request(format!("parameter {k} is included more than once")));
            }
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

    /// A 64 KiB-class body of 10,000 distinct keys parses (in linear time), keeps its order, and
    /// one repeated key anywhere in it — even the last — is still refused, naming that key.
    #[test]
    fn ten_thousand_keys() {
        let body: String = (0..10_000).map(|i| format!("k{i}=v{i}")).collect::<Vec<_>>().join("&");
        let f = Form::parse(body.as_bytes()).unwrap();
        assert_eq!(f.pairs().len(), 10_000);
        assert_eq!(f.pairs()[0], ("k0".to_string(), "v0".to_string()));
        assert_eq!(f.pairs()[9_999], ("k9999".to_string(), "v9999".to_string()));
        assert_eq!(f.get("k5000"), Some("v5000"));
        let dup = format!("{body}&k42=again");
        let e = Form::parse(dup.as_bytes()).unwrap_err();
        assert!(e.description.contains("parameter k42 is included more than once"), "{}", e.description);
        // The first key to repeat is the one named.
        let e = Form::parse(b"a=1&b=1&b=2&a=2").unwrap_err();
        assert!(e.description.contains("parameter b "), "{}", e.description);
        // Repeatable parameters stay repeatable among many others.
        let many = format!("{body}&resource=https://a.example&resource=https://b.example&audience=x&audience=y");
        let f = Form::parse(many.as_bytes()).unwrap();
        assert_eq!(f.get_all("resource"), vec!["https://a.example", "https://b.example"]);
        assert_eq!(f.get_all("audience"), vec!["x", "y"]);
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
