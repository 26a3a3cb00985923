//! Application settings as the admin CLI (and later the admin API) changes them: defaults, and
//! every check that refuses a configuration that cannot work (token-binding.md B-10), so that no
//! request ever meets a half-valid app.

use crate::binding::registry;
use crate::model::{App, AppRecord, AuthMethod, BindingType, GrantType, IdTokenAlg, Profile, TokenType};
use crate::scope;
use crate::secret::{Secret, b64url, hash_secret, random_bytes, random_token};

/// Requested changes; `None` leaves a setting as it is (or at its default on create).
#[derive(Debug, Default, Clone)]
pub struct AppChanges {
    pub name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub public: Option<bool>,
    pub auth_method: Option<String>,
    pub tls_subject_dn: Option<String>,
    pub cert_file: Option<String>,
    pub token_type: Option<String>,
    pub binding: Option<String>,
    pub validate_binding: Option<bool>,
    pub revoke_on_logout: Option<bool>,
    pub scopes: Option<Vec<String>>,
    pub audience: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub introspect_any: Option<bool>,
    pub require_consent: Option<bool>,
    pub exchange_from: Option<Vec<String>>,
    pub id_token_alg: Option<String>,
    pub access_token_ttl: Option<i64>,
    pub refresh_token_ttl: Option<i64>,
    /// The client's public keys, a JWK Set (JSON text); `Some("")` removes them.
    pub jwks: Option<String>,
    /// Where the client publishes its JWK Set; `Some("")` removes it.
    pub jwks_uri: Option<String>,
    pub require_par: Option<bool>,
    /// `--profile`: `fapi2` or `none`.
    pub profile: Option<String>,
    /// OIDC Back-Channel Logout: `Some("")` removes it.
    pub backchannel_logout_uri: Option<String>,
    pub backchannel_logout_session_required: Option<bool>,
    /// Set only by dynamic client registration (never by the CLI or the admin API).
    pub registered: Option<bool>,
    /// Allow a change that destroys something (making a confidential app public deletes its
    /// secret).
    pub force: bool,
}

/// A new client id: 128 random bits, base64url, never starting with `-` or `_` (a leading `-`
/// reads as a flag on every command line).
pub fn new_client_id() -> String {
    loop {
        let id = b64url(&random_bytes::<16>());
        if id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return id;
        }
    }
}

pub(crate) fn defaults(client_id: String) -> App {
    App {
        client_id,
        name: String::new(),
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        redirect_uris: vec![],
        public: false,
        auth_method: AuthMethod::ClientSecretBasic,
        token_type: TokenType::Opaque,
        binding: BindingType::None,
        validate_binding: false,
        revoke_on_logout: false,
        scopes: vec!["openid".into(), "profile".into(), "email".into()],
        audience: vec![],
        allowed_origins: vec![],
        introspect_any: false,
        require_consent: false,
        exchange_from: vec![],
        id_token_alg: IdTokenAlg::RS256,
        access_token_ttl: 3600,
        refresh_token_ttl: 86400,
        tls_subject_dn: None,
        tls_client_certificates: vec![],
        jwks: None,
        jwks_uri: None,
        require_par: false,
        profile: Profile::None,
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        registered: false,
    }
}

/// The client id of another app named `name` (after trimming), if any: names identify apps to
/// people, so two apps may not share one. Checked here rather than by a database constraint, so
/// that databases holding duplicates from earlier versions stay readable.
pub async fn name_taken(
    store: &dyn crate::store::Store,
    name: &str,
    except: Option<&str>,
) -> Result<Option<String>, crate::error::StoreError> {
    let name = name.trim();
    Ok(store
        .list_apps()
        .await?
        .into_iter()
        .find(|a| a.app.name == name && Some(a.app.client_id.as_str()) != except)
        .map(|a| a.app.client_id))
}

