//! Routes (`[[routes]]`): several APIs behind one gateway, each with its own upstreams and its
//! own policy, as Kong's services and routes with per-route plugin configuration.
//!
//! **Matching.** A request's path is first checked ([`check_path`]): an encoded slash or
//! backslash, a raw backslash, a dot-segment in any spelling (`.`, `..`, `%2e`, `%2E%2e`, `.%2e`,
//! `..;`, `.;x`) or an encoded NUL is refused with 400, so no spelling of `/public/../payments`
//! can reach a stricter route through a looser one, and the upstream — which would decode and
//! resolve them — never sees one. Then the route whose `path_prefix` matches on whole segments
//! (`/pay` matches `/pay` and `/pay/x`, never `/payments`) and whose `hosts` (if any) name the
//! request's host wins, the longest prefix first. No route and no top-level `upstream`: 404.
//!
//! **Upstreams.** One URL or several (round-robin). Passive health: a target that fails
//! [`FAILS_TO_EJECT`] times in a row (connection refused, TLS failure, timeout) is skipped for
//! [`EJECT_FOR`]; when every target of a route is skipped the answer is 503; a failed attempt is
//! 502. `strip_prefix` removes the matched prefix before forwarding (the upstream sees exactly
//! the rest); `preserve_host` passes the client's `Host` on.
//!
//! **Policy.** Each route may override every policy key of the top level (`auth_methods`,
//! `proof_of_possession_mtls`, `proof_of_possession_dpop`, `required_scopes`, `audience`), and
//! has its own `public_url` (the base of the DPoP `htu`, compared with the path the client
//! addressed, before `strip_prefix`) and `anonymous` (no token needed; a token that is sent is
//! still checked in full).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;

pub use crate::policy::RoutePolicy;
use crate::policy::{AuthMethod, PopMode, parse_auth_methods, pop_mode};

/// Consecutive failures after which a target is skipped.
pub const FAILS_TO_EJECT: u32 = 3;
/// How long a failing target is skipped.
pub const EJECT_FOR: Duration = Duration::from_secs(30);

/// One `[[routes]]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub path_prefix: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub upstream: Option<OneOrMany>,
    pub strip_prefix: Option<bool>,
    pub preserve_host: Option<bool>,
    pub upstream_timeout_seconds: Option<u64>,
    pub anonymous: Option<bool>,
    pub public_url: Option<String>,
    pub auth_methods: Option<Vec<String>>,
    pub proof_of_possession_mtls: Option<String>,
    pub proof_of_possession_dpop: Option<String>,
    pub required_scopes: Option<Vec<String>>,
    pub audience: Option<String>,
}

/// `upstream = "http://a"` or `upstream = ["http://a", "http://b"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One upstream target and its passive health.
#[derive(Debug)]
pub struct Target {
    pub url: url::Url,
    fails: AtomicU32,
    /// Unix milliseconds until which the target is skipped.
    skip_until: AtomicI64,
}

impl Target {
    fn new(url: url::Url) -> Self {
        Target { url, fails: AtomicU32::new(0), skip_until: AtomicI64::new(0) }
    }

    /// An answer came (whatever its status): the target is healthy.
    pub fn succeeded(&self) {
        self.fails.store(0, Ordering::Relaxed);
    }

    /// No answer: counted; the [`FAILS_TO_EJECT`]th in a row skips it for [`EJECT_FOR`].
    pub fn failed(&self, now_ms: i64) {
        let n = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= FAILS_TO_EJECT {
            self.skip_until.store(now_ms + EJECT_FOR.as_millis() as i64, Ordering::Relaxed);
            self.fails.store(0, Ordering::Relaxed);
            tracing::warn!(upstream = %self.url, "upstream target failing: skipped for {}s", EJECT_FOR.as_secs());
        }
    }

    pub fn healthy(&self, now_ms: i64) -> bool {
        self.skip_until.load(Ordering::Relaxed) <= now_ms
    }
}

