//! Distinguished names for RFC 8705 `tls_client_auth`.
//!
//! An operator registers a client's expected subject as an RFC 4514 string (`CN=svc,O=Acme,C=DE`); the
//! server gets the presented certificate's subject as structured RDNs. The two must be compared as DNs,
//! never as strings: X.509 libraries' display forms are not RFC 4514 (they list RDNs least specific first,
//! use other separators and names, escape differently), and two spellings of one DN (`CN=a, O=b`,
//! `cn=A,o=B`, `2.5.4.3=a,O=b`) must match. [`Dn`] holds RDNs most specific first with attribute types
//! as dotted OIDs; [`Dn::matches`] applies LDAP `caseIgnoreMatch` to text values.

use std::fmt;

/// One attribute value of an RDN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnValue {
    Text(String),
    /// The BER/DER encoding of a non-string value; RFC 4514 writes it as `#` + hex.
    Der(Vec<u8>),
}

/// A distinguished name: RDNs in RFC 4514 order (most specific first), each a list of (OID, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn {
    rdns: Vec<Vec<(String, DnValue)>>,
}

const EMAIL: &str = "1.2.840.113549.1.9.1";

/// Short names and their OIDs. Printing uses the first name listed for an OID; the rest are input aliases.
const ATTRS: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("C", "2.5.4.6"),
    ("STREET", "2.5.4.9"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("emailAddress", EMAIL),
    ("GN", "2.5.4.42"),
    ("SN", "2.5.4.4"),
    ("title", "2.5.4.12"),
    ("postalCode", "2.5.4.17"),
    ("organizationIdentifier", "2.5.4.97"),
    ("E", EMAIL),
    ("givenName", "2.5.4.42"),
    ("surname", "2.5.4.4"),
];

/// A dotted OID per RFC 4512 `numericoid`: at least two arcs, digits only, no leading zeros.
fn is_oid(s: &str) -> bool {
    let arc_ok = |a: &str| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) && (a == "0" || !a.starts_with('0'));
    s.split('.').count() >= 2 && s.split('.').all(arc_ok)
}

/// Maps an attribute type as written (short name, case-insensitive; dotted OID; `OID.` + dotted OID) to its OID.
fn resolve_type(name: &str) -> Result<String, String> {
    if let Some(oid) = name.get(..4).filter(|p| p.eq_ignore_ascii_case("oid.")).and_then(|_| name.get(4..)) {
        let err = || format!("attribute type {name:?} is not a valid OID");
        return if is_oid(oid) { Ok(oid.to_string()) } else { Err(err()) };
    }
    if is_oid(name) {
        return Ok(name.to_string());
    }
    ATTRS
        .iter()
        .find(|(short, _)| short.eq_ignore_ascii_case(name))
        .map(|(_, oid)| (*oid).to_string())
        .ok_or_else(|| format!("attribute type {name:?} is not a known name or an OID"))
}