/// A new app; returns it and the client secret (for confidential clients), shown once.
pub fn create(changes: &AppChanges) -> Result<(AppRecord, Option<Secret>), String> {
    if changes.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err("--name is required".into());
    }
    let mut app = defaults(new_client_id());
    apply(&mut app, changes)?;
    let secret = uses_secret(&app).then(|| new_secret(&app));
    let secret_hash = secret.as_ref().map(|s| hash_secret(s.expose()));
    Ok((AppRecord { app, secret_hash, previous_secret: None, sealed_secret: None }, secret))
}

/// Apply changes to an existing app. A client that becomes confidential gets a new secret.
pub fn update(existing: &AppRecord, changes: &AppChanges) -> Result<(AppRecord, Option<Secret>), String> {
    let mut app = existing.app.clone();
    if changes.public.is_none() && changes.auth_method.is_some() && app.public {
        app.public = false; // an explicit auth method other than none makes it confidential below
    }
    apply(&mut app, changes)?;
    if !existing.app.public && app.public && existing.secret_hash.is_some() && !changes.force {
        return Err(format!(
            "this makes {} a public client: its client secret is deleted, so every server using it stops \
             authenticating, and it must use PKCE; add --force to do it",
            existing.app.client_id
        ));
    }
    // Only a hash of the secret exists: a switch to client_secret_jwt needs the secret itself,
    // so it mints a new one (shown once); a switch away drops the sealed copy (the caller seals).
    let to_jwt =
        app.auth_method == AuthMethod::ClientSecretJwt && existing.app.auth_method != AuthMethod::ClientSecretJwt;
    let (secret_hash, secret) = match (uses_secret(&app), &existing.secret_hash) {
        (false, _) => (None, None),
        (true, Some(h)) if !to_jwt => (Some(h.clone()), None),
        (true, _) => {
            let s = new_secret(&app);
            (Some(hash_secret(s.expose())), Some(s))
        }
    };
    let previous_secret = existing.previous_secret.clone().filter(|_| secret_hash.is_some() && secret.is_none());
    let sealed_secret =
        existing.sealed_secret.clone().filter(|_| app.auth_method == AuthMethod::ClientSecretJwt && secret.is_none());
    Ok((AppRecord { app, secret_hash, previous_secret, sealed_secret }, secret))
}

/// Does the app authenticate with a client secret (hashed; sealed too for client_secret_jwt)?
pub fn uses_secret(app: &App) -> bool {
    matches!(
        app.auth_method,
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost | AuthMethod::ClientSecretJwt
    )
}

/// A new client secret: 256 random bits; 512 for client_secret_jwt, whose HS512 needs a key as
/// long as its hash (RFC 7518 §3.2).
pub fn new_secret(app: &App) -> Secret {
    if app.auth_method == AuthMethod::ClientSecretJwt {
        Secret::new(b64url(&random_bytes::<64>()))
    } else {
        Secret::new(random_token())
    }
}

/// The x5t#S256 thumbprints of the client's registered certificates: a PEM text (one or more
/// certificates), or a JWKS (RFC 7517) whose keys carry the certificate as the first `x5c` entry.
pub fn pem_thumbprints(pem: &str) -> Result<Vec<String>, String> {
    use base64::Engine;
    if pem.trim_start().starts_with('{') {
        return jwks_thumbprints(pem);
    }
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(b) = rest.find("-----BEGIN CERTIFICATE-----") {
        let after = &rest[b + "-----BEGIN CERTIFICATE-----".len()..];
        let e = after.find("-----END CERTIFICATE-----").ok_or("--cert-file: a certificate has no END line")?;
        let b64: String = after[..e].chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "--cert-file: bad base64 in a certificate")?;
        out.push(crate::cert::thumbprint(&der));
        rest = &after[e..];
    }
    if out.is_empty() {
        return Err("--cert-file holds no PEM certificate".into());
    }
    Ok(out)
}

