//! The client's address behind trusted proxies: the rightmost hop of `Forwarded` (RFC 7239) or
//! `X-Forwarded-For` that is not itself a trusted proxy, when the connection comes from one;
//! otherwise the connection's peer. Hops to the left of the first untrusted one were written by
//! the client (or whoever it pretends to be) and are never believed.
//!
//! `Forwarded` wins when both are present. A hop that is not an address (`unknown`, an obfuscated
//! identifier, garbage) stops the walk, and the last trusted hop (the proxy that appended it) is
//! the answer: it is the furthest point anyone vouches for.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// IPv4-mapped IPv6 addresses as plain IPv4, so that one client has one key.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn trusted_by(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client's address (see the module docs).
pub fn client_ip(peer: IpAddr, trusted: &[IpNet], headers: &HeaderMap) -> IpAddr {
    let peer = canonical(peer);
    if !trusted_by(trusted, peer) {
        return peer;
    }
    let hops = forwarded_hops(headers).or_else(|| xff_hops(headers));
    let Some(hops) = hops else { return peer };
    let mut last_trusted = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) if trusted_by(trusted, *ip) => last_trusted = canonical(*ip),
            Some(ip) => return canonical(*ip),
            None => return last_trusted,
        }
    }
    last_trusted
}

/// Every `X-Forwarded-For` hop, left to right across all the header's lines.
fn xff_hops(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let values: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    if values.is_empty() {
        return None;
    }
    let mut hops = vec![];
    for v in values {
        let Ok(text) = v.to_str() else {
            hops.push(None);
            continue;
        };
        hops.extend(text.split(',').map(|h| parse_node(h.trim())));
    }
    Some(hops)
}

/// Every `Forwarded` element's `for=` node, left to right.
fn forwarded_hops(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let values: Vec<_> = headers.get_all("forwarded").iter().collect();
    if values.is_empty() {
        return None;
    }
    let mut hops = vec![];
    for v in values {
        let Ok(text) = v.to_str() else {
            hops.push(None);
            continue;
        };
        for element in text.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"'))
            });
            // An element without `for=` says nothing about the client: skip it.
            if let Some(node) = node {
                hops.push(parse_node(node));
            }
        }
    }
    Some(hops)
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = h(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(client_ip(ip("198.51.100.1"), &trusted, &xff), ip("198.51.100.1"));
        assert_eq!(client_ip(ip("10.0.0.5"), &trusted, &xff), ip("203.0.113.7"));
        assert_eq!(client_ip(ip("10.0.0.5"), &trusted, &h(&[])), ip("10.0.0.5"));
        assert_eq!(client_ip(ip("10.0.0.5"), &[], &xff), ip("10.0.0.5"), "no trusted proxies: the peer");
    }

    #[test]
    fn the_rightmost_untrusted_hop_wins() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // The client wrote 1.2.3.4 itself; 203.0.113.7 is what the first trusted proxy saw.
        let xff = h(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7"), ("x-forwarded-for", "10.1.1.1")]);
        assert_eq!(client_ip(ip("10.0.0.5"), &trusted, &xff), ip("203.0.113.7"));
        let all_trusted = h(&[("x-forwarded-for", "10.2.2.2, 10.1.1.1")]);
        assert_eq!(client_ip(ip("10.0.0.5"), &trusted, &all_trusted), ip("10.2.2.2"));
        let garbage = h(&[("x-forwarded-for", "203.0.113.7, unknown")]);
        assert_eq!(client_ip(ip("10.0.0.5"), &trusted, &garbage), ip("10.0.0.5"));
        let ported = h(&[("x-forwarded-for", "203.0.113.7:5555")]);
        assert_eq!(client_ip(ip("::ffff:10.0.0.5"), &trusted, &ported), ip("203.0.113.7"));
    }

    #[test]
    fn forwarded_is_preferred_and_parsed() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let both = h(&[
            ("x-forwarded-for", "198.51.100.9"),
            ("forwarded", r#"for=1.2.3.4, for="[2001:db8::17]:4711";proto=https, by=10.0.0.5;for=10.3.3.3"#),
        ]);
        assert_eq!(client_ip(ip("10.0.0.5"), &trusted, &both), ip("2001:db8::17"));
        let obfuscated = h(&[("forwarded", "for=_hidden")]);
        assert_eq!(client_ip(ip("10.0.0.5"), &trusted, &obfuscated), ip("10.0.0.5"));
    }
}
