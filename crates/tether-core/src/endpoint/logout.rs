//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and what ending a login session
//! revokes (token-binding.md B-6).
//!
//! A request with a valid `id_token_hint` (an ID token this server signed) naming the session of
//! the browser it comes from ends that session at once; a hint naming any other session ends
//! nothing (a stolen ID token must not log its user out from elsewhere). Without a hint the user
//! confirms on a page first, so a cross-site link or image
//! cannot log anyone out or revoke their tokens. `post_logout_redirect_uri` must be one of the
//! client's registered redirect URIs (Tether has no separate list), compared exactly; it is used
//! only when the client is known (`client_id` or the hint's `aud`).

use std::sync::Arc;

use serde_json::Value;

use crate::binding::{Evidence, registry};
use crate::error::OAuthError;
use crate::form::Form;
use crate::model::AppRecord;
use crate::provider::Provider;
use crate::store::{RevokeFilter, SessionRecord};

#[derive(Debug, Clone)]
pub struct LogoutRequest {
    pub client: Option<Arc<AppRecord>>,
    /// Claims of a valid `id_token_hint`.
    pub hint: Option<Value>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

impl LogoutRequest {
    /// The hint's `sid`, when the hint is valid.
    pub fn hint_sid(&self) -> Option<&str> {
        self.hint.as_ref()?.get("sid")?.as_str()
    }

    /// Does the (valid) hint name this login session: same user, and the same `sid` when it
    /// carries one?
    pub fn hint_names(&self, s: &SessionRecord) -> bool {
        let Some(h) = &self.hint else { return false };
        let same_user = h.get("sub").and_then(Value::as_str) == Some(s.user_id.as_str());
        same_user && self.hint_sid().is_none_or(|sid| sid == s.id)
    }
}

/// Check the logout parameters. Errors are shown on a page (never redirected).
pub async fn validate(p: &Provider, form: &Form) -> Result<LogoutRequest, OAuthError> {
    let hint = match form.get("id_token_hint") {
        None => None,
        Some(t) => {
            let keys = p.keys();
            // Only an ID token of this issuer: an access token (`at+jwt`), signed with the same
            // keys and held by resource servers, must not log anyone out.
            let id_token = crate::keys::parse_jws(t).is_some_and(|(h, c, _, _)| {
                h.get("typ").and_then(Value::as_str) != Some("at+jwt") && c.get("sub").is_some()
            });
            let claims = crate::keys::verify_own(&keys.jwks, t)
                .filter(|_| id_token)
                .filter(|c| c.get("iss").and_then(Value::as_str) == Some(p.issuer()));
            if claims.is_none() {
                // RP-Initiated Logout §2: an invalid hint must not end the session silently; the
                // user is asked instead.
                tracing::debug!("id_token_hint is not an ID token of this issuer; asking the user");
            }
            claims
        }
    };
    let hint_aud: Option<String> = hint.as_ref().and_then(|c| match c.get("aud") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_string),
        _ => None,
    });
    let client_id = match (form.get("client_id"), &hint_aud) {
        (Some(c), Some(a)) if c != a => {
            return Err(OAuthError::invalid_request("client_id does not match the audience of the id_token_hint"));
        }
        (Some(c), _) => Some(c.to_string()),
        (None, a) => a.clone(),
    };
    let client = match &client_id {
        Some(c) => Some(p.find_app(c).await?.ok_or_else(|| OAuthError::invalid_request("unknown client_id"))?),
        None => None,
    };
    let post_logout_redirect_uri = match form.get("post_logout_redirect_uri") {
        None => None,
        Some(u) => match &client {
            Some(app) if app.app.redirect_uris.iter().any(|r| r == u) => Some(u.to_string()),
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "post_logout_redirect_uri is not a redirect URI registered for this client",
                ));
            }
            None => {
                return Err(OAuthError::invalid_request(
                    "post_logout_redirect_uri needs client_id or id_token_hint to say which client it belongs to",
                ));
            }
        },
    };
    Ok(LogoutRequest { client, hint, post_logout_redirect_uri, state: form.get("state").map(str::to_string) })
}

/// Where to send the browser after logout, with `state`.
pub fn redirect_after(req: &LogoutRequest) -> Option<String> {
    let uri = req.post_logout_redirect_uri.as_ref()?;
    let mut u = url::Url::parse(uri).ok()?;
    if let Some(s) = &req.state {
        u.query_pairs_mut().append_pair("state", s);
    }
    Some(u.to_string())
}

/// End a login session and revoke what B-6 says, as each binding type's binder describes it.
/// `ev`: what the browser presents (its `atbv` cookie). Returns how many tokens were revoked.
pub async fn end_session(p: &Provider, session: &SessionRecord, ev: &Evidence<'_>) -> Result<u64, OAuthError> {
    let now = p.now();
    p.store.end_session(&session.id, now).await?;
    let mut revoked = 0;
    // Tokens tied to this session by their binding type, in every app, whatever the flags.
    for kind in registry::tied_to_session() {
        let f = RevokeFilter { session_id: Some(session.id.clone()), binding_kind: Some(kind), ..Default::default() };
        revoked += p.store.revoke_matching(&f, now).await?;
    }
    let revoke_on_logout: Vec<String> =
        p.store.list_apps().await?.into_iter().filter(|a| a.app.revoke_on_logout).map(|a| a.app.client_id).collect();
    if !revoke_on_logout.is_empty() {
        // Apps with --revoke-on-logout: the user's tokens issued through this session, except
        // those whose binding type a browser logout never touches (B-6).
        let f = RevokeFilter {
            session_id: Some(session.id.clone()),
            client_ids: Some(revoke_on_logout.clone()),
            spare_binding_kinds: registry::spared_by_logout(),
            ..Default::default()
        };
        revoked += p.store.revoke_matching(&f, now).await?;
        // What else each binding type revokes on a browser logout (the `atbv` cookie's tokens).
        for mut f in registry::all().filter_map(|b| b.on_logout(session, ev)) {
            f.client_ids = Some(revoke_on_logout.clone());
            revoked += p.store.revoke_matching(&f, now).await?;
        }
    }
    tracing::info!(sid = %session.id, revoked, "login session ended");
    let username = p.store.get_user(&session.user_id).await?.map(|u| u.user.username);
    let actor = crate::audit::Actor { username, ..Default::default() };
    p.event(crate::audit::kind::LOGOUT, &actor, serde_json::json!({"target": session.id, "revoked": revoked}));
    Ok(revoked)
}