fn jwks_thumbprints(text: &str) -> Result<Vec<String>, String> {
    use base64::Engine;
    let jwks: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("--cert-file: not a PEM file, and not JSON either: {e}"))?;
    let keys = jwks["keys"].as_array().ok_or("--cert-file: a JWKS needs a \"keys\" array")?;
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let Some(first) = k["x5c"].as_array().and_then(|c| c.first()) else {
            return Err(format!("--cert-file: JWKS key {i} has no x5c certificate"));
        };
        let der = first
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .ok_or_else(|| format!("--cert-file: JWKS key {i}: x5c[0] is not base64 (RFC 7517 §4.7)"))?;
        out.push(crate::cert::thumbprint(&der));
    }
    if out.is_empty() {
        return Err("--cert-file: the JWKS has no keys".into());
    }
    Ok(out)
}

fn parse_list<T>(items: &[String], what: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    items.iter().map(|s| parse(s.trim()).ok_or_else(|| format!("unknown {what}: {s:?}"))).collect()
}

fn apply(app: &mut App, c: &AppChanges) -> Result<(), String> {
    if let Some(n) = &c.name {
        if n.trim().is_empty() {
            return Err("--name must not be empty".into());
        }
        if n.chars().any(char::is_control) || n.len() > 200 {
            return Err("--name must be at most 200 characters, without control characters".into());
        }
        app.name = n.trim().to_string();
    }
    if let Some(g) = &c.grant_types {
        let mut gts = parse_list(g, "grant type", GrantType::parse_cli)?;
        gts.dedup();
        if gts.is_empty() {
            return Err("--grant-types must name at least one grant type".into());
        }
        app.grant_types = gts;
    }
    if let Some(r) = &c.redirect_uris {
        app.redirect_uris = r.clone();
    }
    if let Some(m) = &c.auth_method {
        app.auth_method = AuthMethod::parse(m).ok_or_else(|| format!("unknown --auth-method {m:?}"))?;
        if c.public.is_none() {
            app.public = app.auth_method == AuthMethod::None;
        }
    }
    if let Some(p) = c.public {
        if p {
            if let Some(m) = &c.auth_method
                && m != "none"
            {
                return Err(format!(
                    "--public cannot be combined with --auth-method {m} (public clients have no secret)"
                ));
            }
            app.public = true;
            app.auth_method = AuthMethod::None;
        } else {
            app.public = false;
        }
    }
    if !app.public && app.auth_method == AuthMethod::None {
        app.auth_method = AuthMethod::ClientSecretBasic;
    }
    if let Some(t) = &c.token_type {
        app.token_type = TokenType::parse(t).ok_or_else(|| format!("unknown --token-type {t:?} (jwt or opaque)"))?;
    }
    if let Some(b) = &c.binding {
        app.binding = BindingType::parse(b).ok_or_else(|| format!("unknown --binding {b:?}"))?;
    }
    if let Some(v) = c.validate_binding {
        app.validate_binding = v;
    }
    if let Some(v) = c.revoke_on_logout {
        app.revoke_on_logout = v;
    }
    if let Some(s) = &c.scopes {
        app.scopes = s.iter().map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
    }
    if let Some(a) = &c.audience {
        app.audience = a.iter().map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect();
    }
    if let Some(o) = &c.allowed_origins {
        app.allowed_origins = o.iter().map(|x| x.trim().trim_end_matches('/').to_string()).collect();
    }
    if let Some(v) = c.introspect_any {
        app.introspect_any = v;
    }
    if let Some(v) = c.require_consent {
        app.require_consent = v;
    }
    if let Some(v) = &c.profile {
        let profile = Profile::parse(v.trim()).ok_or_else(|| format!("unknown --profile {v:?} (fapi2 or none)"))?;
        if profile == Profile::Fapi2 && app.profile != Profile::Fapi2 {
            // What the profile requires and the request leaves open follows it (FAPI 2.0: PAR;
            // ID tokens in one of its algorithms); anything said explicitly is checked below.
            if c.require_par.is_none() {
                app.require_par = true;
            }
            if c.id_token_alg.is_none() && app.id_token_alg == IdTokenAlg::RS256 {
                app.id_token_alg = IdTokenAlg::ES256;
            }
        }
        app.profile = profile;
    }
    if let Some(v) = c.require_par {
        app.require_par = v;
    }
    if let Some(u) = &c.backchannel_logout_uri {
        app.backchannel_logout_uri = if u.trim().is_empty() { None } else { Some(check_backchannel_uri(u.trim())?) };
    }
    if let Some(v) = c.backchannel_logout_session_required {
        app.backchannel_logout_session_required = v;
    }
    if let Some(v) = c.registered {
        app.registered = v;
    }
    if let Some(e) = &c.exchange_from {
        app.exchange_from = e.clone();
    }
    if let Some(a) = &c.id_token_alg {
        app.id_token_alg =
            IdTokenAlg::parse(a).ok_or_else(|| format!("unknown --id-token-alg {a:?} (RS256 or ES256)"))?;
    }
    if let Some(t) = c.access_token_ttl {
        app.access_token_ttl = t;
    }
    if let Some(t) = c.refresh_token_ttl {
        app.refresh_token_ttl = t;
    }
    if let Some(dn) = &c.tls_subject_dn {
        if app.auth_method != AuthMethod::TlsClientAuth {
            return Err("--tls-subject-dn goes with --auth-method tls_client_auth".into());
        }
        let parsed = crate::dn::Dn::parse(dn).map_err(|e| format!("--tls-subject-dn {dn:?}: {e}"))?;
        app.tls_subject_dn = Some(parsed.to_string());
    }
    if let Some(pem) = &c.cert_file {
        if app.auth_method != AuthMethod::SelfSignedTlsClientAuth {
            return Err("--cert-file goes with --auth-method self_signed_tls_client_auth".into());
        }
        app.tls_client_certificates = pem_thumbprints(pem)?;
    }
    if c.jwks.as_deref().is_some_and(|j| !j.is_empty()) && c.jwks_uri.as_deref().is_some_and(|u| !u.is_empty()) {
        return Err("give the client's keys once: --jwks FILE or --jwks-uri URL, not both".into());
    }
    if let Some(j) = &c.jwks {
        app.jwks = if j.trim().is_empty() { None } else { Some(parse_jwks(j)?) };
        if app.jwks.is_some() {
            app.jwks_uri = None;
        }
    }
    if let Some(u) = &c.jwks_uri {
        app.jwks_uri = if u.trim().is_empty() { None } else { Some(check_jwks_uri(u.trim())?) };
        if app.jwks_uri.is_some() {
            app.jwks = None;
        }
    }
    check(app)
}