#[derive(Debug)]
pub struct Route {
    /// Normalised: starts with `/`, no trailing `/` (except `/` itself).
    pub path_prefix: String,
    /// Lower-case host names (no port); empty: any host.
    pub hosts: Vec<String>,
    pub targets: Vec<Target>,
    next: AtomicUsize,
    pub strip_prefix: bool,
    pub preserve_host: bool,
    pub timeout: Option<Duration>,
    pub policy: Arc<RoutePolicy>,
    /// Kept metric handles (named after `policy.name`).
    pub metrics: crate::metrics::RouteMetrics,
}

impl Route {
    /// The next healthy target, round-robin; `None` when every target is skipped.
    pub fn pick(&self, now_ms: i64) -> Option<&Target> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|i| &self.targets[(start + i) % n]).find(|t| t.healthy(now_ms))
    }

    /// The next healthy target other than `not` (after `not` refused a connection).
    pub fn pick_other(&self, now_ms: i64, not: &Target) -> Option<&Target> {
        (0..self.targets.len()).filter_map(|_| self.pick(now_ms)).find(|t| !std::ptr::eq(*t, not))
    }

    /// Does any target answer (for `/readyz`)?
    pub fn any_healthy(&self, now_ms: i64) -> bool {
        self.targets.iter().any(|t| t.healthy(now_ms))
    }

    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|x| x == h));
        host_ok && segment_prefix(&self.path_prefix, path)
    }

    /// The path the upstream receives: the request's, or its rest after the prefix.
    pub fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        if !self.strip_prefix || self.path_prefix == "/" {
            return path.into();
        }
        let rest = &path[self.path_prefix.len()..];
        if rest.is_empty() { "/".into() } else { rest.into() }
    }
}

/// `prefix` matches `path` on whole segments.
fn segment_prefix(prefix: &str, path: &str) -> bool {
    prefix == "/" || path == prefix || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Every route, longest prefix first, and the top-level `upstream` as the last one.
#[derive(Debug, Default)]
pub struct Routes {
    pub routes: Vec<Route>,
}

impl Routes {
    /// The route of a request (`host` lower-case, without port).
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(host, path))
    }

    /// [`Self::find`], as an index.
    pub fn position(&self, host: Option<&str>, path: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.matches(host, path))
    }
}

/// Why a path is refused before any route is chosen.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
        return Err("encoded slashes and backslashes are not allowed in the path");
    }
    if lower.contains("%00") {
        return Err("an encoded NUL is not allowed in the path");
    }
    for seg in path.split('/') {
        // `..;jsessionid` and `.;x` are dot-segments to Tomcat and Spring; `%2e` is a dot.
        let bare = seg.split(';').next().unwrap_or("").to_ascii_lowercase().replace("%2e", ".");
        if bare == "." || bare == ".." {
            return Err("dot-segments (., .., in any spelling) are not allowed in the path");
        }
    }
    Ok(())
}

/// The host of a request, lower-case and without port: `Host` (HTTP/1.1) or the URI's authority
/// (HTTP/2).
pub fn request_host(parts: &http::request::Parts) -> Option<String> {
    let raw = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_string()))?;
    let host = if raw.starts_with('[') {
        raw.split(']').next().map(|h| format!("{h}]")).unwrap_or(raw.clone())
    } else {
        raw.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or(raw.clone())
    };
    Some(host.to_ascii_lowercase())
}

/// The top-level policy keys, the defaults of every route.
pub struct Defaults<'a> {
    pub auth_methods: &'a [AuthMethod],
    pub pop_mtls: PopMode,
    pub pop_dpop: PopMode,
    pub required_scopes: &'a [String],
    pub audience: Option<&'a str>,
    pub public_url: &'a str,
}

fn upstream_url(key: &str, s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|_| format!("{key} = {s:?} is not a URL"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("{key} = {s:?}: an upstream is an http:// or https:// URL"));
    }
    if u.host().is_none() || u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{key} = {s:?}: an upstream is scheme://host[:port][/base-path]"));
    }
    Ok(u)
}

