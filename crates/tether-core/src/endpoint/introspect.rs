//! Token introspection (RFC 7662). The caller authenticates as a confidential client and sees its
//! own tokens, or every token with `--introspect-any`; anything else — unknown, expired, revoked,
//! another client's — answers exactly `{"active":false}`.

use serde_json::{Value, json};

use crate::client_auth;
use crate::error::OAuthError;
use crate::form::Form;
use crate::provider::Provider;
use crate::token::{self, Found, MAX_TOKEN_LEN};

pub fn inactive() -> Value {
    json!({"active": false})
}

fn aud_value(aud: &[String]) -> Value {
    if aud.len() == 1 { json!(aud[0]) } else { json!(aud) }
}

pub async fn handle(p: &Provider, form: &Form, authorization: Option<&str>) -> Result<Value, OAuthError> {
    let caller = client_auth::authenticate(p, form, authorization).await?;
    if caller.app.public {
        return Err(OAuthError::invalid_client("public clients cannot introspect tokens"));
    }
    let token = form.require("token")?;
    if token.len() > MAX_TOKEN_LEN {
        return Ok(inactive());
    }
    let now = p.now();
    let found = token::find(p, token, form.get("token_type_hint")).await?;
    // Deleting an app revokes its tokens in the same transaction, so no app check is needed here.
    let visible = |client_id: &str| caller.app.introspect_any || caller.app.client_id == client_id;
    let mut out = match found {
        Some(Found::Access(a)) if a.active(now) && visible(&a.client_id) => {
            let mut v = json!({
                "active": true,
                "scope": a.scope,
                "client_id": a.client_id,
                "sub": a.user_id.as_deref().unwrap_or(&a.client_id),
                "token_type": "Bearer",
                "exp": a.expires_at,
                "iat": a.issued_at,
                "nbf": a.issued_at,
                "aud": aud_value(&a.audience),
                "iss": p.issuer(),
                "jti": a.jti,
            });
            if let Some(u) = &a.username {
                v["username"] = json!(u);
            }
            if let Some(b) = &a.binding {
                v["binding_type"] = json!(b.kind.as_str());
                v["binding_ref"] = json!(b.reference);
            }
            v
        }
        Some(Found::Refresh(r)) if r.active(now) && visible(&r.client_id) => {
            let mut v = json!({
                "active": true,
                "scope": r.scope,
                "client_id": r.client_id,
                "sub": r.user_id.as_deref().unwrap_or(&r.client_id),
                "token_type": "refresh_token",
                "exp": r.expires_at,
                "iat": r.issued_at,
                "nbf": r.issued_at,
                "aud": aud_value(&r.audience),
                "iss": p.issuer(),
            });
            if let Some(u) = &r.username {
                v["username"] = json!(u);
            }
            if let Some(b) = &r.binding {
                v["binding_type"] = json!(b.kind.as_str());
                v["binding_ref"] = json!(b.reference);
            }
            v
        }
        _ => return Ok(inactive()),
    };
    if out["scope"] == json!("")
        && let Some(o) = out.as_object_mut()
    {
        o.remove("scope");
    }
    Ok(out)
}
