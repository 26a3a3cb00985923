//! TLS for Tether's listeners, shared by the authorization server (`tether-server`) and the
//! gateway (`tether-gateway`), so that a resource server using only the gateway's `GuardLayer`
//! needs neither the server's pages nor a database driver.
//!
//! Owns: the accept loop that hands each request its connection's client certificate
//! ([`accept`]), with its timeouts and connection cap ([`limits`], [`body`]); certificates
//! forwarded by trusted proxies and trust in client CAs ([`client_cert`]); the client's address
//! behind those proxies ([`forwarded`]); the access log of both products ([`access`]) and their shared Prometheus recorder ([`prometheus`]); and the local PKI a first start generates ([`pki`]).
//! Depends on `tether-core` for the protocol's view of a certificate, and on nothing of the
//! server's.

pub mod accept;
pub mod access;
pub mod body;
pub mod client_cert;
pub mod forwarded;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod pki;
pub mod prometheus;
