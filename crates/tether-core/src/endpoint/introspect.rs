//! Token introspection (RFC 7662). The caller authenticates as a confidential client and sees its
//! own tokens, or every token with `--introspect-any`; anything else — unknown, expired, revoked,
//! another client's — answers exactly `{"active":false}`.

use serde_json::{Value, json};

use crate::binding::registry;
use crate::client_auth;
use crate::error::OAuthError;
use crate::form::Form;
use crate::provider::Provider;
use crate::store::BindingRecord;
use crate::token::{self, Found, MAX_TOKEN_LEN, liveness};

pub fn inactive() -> Value {
    json!({"active": false})
}

fn aud_value(aud: &[String]) -> Value {
    if aud.len() == 1 { json!(aud[0]) } else { json!(aud) }
}

/// The RFC 7662 members every active token shows, plus its binding (token-binding.md B-4).
#[allow(clippy::too_many_arguments)]
fn members(
    p: &Provider,
    client_id: &str,
    user_id: Option<&str>,
    username: Option<&str>,
    scope: &str,
    audience: &[String],
    iat: i64,
    exp: i64,
    binding: Option<&BindingRecord>,
) -> Value {
    let mut v = json!({
        "active": true,
        "client_id": client_id,
        "sub": user_id.unwrap_or(client_id),
        "exp": exp,
        "iat": iat,
        "nbf": iat,
        "aud": aud_value(audience),
        "iss": p.issuer(),
    });
    if !scope.is_empty() {
        v["scope"] = json!(scope);
    }
    if let Some(u) = username {
        v["username"] = json!(u);
    }
    if let Some(b) = binding {
        v["binding_type"] = json!(b.kind.as_str());
        v["binding_ref"] = json!(b.reference);
        if let Some(cnf) = registry::cnf(b) {
            v["cnf"] = cnf;
        }
    }
    v
}

/// The answer, and the client that authenticated (`None` when none did), for the access log.
pub async fn handle(
    p: &Provider,
    form: &Form,
    authorization: Option<&str>,
    peer_cert: Option<&crate::cert::ClientCert>,
) -> (Option<String>, Result<Value, OAuthError>) {
    let mut client_id = None;
    let answer = run(p, form, authorization, peer_cert, &mut client_id).await;
    (client_id, answer)
}

async fn run(
    p: &Provider,
    form: &Form,
    authorization: Option<&str>,
    peer_cert: Option<&crate::cert::ClientCert>,
    client_id: &mut Option<String>,
) -> Result<Value, OAuthError> {
    let caller = client_auth::authenticate(p, form, authorization, peer_cert, super::paths::INTROSPECT).await?;
    if caller.app.public {
        // The same answer as any failed client authentication (no client enumeration).
        return Err(client_auth::failed(
            &caller.app.client_id,
            caller.app.auth_method,
            "public clients cannot introspect",
        ));
    }
    *client_id = Some(caller.app.client_id.clone());
    let token = form.require("token")?;
    if token.len() > MAX_TOKEN_LEN {
        return Ok(inactive());
    }
    let now = p.now();
    let found = token::find(p, token, form.get("token_type_hint").map(str::trim)).await?;
    // Deleting an app revokes its tokens in the same transaction, so no app check is needed here.
    let visible = |client_id: &str| caller.app.introspect_any || caller.app.client_id == client_id;
    let out = match found {
        Some(Found::Access(a)) if a.active(now) && visible(&a.client_id) && liveness::access_alive(p, &a).await? => {
            let mut v = members(
                p,
                &a.client_id,
                a.user_id.as_deref(),
                a.username.as_deref(),
                &a.scope,
                &a.audience,
                a.issued_at,
                a.expires_at,
                a.binding.as_ref(),
            );
            v["token_type"] = json!(registry::token_type(a.binding.as_ref()));
            v["jti"] = json!(a.jti);
            if let Some(act) = a.act.as_deref().and_then(|x| serde_json::from_str::<Value>(x).ok()) {
                v["act"] = act;
            }
            v
        }
        Some(Found::Refresh(r)) if r.active(now) && visible(&r.client_id) && liveness::refresh_alive(p, &r).await? => {
            let mut v = members(
                p,
                &r.client_id,
                r.user_id.as_deref(),
                r.username.as_deref(),
                &r.scope,
                &r.audience,
                r.issued_at,
                r.expires_at,
                r.binding.as_ref(),
            );
            v["token_type"] = json!("refresh_token");
            v
        }
        _ => return Ok(inactive()),
    };
    Ok(out)
}