/// A JWK Set of public keys (RFC 7517 §5): a `keys` array, each with a `kty`, none holding private
/// members, at most 100 keys.
pub fn parse_jwks(text: &str) -> Result<serde_json::Value, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("--jwks is not JSON: {e}"))?;
    let keys = v["keys"].as_array().ok_or("--jwks must be a JWK Set: an object with a \"keys\" array")?;
    if keys.is_empty() || keys.len() > 100 {
        return Err("--jwks must hold between 1 and 100 keys".into());
    }
    for (i, k) in keys.iter().enumerate() {
        if !k["kty"].is_string() {
            return Err(format!("--jwks key {i} has no kty"));
        }
        if let Some(m) = ["d", "p", "q", "dp", "dq", "qi", "k"].iter().find(|m| k.get(**m).is_some()) {
            return Err(format!(
                "--jwks key {i} holds private key material (member {m:?}): register only the public keys"
            ));
        }
    }
    Ok(serde_json::json!({ "keys": keys }))
}

/// A `jwks_uri`: https, or http on a loopback host only (as redirect URIs), no fragment.
fn check_jwks_uri(u: &str) -> Result<String, String> {
    let parsed = url::Url::parse(u).map_err(|_| format!("--jwks-uri {u:?} is not an absolute URL"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if loopback(&parsed) => {}
        _ => return Err(format!("--jwks-uri {u:?} must be an https URL (http only on localhost)")),
    }
    if parsed.fragment().is_some() {
        return Err(format!("--jwks-uri {u:?} must not have a fragment"));
    }
    Ok(u.to_string())
}

/// A `backchannel_logout_uri` (OIDC Back-Channel Logout 1.0 §2.2): https, or http on a loopback
/// host for development; absolute, no fragment.
fn check_backchannel_uri(u: &str) -> Result<String, String> {
    let parsed = url::Url::parse(u).map_err(|_| format!("--backchannel-logout-uri {u:?} is not an absolute URL"))?;
    match parsed.scheme() {
        "https" if parsed.host().is_some() => {}
        "http" if loopback(&parsed) => {}
        _ => {
            return Err(format!(
                "--backchannel-logout-uri {u:?} must be an https URL (http only on localhost, 127.0.0.1 and [::1])"
            ));
        }
    }
    if parsed.fragment().is_some() {
        return Err(format!("--backchannel-logout-uri {u:?} must not have a fragment"));
    }
    Ok(u.to_string())
}

/// Is the URL's host `localhost` or a loopback address?
fn loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A redirect URI: absolute, no fragment, and `http` only on a loopback host (RFC 9700 §2.6,
/// OAuth 2.1 §2.3.1: a code sent over plain HTTP to a network host can be read on the way).
/// Private-use schemes (`com.example.app:/cb`, RFC 8252 §7.1) are allowed.
fn check_redirect_uri(u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|_| format!("redirect URI {u:?} is not an absolute URI"))?;
    if parsed.fragment().is_some() {
        return Err(format!("redirect URI {u:?} must not have a fragment"));
    }
    if parsed.cannot_be_a_base() && parsed.scheme() != "urn" {
        return Err(format!("redirect URI {u:?} is not an absolute URI"));
    }
    if parsed.scheme() == "http" && !loopback(&parsed) {
        return Err(format!(
            "redirect URI {u:?} uses http:// on a network host; use https:// (http is allowed only for \
             localhost, 127.0.0.1 and [::1])"
        ));
    }
    Ok(())
}

/// Every rule an app must satisfy, with a message naming the flag.
pub fn check(app: &App) -> Result<(), String> {
    if app.public && app.allows_grant(GrantType::TokenExchange) {
        return Err("public clients cannot use token exchange (token-binding.md B-9: confidential clients only)".into());
    }
    if app.auth_method == AuthMethod::SelfSignedTlsClientAuth && app.tls_client_certificates.is_empty() {
        return Err("self_signed_tls_client_auth needs the client's certificate: --cert-file PEM".into());
    }
    if app.auth_method == AuthMethod::TlsClientAuth && app.tls_subject_dn.is_none() {
        return Err("tls_client_auth needs the subject DN the client's certificate carries: --tls-subject-dn DN".into());
    }
    if app.auth_method == AuthMethod::PrivateKeyJwt && app.jwks.is_none() && app.jwks_uri.is_none() {
        return Err("private_key_jwt needs the client's public keys: --jwks FILE or --jwks-uri URL".into());
    }
    // B-10: the binding type's own rule (the grants it binds with).
    registry::binder(app.binding).check_app(app)?;
    if app.public && app.allows_grant(GrantType::ClientCredentials) {
        return Err("public clients cannot use the client_credentials grant".into());
    }
    let code = app.allows_grant(GrantType::AuthorizationCode);
    if code && app.redirect_uris.is_empty() {
        return Err("the authorization_code grant needs at least one --redirect-uri (or choose --grant-types)".into());
    }
    if !code && !app.redirect_uris.is_empty() {
        return Err(
            "--redirect-uri is only used by the authorization_code grant; add it to --grant-types or drop the \
                    redirect URIs"
                .into(),
        );
    }
    if !code && app.require_consent {
        return Err("--require-consent is only asked in the authorization_code flow; add it to --grant-types".into());
    }
    for u in &app.redirect_uris {
        check_redirect_uri(u)?;
    }
    if app.scopes.is_empty() {
        return Err("--scopes must name at least one scope".into());
    }
    if let Some(bad) = app.scopes.iter().find(|s| !scope::valid_token(s)) {
        return Err(format!("scope {bad:?} has characters RFC 6749 does not allow"));
    }
    for a in &app.audience {
        let ok = url::Url::parse(a).map(|u| u.fragment().is_none()).unwrap_or(false);
        if !ok {
            return Err(format!("audience {a:?} must be an absolute URI without a fragment (RFC 8707)"));
        }
    }
    for o in &app.allowed_origins {
        let ok = url::Url::parse(o)
            .map(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
                    && !o.ends_with('/')
            })
            .unwrap_or(false);
        if !ok {
            return Err(format!("allowed origin {o:?} must be scheme://host[:port], without a path"));
        }
    }
    if app.validate_binding && app.binding == BindingType::None {
        return Err("--validate-binding needs a --binding type".into());
    }
    if !(1..=31_536_000).contains(&app.access_token_ttl) {
        return Err("--access-token-ttl must be between 1 and 31536000 seconds".into());
    }
    if !(1..=315_360_000).contains(&app.refresh_token_ttl) {
        return Err("--refresh-token-ttl must be between 1 and 315360000 seconds".into());
    }
    if app.backchannel_logout_session_required && app.backchannel_logout_uri.is_none() {
        return Err("--backchannel-logout-session-required goes with --backchannel-logout-uri".into());
    }
    crate::profile::check_app(app)?;
    check_third_party(app)
}