fn hexval(c: char) -> Option<u8> {
    c.to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// caseIgnoreMatch with insignificant-space handling: trim, collapse runs of whitespace, Unicode lowercase.
fn fold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn ava_eq((ta, va): &(String, DnValue), (tb, vb): &(String, DnValue)) -> bool {
    ta == tb
        && match (va, vb) {
            (DnValue::Text(a), DnValue::Text(b)) => fold(a) == fold(b),
            (DnValue::Der(a), DnValue::Der(b)) => a == b,
            _ => false,
        }
}

struct Parser {
    c: Vec<char>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(' ') {
            self.i += 1;
        }
    }

    /// Reads `type =`, returning (OID, the type as written).
    fn attr_type(&mut self) -> Result<(String, String), String> {
        self.skip_spaces();
        let start = self.i;
        while self.peek().is_some_and(|c| !matches!(c, '=' | ',' | '+')) {
            self.i += 1;
        }
        let name = self.c[start..self.i].iter().collect::<String>().trim_end_matches(' ').to_string();
        match self.peek() {
            Some('=') if name.is_empty() => {
                return Err(format!("missing attribute type before '=' at character {}", self.i + 1));
            }
            Some('=') => self.i += 1,
            None if name.is_empty() => return Err("missing attribute type at the end of the DN".to_string()),
            Some(c) if name.is_empty() => {
                return Err(format!("missing attribute type before {c:?} at character {}", self.i + 1));
            }
            _ => return Err(format!("missing '=' in {name:?}")),
        }
        Ok((resolve_type(&name)?, name))
    }

    /// Reads one attribute value, stopping before ',' or '+' or at the end of the input.
    fn value(&mut self, ty: &str) -> Result<DnValue, String> {
        self.skip_spaces();
        if self.peek() == Some('#') {
            self.i += 1;
            let mut digits = Vec::new();
            while let Some(d) = self.peek().and_then(hexval) {
                digits.push(d);
                self.i += 1;
            }
            if digits.is_empty() || !digits.len().is_multiple_of(2) {
                return Err(format!("the '#' value of {ty} needs an even, non-zero number of hex digits"));
            }
            self.skip_spaces();
            if let Some(c) = self.peek().filter(|c| !matches!(c, ',' | '+')) {
                return Err(format!("unexpected {c:?} at character {} after the '#' hex value of {ty}", self.i + 1));
            }
            return Ok(DnValue::Der(digits.chunks_exact(2).map(|p| (p[0] << 4) | p[1]).collect()));
        }
        // `keep` is the length up to the last escaped or non-space character: unescaped trailing spaces go.
        let (mut bytes, mut keep) = (Vec::new(), 0);
        while let Some(c) = self.peek() {
            match c {
                ',' | '+' => break,
                '\\' => {
                    bytes.push(self.escape()?);
                    keep = bytes.len();
                }
                ';' => {
                    return Err(format!(
                        "';' at character {} is not allowed: RFC 4514 separates RDNs with ',' (write \\; for a \
                         literal ';')",
                        self.i + 1
                    ));
                }
                '"' | '<' | '>' | '\0' => {
                    return Err(format!("unescaped {c:?} at character {} in the value of {ty}", self.i + 1));
                }
                _ => {
                    bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    if c != ' ' {
                        keep = bytes.len();
                    }
                }
            }
            self.i += 1;
        }
        bytes.truncate(keep);
        String::from_utf8(bytes)
            .map(DnValue::Text)
            .map_err(|_| format!("the value of {ty} is not valid UTF-8 (hex escapes must encode UTF-8 bytes)"))
    }

    /// At a '\\': returns the escaped byte and leaves `i` on the escape's last character.
    fn escape(&mut self) -> Result<u8, String> {
        let next = self.c.get(self.i + 1).copied();
        if let (Some(hi), Some(lo)) = (next.and_then(hexval), self.c.get(self.i + 2).copied().and_then(hexval)) {
            self.i += 2;
            return Ok((hi << 4) | lo);
        }
        match next {
            None => Err("unterminated escape at the end of the DN".to_string()),
            Some(c) if "\"+,;<>\\ #=".contains(c) => {
                self.i += 1;
                Ok(c as u8)
            }
            Some(_) => Err(format!(
                "invalid escape at character {}: '\\' must be followed by one of \"+,;<>\\ #= or two hex digits",
                self.i + 1
            )),
        }
    }
}

impl Dn {
    /// Build from a certificate's subject as x509 stores it: RDNs in ASN.1 order (least specific first, e.g. C
    /// then O then CN), attribute types as dotted OIDs ("2.5.4.3").
    pub fn from_asn1_rdns(rdns: Vec<Vec<(String, DnValue)>>) -> Dn {
        let canonical = |t: String| resolve_type(&t).unwrap_or(t);
        let rdn = |rdn: Vec<(String, DnValue)>| rdn.into_iter().map(|(t, v)| (canonical(t), v)).collect();
        Dn { rdns: rdns.into_iter().rev().map(rdn).collect() }
    }

    /// Parse an RFC 4514 string, tolerating spaces around ',', '+' and '='. The empty DN is refused.
    pub fn parse(s: &str) -> Result<Dn, String> {
        if s.trim().is_empty() {
            return Err("empty DN: give at least one RDN, e.g. \"CN=client,O=Example\"".to_string());
        }
        let mut p = Parser { c: s.chars().collect(), i: 0 };
        let (mut rdns, mut rdn) = (Vec::new(), Vec::new());
        loop {
            let (oid, name) = p.attr_type()?;
            rdn.push((oid, p.value(&name)?));
            let sep = p.peek();
            p.i += 1;
            if sep != Some('+') {
                rdns.push(std::mem::take(&mut rdn));
            }
            if sep.is_none() {
                return Ok(Dn { rdns });
            }
        }
    }

