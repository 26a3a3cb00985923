//! `tether gateway`: a reverse proxy that lets a request reach an upstream API only with a valid
//! access token **and** proof that the sender holds what the token is bound to
//! (see the README's gateway section). The checks are a [`tower`] layer, [`GuardLayer`], which the proxy
//! uses and which a Rust resource server can put in front of its own routes (G-7).
//!
//! **Owns** the gateway's token validation (JWKS, introspection, caches), its configuration and
//! the proxy. The proof-of-possession rules themselves are `tether_core::resource`'s, shared with
//! the authorization server's userinfo endpoint. **Must not depend on** `tether-server`, askama or
//! a database driver: a service that only wants [`GuardLayer`] gets `tether-core`, `tether-tls`
//! and the HTTP stack; the database DPoP replay store is the opt-in feature `db-replay`.
//!
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Extension, Router, routing::get};
//! use tether_gateway::{Authenticated, Config, FileConfig, Guard, GuardLayer};
//!
//! # async fn run() -> Result<(), String> {
//! let cfg = Config::from_file(FileConfig {
//!     upstream: Some("http://127.0.0.1:1".into()), // unused by the layer alone
//!     issuer: Some("https://localhost:9443".into()),
//!     ca_file: Some("tether-data/tls/ca.pem".into()),
//!     auth_methods: Some(vec!["bearer".into()]),
//!     proof_of_possession_mtls: Some("strict".into()),
//!     ..Default::default()
//! })?;
//! let guard = Arc::new(Guard::new(cfg, Arc::new(tether_core::clock::SystemClock))?);
//! let app: Router = Router::new()
//!     .route("/orders", get(|Extension(who): Extension<Authenticated>| async move {
//!         format!("hello {}", who.sub.unwrap_or_default())
//!     }))
//!     .layer(GuardLayer::new(guard));
//! // Serve `app` with tether_tls::accept::serve so each request carries its TLS client
//! // certificate (the `ConnInfo` extension) for the mTLS proof.
//! # let _ = app; Ok(()) }
//! ```

pub mod cache;
pub mod config;
pub mod dpop;
pub mod guard;
pub mod issuer;
pub mod layer;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod session;

pub use config::{Config, FileConfig};
pub use guard::{Authenticated, Guard, Rejection};
pub use layer::{GuardLayer, GuardService};