pub use crate::registration_config::PRIVILEGED_SCOPES;

/// A client registered through RFC 7591 is a third party: whatever changes it later (its own
/// RFC 7592 update, or an operator), it asks the user's consent, and it holds none of what would
/// let it act beyond its users' grants.
fn check_third_party(app: &App) -> Result<(), String> {
    if !app.registered {
        return Ok(());
    }
    let who = "a dynamically registered client";
    if !app.require_consent && app.allows_grant(GrantType::AuthorizationCode) {
        return Err(format!("{who} always asks for consent (--require-consent)"));
    }
    if app.introspect_any {
        return Err(format!("{who} cannot introspect other apps' tokens (--introspect-any)"));
    }
    if !app.exchange_from.is_empty() {
        return Err(format!("{who} cannot exchange other apps' tokens (--exchange-from)"));
    }
    if app.allows_grant(GrantType::Password) {
        return Err(format!("{who} cannot use the password grant"));
    }
    if let Some(s) = app.scopes.iter().find(|s| PRIVILEGED_SCOPES.contains(&s.as_str())) {
        return Err(format!("{who} cannot hold the scope {s:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch() -> AppChanges {
        AppChanges { name: Some("x".into()), grant_types: Some(vec!["password".into()]), ..Default::default() }
    }

    #[test]
    fn refuses_bad_combinations() {
        let mut c = ch();
        c.public = Some(true);
        c.auth_method = Some("client_secret_basic".into());
        assert!(create(&c).unwrap_err().contains("--public"));
        let mut c = ch();
        c.grant_types = Some(vec!["nope".into()]);
        assert!(create(&c).is_err());
        let mut c = ch();
        c.grant_types = Some(vec!["authorization_code".into()]);
        c.redirect_uris = Some(vec!["/relative".into()]);
        assert!(create(&c).unwrap_err().contains("absolute"));
        let (rec, secret) = create(&ch()).unwrap();
        assert!(secret.is_some() && rec.secret_hash.is_some());
        let mut c = ch();
        c.public = Some(true);
        let (rec, secret) = create(&c).unwrap();
        assert!(secret.is_none() && rec.secret_hash.is_none() && rec.app.auth_method == AuthMethod::None);
    }
}
