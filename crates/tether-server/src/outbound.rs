//! HTTP requests the server makes on a client's behalf — fetching its `jwks_uri`, posting its
//! back-channel logouts — and the guard that keeps a dynamically registered client from aiming
//! them at the server's own network (SSRF).
//!
//! A registered client names these URLs itself, so, unless `[registration] allow_private_uris`,
//! its requests go through a client whose DNS resolver refuses a name when **any** address it
//! resolves to is loopback, private, link-local (the cloud metadata address 169.254.169.254
//! among them), shared (100.64/10), unspecified, multicast, broadcast, or an IPv6 form of one of
//! these (unique local, link-local, IPv4-mapped, NAT64). The check is made when connecting, on the
//! addresses actually used, so a name that resolves differently later (DNS rebinding) is caught;
//! an IP literal in the URL, which reqwest connects to without resolving, is checked the same way
//! before the request, in whatever spelling the URL gave (`url` normalises `0x7f.1`,
//! `2130706433`, `[::ffff:127.0.0.1]`). No redirect is ever followed. Apps an operator created are
//! trusted with internal URLs (a `jwks_uri` on the intranet is normal) and go unguarded.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why a request was not made: the address is not one the server may reach for a client.
#[derive(Debug)]
pub struct Forbidden(pub String);

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "address not allowed for a registered client: {}", self.0)
    }
}

impl std::error::Error for Forbidden {}

/// May a registered client make the server connect to `ip`? (`tether_core::net::internal`.)
pub fn forbidden(ip: IpAddr) -> bool {
    tether_core::net::internal(ip)
}

/// A URL whose host is an IP literal the guard refuses (checked before the request: such a host
/// is never resolved).
pub fn literal_forbidden(uri: &str) -> Option<Forbidden> {
    let u = url::Url::parse(uri).ok()?;
    let ip = match u.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    forbidden(ip).then(|| Forbidden(ip.to_string()))
}

/// Was this request refused by the guard (rather than failing on the network)?
pub fn is_forbidden(e: &reqwest::Error) -> Option<String> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(inner) = src {
        if let Some(f) = inner.downcast_ref::<Forbidden>() {
            return Some(f.to_string());
        }
        src = inner.source();
    }
    None
}

/// The resolver of guarded clients.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| forbidden(a.ip())) {
                return Err(Box::new(Forbidden(format!("{host} resolves to {}", bad.ip())))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A client for requests on a client's behalf: `timeout` per request, no redirects, no cookies;
/// `guarded` for registered clients.
pub fn client(timeout: Duration, guarded: bool) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")));
    if guarded {
        b = b.dns_resolver(Arc::new(GuardedResolver));
    }
    b.build().map_err(|e| format!("cannot build an HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_in_every_spelling_are_refused() {
        for uri in [
            "https://127.0.0.1/x",
            "https://127.1/x",
            "https://0x7f000001/x",
            "https://2130706433/x",
            "https://0177.0.0.1/x",
            "https://10.1.2.3/x",
            "https://172.16.0.1/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[::ffff:a9fe:a9fe]/x",
            "https://[fd00:ec2::254]/x",
            "https://[fe80::1]/x",
            "https://[64:ff9b::a9fe:a9fe]/x",
            "https://[::]/x",
        ] {
            assert!(literal_forbidden(uri).is_some(), "{uri}");
        }
        for uri in ["https://93.184.215.14/x", "https://[2606:4700::1111]/x", "https://example.com/x"] {
            assert!(literal_forbidden(uri).is_none(), "{uri}");
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused_when_connecting() {
        let c = client(Duration::from_secs(5), true).unwrap();
        let e = c.get("https://localhost:9/never").send().await.unwrap_err();
        let why = is_forbidden(&e).expect("refused by the guard, not the network");
        assert!(why.contains("localhost resolves to"), "{why}");
        // Unguarded, the same request reaches the network (and fails there: nothing listens).
        let c = client(Duration::from_secs(5), false).unwrap();
        let e = c.get("https://localhost:9/never").send().await.unwrap_err();
        assert!(is_forbidden(&e).is_none());
    }
}
