//! The OpenAPI 3.1 document of the admin API (admin-api.md A-1): what is not an operation (the
//! description, the tags, the security schemes, the problem body and the error responses every
//! operation refers to), around the operations the parent module's handlers declare with
//! `#[utoipa::path]`. Served at `GET /api/admin/v1/openapi.json` without authentication (it holds
//! nothing an operator's tooling should need a token to read), and checked in as
//! `docs/admin-openapi.json`; a test fails when that copy is stale
//! (`TETHER_UPDATE_OPENAPI=1 cargo test -p tether-server openapi` refreshes it).

use serde::Serialize;
use serde_json::{Value, json};
use tether_core::endpoint::paths;
use utoipa::openapi::OpenApi as Document;
use utoipa::{OpenApi, ToResponse, ToSchema};

/// The API's description, before the paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tether admin API",
        description = "The admin REST API of Tether (admin-api.md A-1 to A-3): apps, users and their sessions, \
tokens, signing keys, audit events.\n\n\
Every operation but this document needs an access token issued by this Tether for the audience \
`{issuer}/api/admin/v1`, presented as `Authorization: Bearer` or, for a DPoP-bound token, \
`Authorization: DPoP` with its `DPoP` proof: `admin:read` for every GET, `admin:write` (which implies \
`admin:read`) for everything else. JSON in and out; PATCH takes `application/merge-patch+json` \
(or `application/json`). Unknown members are refused, naming the member. Errors are RFC 9457 \
`application/problem+json`. Lists are paginated with `limit` (1 to 500, default 50) and `cursor` (the \
previous page's `next_cursor`). Apps carry an `ETag`; a PATCH or DELETE with a non-matching \
`If-Match` answers 412. Times are Unix seconds, except the events' `time` (RFC 3339)."
    ),
    tags(
        (name = "apps", description = "Applications (OAuth clients) and their secrets"),
        (name = "users", description = "Users, their login sessions and sign-in throttles"),
        (name = "tokens", description = "Token metadata and revocation"),
        (name = "keys", description = "Signing keys"),
        (name = "events", description = "Audit events"),
        (name = "meta", description = "This document"),
    ),
    components(
        schemas(ProblemBody, FieldError),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            PreconditionFailed,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unavailable
        )
    )
)]
struct ApiDoc;

/// An RFC 9457 problem: every error of the admin API, `401` and `403` included
/// (`Content-Type: application/problem+json`).
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub(super) struct ProblemBody {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// For invalid input: each offending member.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One offending member of a request.
#[derive(Serialize, ToSchema)]
pub(super) struct FieldError {
    /// A JSON pointer (RFC 6901) in URI fragment form: `#/redirect_uris/0`, `#/limit`; `#` for
    /// the body as a whole.
    pub pointer: String,
    pub detail: String,
}

/// Invalid input: a malformed body, an unknown or invalid member, a bad query parameter; `errors`
/// names each offending member.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct BadRequest(ProblemBody);

/// No access token, or not a valid one for the admin API (RFC 6750 / RFC 9449 challenge).
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer` and `DPoP` challenges"))
)]
#[allow(dead_code)]
pub(super) struct Unauthorized(ProblemBody);

/// The token lacks the scope (`admin:read` for a GET, `admin:write` otherwise).
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers((
        "WWW-Authenticate" = String,
        description = "`Bearer error=\"insufficient_scope\"` naming the scope needed"
    ))
)]
#[allow(dead_code)]
pub(super) struct Forbidden(ProblemBody);

/// No such app, user, session, token or key.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct NotFound(ProblemBody);

/// A name or username that exists, a secret for an app that has none, the only active key.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct Conflict(ProblemBody);

/// `If-Match` does not match the app's `ETag`: it changed since it was read.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct PreconditionFailed(ProblemBody);

/// The body is larger than 64 KiB.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct PayloadTooLarge(ProblemBody);

/// The body is not `application/json` (or, for a PATCH, `application/merge-patch+json`).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct UnsupportedMediaType(ProblemBody);

/// The database is temporarily unavailable; retry shortly.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
#[allow(dead_code)]
pub(super) struct Unavailable(ProblemBody);

