//! Integration tests: a real server over real HTTPS with real SQLite (see tether-testkit).
//! One test binary with modules keeps link time down.
#![allow(clippy::unwrap_used)]

mod access_log;
mod admin_api;
mod admin_cli;
mod audit;
mod backup;
mod binary;
mod binding_agreement;
mod browser;
mod browser_binding;
mod certificate;
mod cli_docs;
mod client_jwt;
mod code_flow;
mod console;
mod declarative;
mod deploy;
mod device;
mod dpop;
mod dpop_algs;
mod errors;
mod exchange;
mod fapi2;
mod gateway;
mod gateway_fidelity;
mod gateway_routes;
mod grants;
mod hardening;
mod hostile;
mod mtls;
mod operator;
mod par;
mod registration;
mod resource_parity;
mod reuse;
mod signin;
mod storage;
mod tokens;
mod transport;
