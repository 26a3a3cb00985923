//! The admin REST API, as an operator drives it with a client-credentials admin app: apps, secrets,
//! users, sessions, tokens, keys, events; who may call it; what it refuses.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tether_testkit::*;

const API: &str = "/api/admin/v1";

struct Admin<'a> {
    srv: &'a TestServer,
    c: Client,
    token: String,
}

impl<'a> Admin<'a> {
    /// An admin app (client credentials, admin:read admin:write) and its token.
    async fn new(srv: &'a TestServer, scopes: &str) -> Admin<'a> {
        let mut ch = app(&["client_credentials"]);
        ch.scopes = Some(scopes.split(' ').map(str::to_string).collect());
        ch.name = Some(format!("ops {scopes}"));
        let a = srv.create_app(ch).await;
        let r = srv.token(&a, &[("grant_type", "client_credentials"), ("scope", scopes)]).await;
        assert_eq!(r.status(), 200);
        let t: Value = r.json().await.unwrap();
        Admin { srv, c: srv.client(), token: t["access_token"].as_str().unwrap().to_string() }
    }
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut r = self.c.request(method, self.srv.url(&format!("{API}{path}"))).bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null), headers)
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, v, _) = self.call(Method::GET, path, None).await;
        (s, v)
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, v, _) = self.call(Method::POST, path, Some(body)).await;
        (s, v)
    }
    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .c
            .patch(self.srv.url(&format!("{API}{path}")))
            .bearer_auth(&self.token)
            .header("content-type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }
}

fn creds(v: &Value) -> AppCreds {
    AppCreds {
        client_id: v["client_id"].as_str().unwrap().to_string(),
        client_secret: v["client_secret"].as_str().map(str::to_string),
    }
}