    /// Does this DN match `other`? Types compare by OID, Text values by caseIgnoreMatch (trimmed, inner
    /// whitespace collapsed, Unicode lowercase), Der values byte for byte; the AVAs of one RDN compare as a
    /// multiset; RDN order and count must be equal.
    pub fn matches(&self, other: &Dn) -> bool {
        self.rdns.len() == other.rdns.len()
            && self.rdns.iter().zip(&other.rdns).all(|(a, b)| {
                let mut used = vec![false; b.len()];
                a.len() == b.len()
                    && a.iter().all(|x| match (0..b.len()).find(|&j| !used[j] && ava_eq(x, &b[j])) {
                        Some(j) => {
                            used[j] = true;
                            true
                        }
                        None => false,
                    })
            })
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().enumerate() {
            for (j, (oid, value)) in rdn.iter().enumerate() {
                let sep = match (i, j) {
                    (0, 0) => "",
                    (_, 0) => ",",
                    _ => "+",
                };
                let name = ATTRS.iter().find(|(_, o)| *o == oid.as_str()).map_or(oid.as_str(), |(n, _)| *n);
                write!(f, "{sep}{name}=")?;
                match value {
                    DnValue::Der(der) => {
                        f.write_str("#")?;
                        der.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
                    }
                    DnValue::Text(text) => {
                        let last = text.chars().count().saturating_sub(1);
                        for (k, c) in text.chars().enumerate() {
                            match c {
                                '"' | '+' | ',' | ';' | '<' | '>' | '\\' => write!(f, "\\{c}")?,
                                '\0' => f.write_str("\\00")?,
                                '#' if k == 0 => f.write_str("\\#")?,
                                ' ' if k == 0 || k == last => f.write_str("\\ ")?,
                                _ => write!(f, "{c}")?,
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> Dn {
        Dn::parse(s).unwrap()
    }

    fn text(s: &str) -> DnValue {
        DnValue::Text(s.to_string())
    }

    #[test]
    fn round_trip() {
        for s in ["CN=svc,O=Acme,C=DE", "CN=a+UID=b,OU=x,DC=example,DC=com", "emailAddress=a@b.c,2.5.4.99=x=y"] {
            assert_eq!(dn(s).to_string(), s);
            assert_eq!(dn(&dn(s).to_string()), dn(s));
        }
        assert_eq!(dn("e=a@b.c, givenName=Ann").to_string(), "emailAddress=a@b.c,GN=Ann");
    }

    #[test]
    fn spelling_variants_match_and_order_matters() {
        assert!(dn("CN=a, O=b").matches(&dn("cn=A,o=B")));
        assert!(dn(" CN = Foo   Bar ,O=b").matches(&dn("CN=foo bar,O=B")));
        assert!(dn("2.5.4.3=svc,O=Acme").matches(&dn("CN=svc,O=Acme")));
        assert!(dn("oid.2.5.4.3=svc").matches(&dn("CN=svc")));
        assert!(dn("E=a@b.c").matches(&dn("EMAILADDRESS=A@B.C")));
        assert!(!dn("CN=a,O=b").matches(&dn("O=b,CN=a")));
        assert!(!dn("CN=a").matches(&dn("CN=a,O=b")));
        assert!(!dn("CN=a").matches(&dn("CN=b")));
    }

    #[test]
    fn escapes() {
        let d = dn("CN=Doe\\, John,O=X");
        assert_eq!(d.rdns[0], vec![("2.5.4.3".to_string(), text("Doe, John"))]);
        assert_eq!(d.to_string(), "CN=Doe\\, John,O=X");
        assert_eq!(dn("CN=caf\\C3\\A9").rdns[0][0].1, text("café"));
        assert_eq!(dn("CN=\\ a\\ ").rdns[0][0].1, text(" a "));
        assert!(Dn::parse("CN=\\C3").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn multi_valued_rdn_is_a_set() {
        assert!(dn("CN=a+UID=b,O=x").matches(&dn("UID=b + CN=a,O=x")));
        assert!(!dn("CN=a+CN=a").matches(&dn("CN=a+CN=b")));
        assert!(!dn("CN=a+UID=b,O=x").matches(&dn("CN=a,UID=b,O=x")));
    }

    #[test]
    fn from_asn1_rdns_reverses() {
        let ava = |oid: &str, v: &str| vec![(oid.to_string(), text(v))];
        let d = Dn::from_asn1_rdns(vec![ava("2.5.4.6", "DE"), ava("2.5.4.10", "Acme"), ava("2.5.4.3", "svc")]);
        assert_eq!(d.to_string(), "CN=svc,O=Acme,C=DE");
        assert!(d.matches(&dn("CN=svc, O=Acme, C=DE")));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (input, want) in [
            ("", "empty DN"),
            ("  ", "empty DN"),
            ("CN", "missing '=' in \"CN\""),
            ("FOO=bar", "attribute type \"FOO\" is not a known name or an OID"),
            ("OID.CN=x", "\"OID.CN\" is not a valid OID"),
            ("CN=a\\", "unterminated escape at the end of the DN"),
            ("CN=a;O=b", "';' at character 5"),
            ("CN=a,", "missing attribute type at the end"),
            ("=a", "missing attribute type before '='"),
            ("CN=\\x", "invalid escape at character 4"),
            ("CN=#abc", "even, non-zero number of hex digits"),
            ("CN=#0403 x", "unexpected 'x'"),
            ("CN=a\"b", "unescaped '\"'"),
        ] {
            let err = Dn::parse(input).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn print_escapes_and_der_values() {
        let d = Dn::from_asn1_rdns(vec![vec![("2.5.4.3".to_string(), text("#a b=c "))]]);
        assert_eq!(d.to_string(), "CN=\\#a b=c\\ ");
        assert_eq!(dn(&d.to_string()), d);
        let d = dn("CN=#0403616263 , O = x");
        assert_eq!(d.rdns[0][0].1, DnValue::Der(vec![4, 3, 0x61, 0x62, 0x63]));
        assert_eq!(d.to_string(), "CN=#0403616263,O=x");
        assert!(!d.matches(&dn("CN=abc,O=x")));
    }
}
