//! Orchestration of each endpoint: the protocol steps, in order, independent of HTTP.

pub mod admin;
pub mod authorize;
pub mod device;
pub mod discovery;
pub mod introspect;
pub mod logout;
pub mod par;
pub mod paths;
pub mod pushed;
pub mod registration;
pub mod request_object;
pub mod revoke;
pub mod token;
pub mod userinfo;