/// The whole document: [`ApiDoc`] around `operations` (the handlers' paths, relative to
/// [`paths::ADMIN_API`], and the schemas they use). The security schemes are added to the JSON
/// here: utoipa knows no `DPoP` HTTP authentication scheme (RFC 9449 §7.1).
pub(super) fn document(operations: Document) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi().nest(paths::ADMIN_API, operations)).unwrap_or_default();
    doc["components"]["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "An access token issued by this Tether for the admin API (`aud` \
    `{issuer}/api/admin/v1`). The scopes listed on each operation are the token's: `admin:read` \
    (every GET) or `admin:write` (everything else; it implies `admin:read`). Client credentials of an \
    app created with `--scopes admin:read,admin:write`, or a user holding the role `admin` (both) or \
    `viewer` (`admin:read`).",
        },
        "dpop": {
            "type": "http",
            "scheme": "DPoP",
            "description": "A DPoP-bound access token (`Authorization: DPoP …`) with its proof in the \
    `DPoP` header (RFC 9449), `htu` being this API's URL. Same scopes as `bearer`.",
        },
    });
    doc
}

/// The document as served and checked in: pretty JSON ending in a newline.
pub(super) fn text(doc: &Value) -> String {
    let mut s = serde_json::to_string_pretty(doc).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use std::collections::HashMap;

    use utoipa::IntoParams;

    use super::*;
    use crate::admin_api::{EventListQuery, document, event_query};

    fn checked_in() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-openapi.json")
    }

    /// The checked-in copy is what the code generates. `TETHER_UPDATE_OPENAPI=1` rewrites it.
    #[test]
    fn openapi_checked_in_copy_is_current() {
        let fresh = text(&document());
        let path = checked_in();
        if std::env::var_os("TETHER_UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &fresh).unwrap();
            return;
        }
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        if old != fresh {
            let same = old.lines().zip(fresh.lines()).take_while(|(a, b)| a == b).count();
            let line = same + 1;
            panic!(
                "docs/admin-openapi.json is stale (first difference at line {line}): the admin API changed. \
                 Run `TETHER_UPDATE_OPENAPI=1 cargo test -p tether-server openapi` and commit the file."
            );
        }
    }

    #[test]
    fn openapi_is_3_1_and_every_operation_says_who_may_call_it() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.keys().all(|p| p.starts_with("/api/admin/v1/")), "{:?}", paths.keys());
        let mut n = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                n += 1;
                let id = format!("{method} {path}");
                if path.ends_with("/openapi.json") {
                    assert_eq!(op["security"], json!([{}]), "{id}");
                    continue;
                }
                // As `caller` decides: GET reads, everything else writes.
                let scope = if method == "get" { "admin:read" } else { "admin:write" };
                assert_eq!(op["security"], json!([{"bearer": [scope]}, {"dpop": [scope]}]), "{id}");
                let responses = op["responses"].as_object().unwrap();
                for status in ["401", "403", "503"] {
                    assert!(responses.contains_key(status), "{id} documents no {status}");
                }
                for (status, r) in responses {
                    let reference = r["$ref"].as_str().unwrap_or("");
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(reference.starts_with("#/components/responses/"), "{id} {status}: {r}");
                    } else {
                        assert!(status.starts_with('2'), "{id} {status}");
                    }
                }
                let body_taking = op.get("requestBody").is_some();
                if body_taking {
                    for status in ["400", "413", "415"] {
                        assert!(responses.contains_key(status), "{id} takes a body, documents no {status}");
                    }
                }
            }
        }
        assert_eq!(n, 23, "operations");
        // Every referenced schema and response exists.
        let text = doc.to_string();
        let components = &doc["components"];
        for (kind, prefix) in [("schemas", "#/components/schemas/"), ("responses", "#/components/responses/")] {
            let named: BTreeSet<&str> = components[kind].as_object().unwrap().keys().map(String::as_str).collect();
            for r in text.split(&format!("\"{prefix}")).skip(1) {
                let name = &r[..r.find('"').unwrap()];
                assert!(named.contains(name), "{prefix}{name} is referenced, not defined");
            }
        }
        for scheme in ["bearer", "dpop"] {
            assert!(components["securitySchemes"].get(scheme).is_some(), "{scheme}");
        }
    }

    /// `GET /events` reads its query by hand (to refuse unknown parameters): every documented
    /// filter is accepted, and an undocumented one is refused.
    #[test]
    fn openapi_event_filters_are_the_ones_read() {
        let params = EventListQuery::into_params(|| None);
        let names: BTreeSet<&str> = params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, BTreeSet::from(["type", "since", "until", "client_id", "username", "limit", "cursor"]));
        for name in names {
            let v = match name {
                "type" => "admin.change,logout",
                "since" | "until" => "2026-11-30T08:00:00Z",
                "limit" => "10",
                _ => "x",
            };
            assert!(event_query(&HashMap::from([(name.to_string(), v.to_string())])).is_ok(), "{name}");
        }
        assert!(event_query(&HashMap::from([("kind".to_string(), "logout".to_string())])).is_err());
    }
}