#[tokio::test]
async fn an_operator_manages_apps_and_secrets_over_the_api() {
    let srv = TestServer::start().await;
    let admin = Admin::new(&srv, "admin:read admin:write").await;
    // The admin token is audience-restricted to the admin API.
    let claims_aud = srv.introspect(&srv.create_app(app(&["client_credentials"])).await, &admin.token).await;
    assert_eq!(claims_aud["active"], false, "another client cannot even see it");

    let (status, created, headers) = admin
        .call(
            Method::POST,
            "/apps",
            Some(json!({"name": "billing", "grant_types": ["client_credentials"], "token_type": "jwt"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["client_id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("{API}/apps/{id}"));
    assert!(headers.contains_key("etag"));
    let billing = creds(&created);
    // Usable at once.
    let r = srv.token(&billing, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.status(), 200);
    // The secret is shown once.
    let (_, shown) = admin.get(&format!("/apps/{id}")).await;
    assert!(shown.get("client_secret").is_none());

    // Change the binding type: the next token is bound.
    let (status, v) =
        admin.patch(&format!("/apps/{id}"), json!({"binding": "client-request", "validate_binding": true})).await;
    assert_eq!(status, 200, "{v}");
    let t: Value = srv
        .token(&billing, &[("grant_type", "client_credentials"), ("tokenBindingId", "k1")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(jwt_claims(t["access_token"].as_str().unwrap())["binding_type"], "client-request");
    // A change that would make the app invalid is refused with the B-10 message and changes nothing.
    let (status, v) = admin.patch(&format!("/apps/{id}"), json!({"binding": "device-flow"})).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("device_code"), "{v}");
    assert_eq!(v["errors"][0]["pointer"], "#/grant_types", "{v}");
    assert_eq!(admin.get(&format!("/apps/{id}")).await.1["binding"], "client-request");
    // Unknown members are named.
    let (status, v) = admin.patch(&format!("/apps/{id}"), json!({"bindng": "none"})).await;
    assert_eq!(status, 400);
    assert_eq!(v["errors"][0]["pointer"], "#/bindng", "{v}");

    // A new secret: the old one is refused at once (no grace), the new one works.
    let (status, v) = admin.post(&format!("/apps/{id}/secret"), json!({})).await;
    assert_eq!(status, 200, "{v}");
    let fresh = creds(&v);
    assert_eq!(
        srv.token(&billing, &[("grant_type", "client_credentials"), ("tokenBindingId", "k")]).await.status(),
        401
    );
    assert_eq!(srv.token(&fresh, &[("grant_type", "client_credentials"), ("tokenBindingId", "k")]).await.status(), 200);
    // With a grace period both work until it ends.
    let (_, v) = admin.post(&format!("/apps/{id}/secret"), json!({"grace_seconds": 60})).await;
    let newest = creds(&v);
    assert_eq!(srv.token(&fresh, &[("grant_type", "client_credentials"), ("tokenBindingId", "k")]).await.status(), 200);
    srv.clock.advance(61);
    assert_eq!(srv.token(&fresh, &[("grant_type", "client_credentials"), ("tokenBindingId", "k")]).await.status(), 401);
    assert_eq!(
        srv.token(&newest, &[("grant_type", "client_credentials"), ("tokenBindingId", "k")]).await.status(),
        200
    );

    // Names are unique; unknown ids are 404; If-Match mismatches are 412.
    let (status, _) = admin.post("/apps", json!({"name": "billing", "grant_types": ["client_credentials"]})).await;
    assert_eq!(status, 409);
    assert_eq!(admin.get("/apps/nope").await.0, 404);
    let r = admin
        .c
        .patch(srv.url(&format!("{API}/apps/{id}")))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .header("if-match", "\"stale\"")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let r = admin.c.post(srv.url(&format!("{API}/apps"))).bearer_auth(&admin.token).body("x").send().await.unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    // Pagination.
    let (_, page1) = admin.get("/apps?limit=1").await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 1);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = admin.get(&format!("/apps?limit=1&cursor={cursor}")).await;
    assert_ne!(page1["items"][0]["client_id"], page2["items"][0]["client_id"]);

    // Delete: its tokens stop working at once.
    let t = srv.token(&newest, &[("grant_type", "client_credentials"), ("tokenBindingId", "k9")]).await;
    let at = t.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let (status, _, _) = admin.call(Method::DELETE, &format!("/apps/{id}"), None).await;
    assert_eq!(status, 204);
    let mut rs = app(&["client_credentials"]);
    rs.introspect_any = Some(true);
    rs.name = Some("rs".into());
    let rs = srv.create_app(rs).await;
    assert_eq!(srv.introspect(&rs, &at).await["active"], false);

    // The audit trail names the actor.
    let (_, ev) = admin.get("/events?type=admin.change").await;
    let actions: Vec<&str> =
        ev["items"].as_array().unwrap().iter().map(|e| e["detail"]["action"].as_str().unwrap()).collect();
    for a in ["app.create", "app.update", "app.secret", "app.delete"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    let update = ev["items"].as_array().unwrap().iter().find(|e| e["detail"]["action"] == "app.update").unwrap();
    assert!(update["client_id"].as_str().unwrap().len() > 10, "the actor: {update}");
    assert_eq!(update["detail"]["target"], id);
    assert_eq!(update["detail"]["changes"]["binding"]["after"], "client-request", "{update}");
    assert!(!ev.to_string().contains(fresh.client_secret.as_deref().unwrap()), "no secret in events");
}

#[tokio::test]
async fn users_sessions_and_tokens_end_together() {
    let srv = TestServer::start().await;
    let admin = Admin::new(&srv, "admin:read admin:write").await;
    let (status, u) = admin
        .post("/users", json!({"username": "dana", "password": "dana-pw", "email": "d@example.com", "roles": []}))
        .await;
    assert_eq!(status, 201, "{u}");
    assert!(u.get("password").is_none());
    let web = srv.create_app(app(&["authorization_code", "password", "refresh_token"])).await;
    // A browser session and a token.
    let browser = srv.browser();
    let q = format!(
        "response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=openid",
        web.client_id
    );
    let loc = login_flow(&srv, &browser, &q, "dana", "dana-pw").await;
    assert!(query_param(&loc, "code").is_some());
    let t: Value = srv
        .token(&web, &[("grant_type", "password"), ("username", "dana"), ("password", "dana-pw")])
        .await
        .json()
        .await
        .unwrap();
    let at = t["access_token"].as_str().unwrap();
    let (_, sessions) = admin.get("/users/dana/sessions").await;
    assert_eq!(sessions["items"].as_array().unwrap().len(), 1, "{sessions}");
    assert_eq!(sessions["items"][0]["ip"], "127.0.0.1");

    // One call: every session ended, every token revoked.
    let (status, v) = admin.post("/users/dana/logout", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(srv.introspect(&web, at).await["active"], false);
    assert!(admin.get("/users/dana/sessions").await.1["items"].as_array().unwrap().is_empty());
    let r = browser.get(srv.url(&format!("/oauth2/authorize?{q}"))).send().await.unwrap();
    assert_eq!(r.status(), 200, "a fresh authorize asks for a login");

    // Tokens by user, revoked one by one or all at once; metadata only.
    for _ in 0..2 {
        srv.token(&web, &[("grant_type", "password"), ("username", "dana"), ("password", "dana-pw")]).await;
    }
    let (_, list) = admin.get("/tokens?username=dana").await;
    let items = list["items"].as_array().unwrap();
    assert!(items.len() >= 4, "access and refresh tokens: {list}");
    assert!(items.iter().all(|t| !t.to_string().contains(at)), "never a token value");
    let active: Vec<&Value> = items.iter().filter(|t| t["state"] == "active").collect();
    let one = active[0]["id"].as_str().unwrap();
    assert_eq!(admin.post(&format!("/tokens/{one}/revoke"), json!({})).await.0, 200);
    let (status, v) = admin.post("/tokens/revoke", json!({"username": "dana"})).await;
    assert_eq!(status, 200);
    assert!(v["revoked"].as_u64().unwrap() >= 1);
    assert_eq!(admin.post("/tokens/revoke", json!({})).await.0, 400, "an empty filter");

    // Disabled: sign-in refused as a wrong password would be; the event says why.
    let (status, _) = admin.patch("/users/dana", json!({"disabled": true})).await;
    assert_eq!(status, 200);
    let r = srv.token(&web, &[("grant_type", "password"), ("username", "dana"), ("password", "dana-pw")]).await;
    assert_oauth_error(r, 400, "invalid_grant").await;
    let (_, ev) = admin.get("/events?type=login.failure&username=dana").await;
    assert_eq!(ev["items"][0]["detail"]["reason"], "disabled", "{ev}");
    assert_eq!(ev["items"][0]["username"], "dana");
}

#[tokio::test]
async fn who_may_call_the_admin_api() {
    let srv = TestServer::start().await;
    let reader = Admin::new(&srv, "admin:read").await;
    assert_eq!(reader.get("/apps").await.0, 200);
    let (status, v, h) = reader.call(Method::POST, "/keys/rotate", Some(json!({}))).await;
    assert_eq!(status, 403, "{v}");
    let challenge = h["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("insufficient_scope") && challenge.contains("admin:write"), "{challenge}");
    assert_eq!(h["content-type"], "application/problem+json");
    // No token, a bad token, an ordinary token of another audience: 401 with a challenge.
    let r = srv.client().get(srv.url(&format!("{API}/apps"))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let plain = srv.create_app(app(&["client_credentials"])).await;
    let t: Value = srv.token(&plain, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
    let r = srv.client().get(srv.url(&format!("{API}/apps"))).bearer_auth(t["access_token"].as_str().unwrap());
    assert_eq!(r.send().await.unwrap().status(), 401, "not an admin-audience token");

    // A DPoP-bound admin token: proven on every call (htu: the full URL of the request).
    let mut ch = app(&["client_credentials"]);
    ch.scopes = Some(vec!["admin:read".into()]);
    let dpop_app = srv.create_app(ch).await;
    let key = DpopKey::generate();
    let now = tether_core::clock::Clock::now(&srv.clock);
    let r = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .basic_auth(&dpop_app.client_id, dpop_app.client_secret.as_deref())
        .header("dpop", key.proof("POST", &srv.url("/oauth2/token"), now, None, None))
        .form(&[("grant_type", "client_credentials"), ("scope", "admin:read")])
        .send()
        .await
        .unwrap();
    let t: Value = r.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap();
    let url = srv.url(&format!("{API}/apps"));
    let r = srv.client().get(&url).header("authorization", format!("DPoP {at}")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no proof");
    let proof = key.proof("GET", &url, now, Some(at), None);
    let r = srv.client().get(&url).header("authorization", format!("DPoP {at}")).header("dpop", proof).send().await;
    assert_eq!(r.unwrap().status(), 200, "with its proof");
    let other = DpopKey::generate().proof("GET", &url, now, Some(at), None);
    let r = srv.client().get(&url).header("authorization", format!("DPoP {at}")).header("dpop", other).send().await;
    assert_eq!(r.unwrap().status(), 401, "another key's proof");

    // A user's admin scopes go only as far as their roles.
    srv.add_user("eve", "pw").await;
    let mut ch = app(&["password"]);
    ch.scopes = Some(vec!["openid".into(), "admin:read".into(), "admin:write".into()]);
    ch.name = Some("console-like".into());
    let ui = srv.create_app(ch).await;
    let form = [
        ("grant_type", "password"),
        ("username", "eve"),
        ("password", "pw"),
        ("scope", "openid admin:read admin:write"),
    ];
    let t: Value = srv.token(&ui, &form).await.json().await.unwrap();
    assert_eq!(t["scope"], "openid", "no roles, no admin scopes: {t}");
    let writer = Admin::new(&srv, "admin:read admin:write").await;
    assert_eq!(writer.patch("/users/eve", json!({"roles": ["viewer"]})).await.0, 200);
    let t: Value = srv.token(&ui, &form).await.json().await.unwrap();
    assert_eq!(t["scope"], "admin:read openid", "{t}");
    assert_eq!(writer.patch("/users/eve", json!({"roles": ["nobody"]})).await.0, 400);
}

#[tokio::test]
async fn retiring_a_key_ends_its_tokens_and_the_last_key_stays() {
    let srv = TestServer::start().await;
    let admin = Admin::new(&srv, "admin:read admin:write").await;
    let mut ch = app(&["client_credentials"]);
    ch.token_type = Some("jwt".into());
    ch.introspect_any = Some(true);
    ch.name = Some("jwt app".into());
    let a = srv.create_app(ch).await;
    let t: Value = srv.token(&a, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap();
    let kid = jwt_header(at)["kid"].as_str().unwrap().to_string();
    assert_eq!(srv.introspect(&a, at).await["active"], true);
    let (status, v, _) = admin.call(Method::DELETE, &format!("/keys/{kid}"), None).await;
    assert_eq!(status, 409, "the only active ES256 key: {v}");
    assert_eq!(admin.post("/keys/rotate", json!({})).await.0, 200);
    let (status, _, _) = admin.call(Method::DELETE, &format!("/keys/{kid}"), None).await;
    assert_eq!(status, 204);
    let jwks: Value = srv.client().get(srv.url("/oauth2/jwks")).send().await.unwrap().json().await.unwrap();
    assert!(!jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid.as_str()), "left the JWKS at once");
    assert_eq!(srv.introspect(&a, at).await["active"], false, "its JWTs stop verifying");
    let (_, keys) = admin.get("/keys").await;
    let retired = keys["items"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap().clone();
    assert_eq!(retired["state"], "retired");
}

/// A value against a schema of the OpenAPI document: its JSON type, enum, required members, and no
/// member the schema does not name (`$ref` and `allOf` resolved, `oneOf` one of them). Returns what
/// does not match.
fn mismatches(doc: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        return mismatches(doc, &doc["components"]["schemas"][name], v, at);
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let fits = one.iter().any(|s| mismatches(doc, s, v, at).is_empty());
        return if fits { vec![] } else { vec![format!("{at}: {v} is none of {schema}")] };
    }
    // allOf: one object schema of every part's properties and required members.
    let mut props = serde_json::Map::new();
    let mut required: Vec<Value> = vec![];
    let parts: Vec<Value> = match schema["allOf"].as_array() {
        Some(all) => all
            .iter()
            .map(|s| match s["$ref"].as_str() {
                Some(r) => doc["components"]["schemas"][r.rsplit('/').next().unwrap()].clone(),
                None => s.clone(),
            })
            .collect(),
        None => vec![schema.clone()],
    };
    for p in &parts {
        props.extend(p["properties"].as_object().cloned().unwrap_or_default());
        required.extend(p["required"].as_array().cloned().unwrap_or_default());
    }
    let types: Vec<&str> = match &parts[parts.len() - 1]["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut out = vec![];
    let fits = types.is_empty() || types.contains(&kind) || (kind == "integer" && types.contains(&"number"));
    if !fits {
        out.push(format!("{at}: {v} is not {types:?}"));
        return out;
    }
    if let Some(e) = schema["enum"].as_array()
        && !e.contains(v)
    {
        out.push(format!("{at}: {v} is not one of {e:?}"));
    }
    match v {
        Value::Object(o) if types.contains(&"object") => {
            for r in &required {
                if !o.contains_key(r.as_str().unwrap()) {
                    out.push(format!("{at}: no required member {r}"));
                }
            }
            for (k, x) in o {
                match props.get(k) {
                    Some(s) => out.extend(mismatches(doc, s, x, &format!("{at}/{k}"))),
                    None => out.push(format!("{at}: undocumented member {k}")),
                }
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                out.extend(mismatches(doc, &schema["items"], x, &format!("{at}/{i}")));
            }
        }
        _ => {}
    }
    out
}

/// The schema the document gives for an answer (problems through `#/components/responses`).
fn documented_answer<'a>(doc: &'a Value, method: &str, path: &str, status: u16) -> (&'a str, &'a Value) {
    let mut r = &doc["paths"][format!("{API}{path}")][method.to_lowercase()]["responses"][status.to_string()];
    assert!(!r.is_null(), "{method} {path} does not document {status}");
    if let Some(name) = r["$ref"].as_str() {
        r = &doc["components"]["responses"][name.rsplit('/').next().unwrap()];
    }
    let (ct, media) = r["content"].as_object().unwrap().iter().next().unwrap();
    (ct.as_str(), &media["schema"])
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_the_answers_match_it() {
    let srv = TestServer::start().await;
    let c = srv.client();
    // Served without a token.
    let r = c.get(srv.url(&format!("{API}/openapi.json"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    // Every route of A-3, and this document: no more, no fewer.
    let a3 = [
        "GET /apps",
        "POST /apps",
        "GET /apps/{client_id}",
        "PATCH /apps/{client_id}",
        "DELETE /apps/{client_id}",
        "POST /apps/{client_id}/secret",
        "GET /users",
        "POST /users",
        "GET /users/{username}",
        "PATCH /users/{username}",
        "DELETE /users/{username}",
        "GET /users/{username}/sessions",
        "DELETE /users/{username}/sessions/{id}",
        "POST /users/{username}/logout",
        "POST /users/{username}/unlock",
        "GET /tokens",
        "POST /tokens/{id}/revoke",
        "POST /tokens/revoke",
        "GET /keys",
        "POST /keys/rotate",
        "DELETE /keys/{kid}",
        "GET /events",
        "GET /openapi.json",
    ];
    let documented: std::collections::BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            let p = p.strip_prefix(API).unwrap().to_string();
            item.as_object().unwrap().keys().map(move |m| format!("{} {p}", m.to_uppercase()))
        })
        .collect();
    assert_eq!(documented, a3.iter().map(|s| s.to_string()).collect());

    // The router serves exactly what the document lists: each documented operation reaches its
    // handler (without a token: the 401 problem, not the 404 of an unknown resource), every other
    // method on a documented path is 405.
    for path in doc["paths"].as_object().unwrap().keys() {
        let concrete: String =
            path.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/");
        for m in [Method::GET, Method::POST, Method::PATCH, Method::DELETE, Method::PUT] {
            let r = c.request(m.clone(), srv.url(&concrete)).send().await.unwrap();
            let op = format!("{m} {}", path.strip_prefix(API).unwrap());
            if !documented.contains(&op) {
                assert_eq!(r.status(), 405, "{op} is served but not documented");
            } else if path.ends_with("/openapi.json") {
                assert_eq!(r.status(), 200, "{op}");
            } else {
                assert_eq!(r.status(), 401, "{op} is documented but not served");
                assert_eq!(r.headers()["content-type"], "application/problem+json", "{op}");
            }
        }
    }

    // Real answers of every kind match the schemas the document gives them.
    let admin = Admin::new(&srv, "admin:read admin:write").await;
    let (status, u) = admin.post("/users", json!({"username": "olive", "password": "olive-pw"})).await;
    assert_eq!(status, 201, "{u}");
    let web = srv.create_app(app(&["authorization_code", "password", "refresh_token"])).await;
    let q = format!(
        "response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=openid",
        web.client_id
    );
    login_flow(&srv, &srv.browser(), &q, "olive", "olive-pw").await;
    srv.token(&web, &[("grant_type", "password"), ("username", "olive"), ("password", "olive-pw")]).await;
    let (_, created, _) =
        admin.call(Method::POST, "/apps", Some(json!({"name": "docs", "grant_types": ["client_credentials"]}))).await;
    let id = created["client_id"].as_str().unwrap().to_string();
    let calls: Vec<(Method, String, &str, Option<Value>, u16)> = vec![
        (
            Method::POST,
            "/apps".into(),
            "/apps",
            Some(json!({"name": "docs 2", "grant_types": ["client_credentials"]})),
            201,
        ),
        (Method::GET, "/apps".into(), "/apps", None, 200),
        (Method::GET, format!("/apps/{id}"), "/apps/{client_id}", None, 200),
        (Method::PATCH, format!("/apps/{id}"), "/apps/{client_id}", Some(json!({"scopes": ["a"]})), 200),
        (Method::POST, format!("/apps/{id}/secret"), "/apps/{client_id}/secret", Some(json!({})), 200),
        (Method::GET, "/apps/nope".into(), "/apps/{client_id}", None, 404),
        (Method::POST, "/apps".into(), "/apps", Some(json!({"nmae": "x"})), 400),
        (Method::GET, "/users?limit=1".into(), "/users", None, 200),
        (Method::GET, "/users/olive".into(), "/users/{username}", None, 200),
        (Method::PATCH, "/users/olive".into(), "/users/{username}", Some(json!({"name": "Olive"})), 200),
        (Method::GET, "/users/olive/sessions".into(), "/users/{username}/sessions", None, 200),
        (Method::POST, "/users".into(), "/users", Some(json!({"username": "olive", "password": "p"})), 409),
        (Method::GET, "/tokens".into(), "/tokens", None, 200),
        (Method::GET, "/tokens?limit=0".into(), "/tokens", None, 400),
        (Method::GET, "/keys".into(), "/keys", None, 200),
        (Method::POST, "/keys/rotate".into(), "/keys/rotate", Some(json!({})), 200),
        (Method::GET, "/events".into(), "/events", None, 200),
        (Method::POST, "/tokens/revoke".into(), "/tokens/revoke", Some(json!({"username": "olive"})), 200),
        (Method::POST, "/users/olive/logout".into(), "/users/{username}/logout", Some(json!({})), 200),
    ];
    // The check itself sees a missing and an undocumented member.
    let user = json!({"$ref": "#/components/schemas/User"});
    assert!(mismatches(&doc, &user, &u, "").is_empty());
    assert!(!mismatches(&doc, &user, &json!({"username": "olive"}), "").is_empty());
    let mut extra = u.clone();
    extra["password"] = json!("olive-pw");
    assert!(!mismatches(&doc, &user, &extra, "").is_empty());
    for (m, path, doc_path, body, want) in calls {
        let (status, v, headers) = admin.call(m.clone(), &path, body).await;
        assert_eq!(status, want, "{m} {path}: {v}");
        let (ct, schema) = documented_answer(&doc, m.as_str(), doc_path, want);
        assert_eq!(headers["content-type"], ct, "{m} {path}");
        let bad = mismatches(&doc, schema, &v, "");
        assert!(bad.is_empty(), "{m} {path}: {bad:?}\n{v}");
        if matches!(path.as_str(), "/users/olive/sessions" | "/tokens" | "/keys" | "/events") {
            assert!(!v["items"].as_array().unwrap().is_empty(), "{path}: something was checked");
        }
    }
}

/// Throttles live in each server's memory; an operator's unlock reaches every server of the
/// database, whichever process made it (here the CLI, another process on the same database; the
/// server's clock is frozen, so only the unlock can lift the throttle). Over the API it is the
/// same operation, answered 204 (404 for an unknown user).
#[tokio::test]
async fn an_unlock_reaches_every_server() {
    let srv = TestServer::start().await;
    let admin = Admin::new(&srv, "admin:read admin:write").await;
    let (status, _) = admin.post("/users", json!({"username": "erin", "password": "erin-pw"})).await;
    assert_eq!(status, 201);
    let web = srv.create_app(app(&["password"])).await;
    let grant = |pw: &'static str| {
        let (srv, web) = (&srv, &web);
        async move {
            let r = srv.token(web, &[("grant_type", "password"), ("username", "erin"), ("password", pw)]).await;
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let lock = || async {
        for _ in 0..12 {
            grant("wrong").await;
        }
        let (status, body) = grant("erin-pw").await;
        assert_eq!(status, 429, "{body}");
        assert!(body["error_description"].as_str().unwrap().contains("too many failed"), "{body}");
    };
    let until_unlocked = || async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let (status, body) = grant("erin-pw").await;
            if status == 200 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "still throttled: {body}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };

    lock().await;
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_tether"));
    cli.arg("--data-dir").arg(srv.dir.path()).args(["user", "unlock", "erin"]);
    cli.env_remove("TETHER_MASTER_KEY").env_remove("TETHER_DATABASE_URL");
    if let Some(u) = &srv.database_url {
        cli.env("TETHER_DATABASE_URL", u);
    }
    let out = cli.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until_unlocked().await;

    lock().await;
    let (status, _) = admin.post("/users/erin/unlock", json!({})).await;
    assert_eq!(status, 204);
    let (status, body) = grant("erin-pw").await;
    assert_eq!(status, 200, "the answering server at once: {body}");
    let (status, _) = admin.post("/users/nobody/unlock", json!({})).await;
    assert_eq!(status, 404);
}
