//! Property tests (proptest) of the parsers that have a round trip: RFC 4514 DNs print and parse
//! back to themselves, form bodies encoded by `form_urlencoded` parse to the same pairs (and a
//! repeated parameter is refused), and RFC 7638 JWK thumbprints ignore member order and extra
//! members. The fuzz targets (`fuzz/`, `tests/fuzz_corpus.rs`) cover arbitrary bytes; these cover
//! the structured inputs a fuzzer rarely builds.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;
use tether_core::dn::{Dn, DnValue};
use tether_core::form::Form;
use tether_core::keys::jwk_thumbprint;
use tether_core::secret::{b64url, sha256};

/// Attribute types: every OID with a short name, and other dotted OIDs.
fn oid() -> impl Strategy<Value = String> {
    let named = prop::sample::select(vec![
        "2.5.4.3",
        "2.5.4.7",
        "2.5.4.8",
        "2.5.4.10",
        "2.5.4.11",
        "2.5.4.6",
        "0.9.2342.19200300.100.1.25",
        "0.9.2342.19200300.100.1.1",
        "1.2.840.113549.1.9.1",
        "2.5.4.42",
        "2.5.4.4",
        "2.5.4.97",
    ])
    .prop_map(String::from);
    prop_oneof![named, "[0-2](\\.(0|[1-9][0-9]{0,5})){1,6}"]
}

fn dn_value() -> impl Strategy<Value = DnValue> {
    prop_oneof![
        4 => any::<String>().prop_map(DnValue::Text),
        // The characters RFC 4514 treats specially, densely.
        4 => "[ #,+;<>\"\\\\=\\x00a-c\u{e9}]{0,8}".prop_map(DnValue::Text),
        1 => prop::collection::vec(any::<u8>(), 1..12).prop_map(DnValue::Der),
    ]
}

/// A DN as a certificate's subject gives it: RDNs least specific first, types as OIDs.
fn dn() -> impl Strategy<Value = Dn> {
    prop::collection::vec(prop::collection::vec((oid(), dn_value()), 1..4), 1..5).prop_map(Dn::from_asn1_rdns)
}

const REPEATABLE: &[&str] = &["resource", "audience"];

fn param() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z_]{0,6}", Just("resource".to_string())]
}

/// A JWK of each key type with base64url member values, as keys are.
fn jwk_required() -> impl Strategy<Value = BTreeMap<String, String>> {
    let b64 = || "[A-Za-z0-9_-]{1,90}";
    let m = |pairs: Vec<(&str, String)>| pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    prop_oneof![
        (prop::sample::select(vec!["P-256", "P-384", "P-521"]), b64(), b64()).prop_map(move |(c, x, y)| m(vec![
            ("kty", "EC".into()),
            ("crv", c.into()),
            ("x", x),
            ("y", y)
        ])),
        (b64(), b64()).prop_map(move |(n, e)| m(vec![("kty", "RSA".into()), ("n", n), ("e", e)])),
        (prop::sample::select(vec!["Ed25519", "Ed448", "X25519"]), b64()).prop_map(move |(c, x)| m(vec![
            ("kty", "OKP".into()),
            ("crv", c.into()),
            ("x", x)
        ])),
    ]
}

proptest! {
    #[test]
    fn dn_prints_and_parses_back(dn in dn()) {
        let printed = dn.to_string();
        let parsed = Dn::parse(&printed);
        prop_assert!(parsed.is_ok(), "{printed:?}: {parsed:?}");
        let parsed = parsed.unwrap();
        prop_assert_eq!(&parsed, &dn, "printed as {:?}", printed);
        prop_assert_eq!(parsed.to_string(), printed);
        prop_assert!(parsed.matches(&dn));
    }

    #[test]
    fn dn_parse_never_panics_and_round_trips(s in "[ A-Za-z0-9.=,+;#\\\\\"<>]{0,40}") {
        if let Ok(dn) = Dn::parse(&s) {
            prop_assert_eq!(Dn::parse(&dn.to_string()).ok(), Some(dn));
        }
    }

    #[test]
    fn encoded_form_parses_to_the_same_pairs(map in prop::collection::btree_map(param(), any::<String>(), 0..8), repeats in 0..3usize) {
        let mut pairs: Vec<(String, String)> = map.into_iter().collect();
        for i in 0..repeats {
            pairs.push(("resource".to_string(), format!("https://r{i}.example")));
        }
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        let form = Form::parse(body.as_bytes());
        prop_assert!(form.is_ok(), "{body:?}");
        let form = form.unwrap();
        prop_assert_eq!(form.pairs(), pairs.as_slice());
    }

    #[test]
    fn a_repeated_parameter_is_refused(map in prop::collection::btree_map(param(), any::<String>(), 1..8), pick in any::<prop::sample::Index>(), value in any::<String>()) {
        let mut pairs: Vec<(String, String)> = map.into_iter().collect();
        let key = pairs[pick.index(pairs.len())].0.clone();
        pairs.push((key.clone(), value));
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        prop_assert_eq!(Form::parse(body.as_bytes()).is_ok(), REPEATABLE.contains(&key.as_str()), "{:?}", body);
    }

    #[test]
    fn jwk_thumbprint_ignores_member_order_and_extra_members(
        required in jwk_required(),
        extra in prop::collection::btree_map("[a-z]{1,4}|alg|kid|use|key_ops|d", any::<i32>(), 0..6),
        order in prop::collection::vec(any::<u64>(), 16),
    ) {
        // RFC 7638 §3.2: the required members only, lexicographic order, no whitespace.
        let canonical = serde_json::to_string(&required).unwrap();
        let want = b64url(&sha256(canonical.as_bytes()));
        let mut members: Vec<(String, String)> =
            required.iter().map(|(k, v)| (k.clone(), serde_json::to_string(v).unwrap())).collect();
        members.extend(extra.iter().filter(|(k, _)| !required.contains_key(*k)).map(|(k, v)| (k.clone(), v.to_string())));
        // Any order: sorted by a generated number per member.
        let mut order = order.into_iter();
        members.sort_by_cached_key(|_| order.next().unwrap_or(0));
        let text = format!(
            "{{{}}}",
            members.iter().map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap())).collect::<Vec<_>>().join(",")
        );
        let jwk: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(jwk_thumbprint(&jwk), Some(want), "{}", text);
    }
}