/// The top-level `upstream` as the default route (prefix `/`, the top-level policy).
pub fn default_route(upstream: &str, d: &Defaults<'_>) -> Result<Route, String> {
    let url = upstream_url("upstream", upstream)?;
    Ok(Route {
        path_prefix: "/".into(),
        hosts: vec![],
        targets: vec![Target::new(url)],
        next: AtomicUsize::new(0),
        strip_prefix: false,
        preserve_host: false,
        timeout: None,
        metrics: crate::metrics::RouteMetrics::new("default"),
        policy: Arc::new(RoutePolicy {
            name: "default".into(),
            auth_methods: d.auth_methods.to_vec(),
            pop_mtls: d.pop_mtls,
            pop_dpop: d.pop_dpop,
            required_scopes: d.required_scopes.to_vec(),
            audience: d.audience.map(str::to_string),
            public_url: d.public_url.to_string(),
            anonymous: false,
        }),
    })
}

/// Validate one `[[routes]]` table (`i`: its index, for messages).
pub fn route(i: usize, f: &RouteFile, d: &Defaults<'_>) -> Result<Route, String> {
    let at = |k: &str| format!("routes[{i}].{k}");
    let prefix =
        f.path_prefix.clone().ok_or_else(|| format!("{} is required (e.g. \"/payments\")", at("path_prefix")))?;
    if !prefix.starts_with('/') || check_path(&prefix).is_err() || prefix.contains('?') || prefix.contains('#') {
        return Err(format!("{} = {prefix:?} must be a plain absolute path like \"/payments\"", at("path_prefix")));
    }
    let path_prefix = if prefix == "/" { prefix.clone() } else { prefix.trim_end_matches('/').to_string() };
    let ups = f.upstream.as_ref().ok_or_else(|| format!("{} is required", at("upstream")))?.list();
    if ups.is_empty() {
        return Err(format!("{} must name at least one URL", at("upstream")));
    }
    let targets =
        ups.iter().map(|u| upstream_url(&at("upstream"), u).map(Target::new)).collect::<Result<Vec<_>, _>>()?;
    let hosts = f.hosts.clone().unwrap_or_default().iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let auth_methods = match &f.auth_methods {
        Some(n) => parse_auth_methods(&at("auth_methods"), n)?,
        None => d.auth_methods.to_vec(),
    };
    let pop_mtls = match &f.proof_of_possession_mtls {
        Some(v) => pop_mode(&at("proof_of_possession_mtls"), Some(v))?,
        None => d.pop_mtls,
    };
    let pop_dpop = match &f.proof_of_possession_dpop {
        Some(v) => pop_mode(&at("proof_of_possession_dpop"), Some(v))?,
        None => d.pop_dpop,
    };
    if pop_mtls == PopMode::Strict && pop_dpop == PopMode::Strict {
        return Err(format!("{}: proof_of_possession_mtls and proof_of_possession_dpop cannot both be strict", at("")));
    }
    let public_url = match &f.public_url {
        Some(u) => {
            let p = url::Url::parse(u).map_err(|_| format!("{} = {u:?} is not a URL", at("public_url")))?;
            if p.scheme() != "https" && p.scheme() != "http" {
                return Err(format!("{} = {u:?} must be an https URL", at("public_url")));
            }
            u.trim_end_matches('/').to_string()
        }
        None => d.public_url.to_string(),
    };
    if f.upstream_timeout_seconds == Some(0) {
        return Err(format!("{} must be at least 1", at("upstream_timeout_seconds")));
    }
    Ok(Route {
        path_prefix: path_prefix.clone(),
        hosts,
        targets,
        next: AtomicUsize::new(0),
        strip_prefix: f.strip_prefix.unwrap_or(false),
        preserve_host: f.preserve_host.unwrap_or(false),
        timeout: f.upstream_timeout_seconds.map(Duration::from_secs),
        metrics: crate::metrics::RouteMetrics::new(&path_prefix),
        policy: Arc::new(RoutePolicy {
            name: path_prefix,
            auth_methods,
            pop_mtls,
            pop_dpop,
            required_scopes: f.required_scopes.clone().unwrap_or_else(|| d.required_scopes.to_vec()),
            audience: f.audience.clone().or_else(|| d.audience.map(str::to_string)),
            public_url,
            anonymous: f.anonymous.unwrap_or(false),
        }),
    })
}

