//! What a request must satisfy: the authentication methods, the proof-of-possession modes and
//! the token requirements, for the whole gateway (the top-level keys) or one route
//! ([`crate::routes`]); and how their values are read from the file.

/// `off | optional | strict` (gateway.md G-4, G-5).
pub use tether_core::resource::PopMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Bearer,
    Introspection,
    Session,
}

pub(crate) fn pop_mode(key: &str, v: Option<&str>) -> Result<PopMode, String> {
    let v = v.unwrap_or("optional");
    PopMode::parse(v).ok_or_else(|| format!("{key} = {v:?}: use off, optional or strict"))
}

/// `auth_methods` (top level or a route's), deduplicated, at least one.
pub(crate) fn parse_auth_methods(key: &str, names: &[String]) -> Result<Vec<AuthMethod>, String> {
    let mut auth_methods = Vec::new();
    for n in names {
        let m = match n.as_str() {
            "bearer" => AuthMethod::Bearer,
            "introspection" => AuthMethod::Introspection,
            "session" => AuthMethod::Session,
            other => {
                return Err(format!("{key}: {other:?} is not supported (bearer, introspection, session)"));
            }
        };
        if !auth_methods.contains(&m) {
            auth_methods.push(m);
        }
    }
    if auth_methods.is_empty() {
        return Err(format!("{key} must name at least one method"));
    }
    Ok(auth_methods)
}

/// What a request on a route must satisfy.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    /// The route's name in metrics and logs: its `path_prefix`, or `default`.
    pub name: String,
    pub auth_methods: Vec<AuthMethod>,
    pub pop_mtls: PopMode,
    pub pop_dpop: PopMode,
    pub required_scopes: Vec<String>,
    pub audience: Option<String>,
    pub public_url: String,
    pub anonymous: bool,
}
