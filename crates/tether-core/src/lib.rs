//! Tether's protocol engine.
//!
//! **Owns** OAuth 2.0 / OpenID Connect semantics: grants, client authentication, token binding,
//! token formats, the resource-side proof-of-possession check, sessions, and the storage *contract*
//! (including the decisions a store executes). **Must not depend on** an HTTP framework (axum,
//! hyper), a database driver (sqlx, rusqlite), TLS (rustls) or any other Tether crate: everything
//! else depends on it, never the reverse.
//!
//! This crate owns OAuth 2.0 / OpenID Connect semantics and nothing else: no HTTP framework, no SQL,
//! no TLS. The HTTP adapter (`tether-server`) turns requests into the plain values these modules take
//! (a parsed form, the peer certificate's DER, a cookie value) and maps [`error::OAuthError`] back to
//! HTTP. Storage sits behind [`store::Store`], one implementation per backend in `tether-store`.
//!
//! Layout (see `shared/ARCHITECTURE.md`): one module per client authentication method
//! ([`client_auth`]), per grant type ([`grant`]), per binding type ([`binding`]); token formats in
//! [`token`]; the orchestration of every endpoint in [`endpoint`], where the single issuance
//! pipeline lives.

pub mod admin;
pub mod admin_ops;
pub mod audit;
pub mod backchannel;
pub mod binding;
pub mod cert;
pub mod client_auth;
pub mod client_keys;
pub mod clock;
pub mod config_text;
pub mod crypto;
pub mod declarative;
pub mod dn;
pub mod dpop;
pub mod endpoint;
pub mod error;
pub mod form;
#[doc(hidden)]
pub mod fuzzing;
pub mod grant;
pub mod keys;
pub mod login;
pub mod logout_poster;
pub mod model;
pub mod net;
pub mod password;
pub mod pkce;
pub mod profile;
pub mod provider;
pub mod registration_config;
pub mod resource;
pub mod scope;
pub mod secret;
pub mod session;
pub mod store;
pub mod throttle;
pub mod token;