/// Every route of a configuration: the `[[routes]]`, longest prefix first, then the top-level
/// `upstream` (if any) as `/`.
pub fn build(files: &[RouteFile], upstream: Option<&str>, d: &Defaults<'_>) -> Result<Routes, String> {
    let mut routes = files.iter().enumerate().map(|(i, f)| route(i, f, d)).collect::<Result<Vec<_>, _>>()?;
    for (i, a) in routes.iter().enumerate() {
        if routes[..i].iter().any(|b| b.path_prefix == a.path_prefix && b.hosts == a.hosts) {
            return Err(format!("routes: two routes have path_prefix {:?} and the same hosts", a.path_prefix));
        }
    }
    routes.sort_by(|a, b| b.path_prefix.len().cmp(&a.path_prefix.len()).then(b.hosts.len().cmp(&a.hosts.len())));
    if let Some(u) = upstream {
        routes.push(default_route(u, d)?);
    }
    if routes.is_empty() {
        return Err(
            "upstream is required (e.g. upstream = \"http://127.0.0.1:9000\"), or at least one [[routes]]".into()
        );
    }
    Ok(Routes { routes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_bypass_is_refused() {
        for p in [
            "/public/..%2Fpayments",
            "/public/%2e%2e/payments",
            "/public/%2E%2e/payments",
            "/public/.%2e/payments",
            "/public/../payments",
            "/public/..;/payments",
            "/public/./x",
            "/public/.;x/y",
            "/public%5c..%5cpayments",
            "/public\\..\\payments",
            "/public/x%00",
            "/public/%2fpayments",
        ] {
            assert!(check_path(p).is_err(), "{p}");
        }
        for p in ["/public/x", "/public/x.y", "/public/...", "/public/.well-known", "/a%20b", "/"] {
            assert!(check_path(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn whole_segments_and_the_longest_prefix_win() {
        assert!(segment_prefix("/pay", "/pay") && segment_prefix("/pay", "/pay/x") && segment_prefix("/", "/anything"));
        assert!(!segment_prefix("/pay", "/payments") && !segment_prefix("/pay/x", "/pay"));
        let d = Defaults {
            auth_methods: &[AuthMethod::Bearer],
            pop_mtls: PopMode::Optional,
            pop_dpop: PopMode::Optional,
            required_scopes: &[],
            audience: None,
            public_url: "https://gw.example",
        };
        let r = |p: &str| RouteFile {
            path_prefix: Some(p.into()),
            upstream: Some(OneOrMany::One("http://127.0.0.1:1".into())),
            ..Default::default()
        };
        let routes = build(&[r("/a"), r("/a/b/"), r("/c")], None, &d).unwrap();
        assert_eq!(routes.find(None, "/a/b/c").unwrap().path_prefix, "/a/b");
        assert_eq!(routes.find(None, "/a/bc").unwrap().path_prefix, "/a");
        assert!(routes.find(None, "/b").is_none(), "no route, no default: 404");
        let routes = build(&[r("/a")], Some("http://127.0.0.1:2"), &d).unwrap();
        assert_eq!(routes.find(None, "/b").unwrap().policy.name, "default");
        // Round-robin, skipping a failing target.
        let mut f = r("/rr");
        f.upstream = Some(OneOrMany::Many(vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()]));
        f.strip_prefix = Some(true);
        let rr = route(0, &f, &d).unwrap();
        let picks: Vec<u16> = (0..4).map(|_| rr.pick(0).unwrap().url.port().unwrap()).collect();
        assert_eq!(picks, [1, 2, 1, 2]);
        for _ in 0..FAILS_TO_EJECT {
            rr.targets[0].failed(0);
        }
        assert!((0..4).all(|_| rr.pick(1).unwrap().url.port() == Some(2)));
        assert!(rr.pick(EJECT_FOR.as_millis() as i64 + 1).is_some());
        assert_eq!(rr.upstream_path("/rr/x/y"), "/x/y");
        assert_eq!(rr.upstream_path("/rr"), "/");
        // Mistakes name the key.
        let mut bad = r("payments");
        assert!(route(3, &bad, &d).unwrap_err().contains("routes[3].path_prefix"));
        bad = r("/p");
        bad.proof_of_possession_mtls = Some("sometimes".into());
        assert!(route(0, &bad, &d).unwrap_err().contains("routes[0].proof_of_possession_mtls"));
    }
}
