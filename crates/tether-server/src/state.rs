//! The state every handler shares: the provider and the adapter's own options.

use std::sync::Arc;

use tether_core::provider::Provider;
use tether_tls::client_cert::ProxyCertConfig;

/// How the adapter is deployed (chosen by `start`, not by the provider).
pub struct Options {
    /// Mark the session cookie `Secure` (every listener but a plain-HTTP test one).
    pub secure_cookies: bool,
    /// Which peers may forward a client certificate, and in which header.
    pub proxy_cert: ProxyCertConfig,
    /// `[security] revoke_on_password_change`.
    pub revoke_on_password_change: bool,
    /// The master key file (the console warns when others can read it); `None` when the key
    /// comes from the environment.
    pub master_key_file: Option<std::path::PathBuf>,
}

/// The router's state.
#[derive(Clone)]
pub(crate) struct AppState {
    pub p: Arc<Provider>,
    pub opts: Arc<Options>,
}
