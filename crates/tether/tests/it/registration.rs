//! Dynamic client registration (RFC 7591) and management (RFC 7592), locked down: a token with
//! `client:register` (or `[registration] open`), third-party rules for every registered client,
//! RFC 7591 error codes for every forbidden value, the registration access token for read,
//! replace and delete (which revokes the client's tokens), `admin.change` events, and the
//! outbound guard on a registered client's URLs.

use reqwest::Response;
use serde_json::{Value, json};
use tether_core::clock::Clock;
use tether_core::store::EventQuery;
use tether_testkit::*;

const REGISTER: &str = "/api/identity/oauth2/dcr/v1.1/register";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An app allowed to register clients, and its token.
async fn registrar_token(srv: &TestServer) -> (AppCreds, String) {
    let mut ch = app(&["client_credentials"]);
    ch.name = Some("portal".into());
    ch.scopes = Some(vec!["client:register".into()]);
    let a = srv.create_app(ch).await;
    let r = srv.token(&a, &[("grant_type", "client_credentials"), ("scope", "client:register")]).await;
    let t = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    (a, t)
}

async fn register(srv: &TestServer, token: Option<&str>, metadata: &Value) -> Response {
    let mut r = srv.client().post(srv.url(REGISTER)).json(metadata);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

async fn refused(r: Response, status: u16, code: &str) -> Value {
    let s = r.status().as_u16();
    let cache = r.headers().get("cache-control").map(|v| v.to_str().unwrap().to_string());
    let body: Value = r.json().await.unwrap();
    assert_eq!((s, body["error"].as_str()), (status, Some(code)), "{body}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    body
}

fn jwks_of(key: &DpopKey) -> Value {
    let mut jwk = key.jwk.clone();
    jwk["kid"] = json!("k1");
    json!({"keys": [jwk]})
}

async fn events(srv: &TestServer, action: &str) -> Vec<tether_core::store::EventRecord> {
    let p = &srv.running().provider;
    p.audit.flush(&*p.store).await;
    let q = EventQuery { types: vec!["admin.change".into()], limit: 100, ..Default::default() };
    p.store.list_events(&q).await.unwrap().into_iter().filter(|e| e.detail["action"] == action).collect()
}

#[tokio::test]
async fn register_use_read_replace_delete() {
    let srv = TestServer::start().await;
    let (portal, token) = registrar_token(&srv).await;

    // Discovery names the endpoint.
    let d: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["registration_endpoint"], srv.url(REGISTER));

    // A private_key_jwt client for client credentials, registered and used at once.
    let key = DpopKey::generate();
    let meta = json!({
        "client_name": "partner backend",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": jwks_of(&key),
        "scope": "openid profile",
        "dpop_bound_access_tokens": true,
    });
    let r = register(&srv, Some(&token), &meta).await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["cache-control"], "no-store");
    let c: Value = r.json().await.unwrap();
    let id = c["client_id"].as_str().unwrap().to_string();
    assert!(c.get("client_secret").is_none(), "no secret for private_key_jwt: {c}");
    assert_eq!(c["registration_client_uri"], location);
    assert_eq!(location, srv.url(&format!("{REGISTER}/{id}")));
    assert_eq!(c["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(c["dpop_bound_access_tokens"], true);
    assert_eq!(c["token_binding_type"], "dpop");
    assert_eq!(c["scope"], "openid profile");
    let rat = c["registration_access_token"].as_str().unwrap().to_string();
    assert!(rat.len() >= 43);

    let now = srv.clock.now();
    let claims =
        json!({"iss": id, "sub": id, "aud": srv.url("/oauth2/token"), "iat": now, "exp": now + 60, "jti": "j1"});
    let assertion = key.sign_raw(&json!({"alg": "ES256", "kid": "k1"}), &claims);
    let dpop = DpopKey::generate();
    let t = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .header("dpop", dpop.proof("POST", &srv.url("/oauth2/token"), now, None, None))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(t.status(), 200);
    let access = t.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();

    // Read with the registration access token; a wrong one, or another client's URL, is 401.
    let get = |tok: &str, url: &str| srv.client().get(url.to_string()).bearer_auth(tok.to_string()).send();
    let r = get(&rat, &location).await.unwrap();
    assert_eq!(r.status(), 200);
    let read: Value = r.json().await.unwrap();
    assert_eq!(read["client_name"], "partner backend");
    assert!(read.get("registration_access_token").is_none() && read.get("client_secret").is_none());
    let r = get("wrong", &location).await.unwrap();
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    refused(r, 401, "invalid_token").await;
    refused(get(&rat, &srv.url(&format!("{REGISTER}/{}", portal.client_id))).await.unwrap(), 401, "invalid_token")
        .await;
    refused(get(&rat, &srv.url(&format!("{REGISTER}/nope"))).await.unwrap(), 401, "invalid_token").await;
    refused(srv.client().get(&location).send().await.unwrap(), 401, "invalid_token").await;

    // Replace: a full replacement, validated as a registration.
    let mut put = meta.clone();
    put["client_id"] = json!(id);
    put["client_name"] = json!("partner backend v2");
    put["dpop_bound_access_tokens"] = json!(false);
    let r = srv.client().put(&location).bearer_auth(&rat).json(&put).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let replaced: Value = r.json().await.unwrap();
    assert_eq!(
        (replaced["client_name"].as_str(), replaced["token_binding_type"].as_str()),
        (Some("partner backend v2"), Some("none"))
    );
    put["client_id"] = json!("someone-else");
    refused(
        srv.client().put(&location).bearer_auth(&rat).json(&put).send().await.unwrap(),
        400,
        "invalid_client_metadata",
    )
    .await;
    put["client_id"] = json!(id);
    put["grant_types"] = json!(["client_credentials", "password"]);
    refused(
        srv.client().put(&location).bearer_auth(&rat).json(&put).send().await.unwrap(),
        400,
        "invalid_client_metadata",
    )
    .await;

    // Delete: 204, the client's tokens revoked at once, the URL gone.
    let caller = srv
        .create_app(tether_core::admin::AppChanges { introspect_any: Some(true), ..app(&["client_credentials"]) })
        .await;
    assert_eq!(srv.introspect(&caller, &access).await["active"], true);
    let r = srv.client().delete(&location).bearer_auth(&rat).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(srv.introspect(&caller, &access).await["active"], false, "revoked with the client");
    refused(get(&rat, &location).await.unwrap(), 401, "invalid_token").await;

    // Each step is an admin.change event; the registering token's client, then the client itself.
    let reg = events(&srv, "app.register").await;
    assert_eq!((reg.len(), reg[0].client_id.as_deref()), (1, Some(portal.client_id.as_str())));
    assert_eq!(reg[0].detail["target"], id.as_str());
    let upd = events(&srv, "app.register_update").await;
    assert_eq!((upd.len(), upd[0].client_id.as_deref()), (1, Some(id.as_str())));
    assert_eq!(events(&srv, "app.register_delete").await.len(), 1);
}

#[tokio::test]
async fn registration_needs_a_token_with_the_scope_and_registered_clients_are_third_parties() {
    let srv = TestServer::start().await;
    let (_, token) = registrar_token(&srv).await;
    let meta = json!({"redirect_uris": ["https://rp.example/cb"], "client_name": "rp"});

    let r = register(&srv, None, &meta).await;
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    refused(r, 401, "invalid_token").await;
    refused(register(&srv, Some("not-a-token"), &meta).await, 401, "invalid_token").await;
    let plain = srv.create_app(app(&["client_credentials"])).await;
    let t: Value = srv.token(&plain, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
    let r = register(&srv, t["access_token"].as_str(), &meta).await;
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("scope=\"client:register\""));
    refused(r, 403, "insufficient_scope").await;

    // A code-flow client: consent always, a secret (client_secret_basic by default), the
    // allowed scopes.
    let r = register(&srv, Some(&token), &meta).await;
    assert_eq!(r.status(), 201);
    let c: Value = r.json().await.unwrap();
    assert!(c["client_secret"].as_str().is_some_and(|s| s.len() >= 43));
    assert_eq!(c["client_secret_expires_at"], 0);
    assert_eq!(c["grant_types"], json!(["authorization_code"]));
    assert_eq!(c["response_types"], json!(["code"]));
    assert_eq!(c["scope"], "openid profile email");
    let id = c["client_id"].as_str().unwrap();
    let stored = srv.running().provider.store.get_app(id).await.unwrap().unwrap().app;
    assert!(stored.registered && stored.require_consent, "third party: consent");
    // The user is asked: the consent page, not a code.
    srv.add_user("alice", "pw").await;
    let (_, challenge) = pkce();
    let q = format!(
        "client_id={id}&response_type=code&redirect_uri=https://rp.example/cb&scope=openid&code_challenge={challenge}&code_challenge_method=S256"
    );
    let browser = srv.browser();
    let page = browser.get(srv.url(&format!("/oauth2/authorize?{q}"))).send().await.unwrap().text().await.unwrap();
    let mut form = hidden_inputs(&page);
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "pw".into()));
    let r = browser.post(srv.url("/oauth2/authorize")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200, "the consent page, not a redirect with a code");
    assert!(r.text().await.unwrap().contains("approve"));
    // An operator cannot lift the third-party rules either.
    let ch = tether_core::admin::AppChanges { require_consent: Some(false), ..Default::default() };
    let existing = srv.running().provider.store.get_app(id).await.unwrap().unwrap();
    assert!(tether_core::admin::update(&existing, &ch).unwrap_err().contains("consent"));

    // Every forbidden value, with its RFC 7591 error.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let _ = host;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"grant_types": ["password"]}), "invalid_client_metadata"),
        (json!({"grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"]}), "invalid_client_metadata"),
        (json!({"grant_types": ["client_credentials"], "introspect_any": true}), "invalid_client_metadata"),
        (json!({"grant_types": ["client_credentials"], "exchange_from": ["x"]}), "invalid_client_metadata"),
        (json!({"grant_types": ["client_credentials"], "scope": "admin:read"}), "invalid_client_metadata"),
        (json!({"grant_types": ["client_credentials"], "scope": "admin:write"}), "invalid_client_metadata"),
        (json!({"grant_types": ["client_credentials"], "scope": "client:register"}), "invalid_client_metadata"),
        (json!({"grant_types": ["client_credentials"], "scope": "payments"}), "invalid_client_metadata"),
        (json!({"redirect_uris": ["http://rp.example/cb"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["https://rp.example/cb#frag"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["/relative"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": []}), "invalid_redirect_uri"),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "http://keys.example/jwks"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://127.0.0.1/jwks"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://169.254.169.254/latest"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://0x7f000001/jwks"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://[::ffff:10.0.0.1]/jwks"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://localhost/jwks"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": "http://rp.example/logout"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": "https://10.0.0.5/logout"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "magic"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "tls_client_certificate_bound_access_tokens": true, "token_binding_type": "dpop"}),
            "invalid_client_metadata",
        ),
        (json!({"redirect_uris": ["https://rp.example/cb"], "response_types": ["token"]}), "invalid_client_metadata"),
        (json!({"grant_types": ["client_credentials"], "token_binding_type": "telepathy"}), "invalid_client_metadata"),
        (json!("not an object"), "invalid_client_metadata"),
    ];
    for (m, code) in cases {
        let body = refused(register(&srv, Some(&token), &m).await, 400, code).await;
        assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{m}: {body}");
    }
    let r = srv.client().post(srv.url(REGISTER)).bearer_auth(&token).body("{}").send().await.unwrap();
    refused(r, 400, "invalid_client_metadata").await;
    assert_eq!(events(&srv, "app.register").await.len(), 1, "nothing was registered by the refusals");
}

#[tokio::test]
async fn open_registration_is_anonymous_and_private_uris_are_a_switch() {
    let srv = TestServer::start_with(|s| {
        s.registration.open = true;
        s.registration.allow_private_uris = true;
        s.registration.allowed_scopes = vec!["openid".into(), "payments".into()];
    })
    .await;
    let key = DpopKey::generate();
    let r = register(
        &srv,
        None,
        &json!({
            "grant_types": ["client_credentials"],
            "scope": "payments",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": "http://127.0.0.1:9/jwks",
            "access_token_type": "jwt",
        }),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let ev = events(&srv, "app.register").await;
    assert_eq!(ev[0].client_id.as_deref(), Some("anonymous"));
    let _ = key;
    // Config that would let registered clients escalate does not start.
    let bad = tether_core::endpoint::registration::RegistrationConfig {
        allowed_scopes: vec!["admin:write".into()],
        ..Default::default()
    };
    assert!(bad.check().unwrap_err().contains("admin:write"));
}

/// A registered client's back-channel URI whose name resolves inside (the machine's own host
/// name: loopback or a private address) passes registration, and is refused when the server
/// connects: the delivery is given up at once with an event saying so.
#[tokio::test]
async fn a_registered_clients_urls_are_guarded_when_the_server_connects() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let (_, token) = registrar_token(&srv).await;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let r = register(
        &srv,
        Some(&token),
        &json!({"redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": format!("https://{host}:9/logout")}),
    )
    .await;
    assert_eq!(r.status(), 201, "a name is not refused at registration");
    let c: Value = r.json().await.unwrap();
    let creds = AppCreds {
        client_id: c["client_id"].as_str().unwrap().to_string(),
        client_secret: c["client_secret"].as_str().map(str::to_string),
    };
    // Sign in (with consent), get tokens, log out.
    let (verifier, challenge) = pkce();
    let q = format!(
        "client_id={}&response_type=code&redirect_uri=https://rp.example/cb&scope=openid&code_challenge={challenge}&code_challenge_method=S256",
        creds.client_id
    );
    let browser = srv.browser();
    let page = browser.get(srv.url(&format!("/oauth2/authorize?{q}"))).send().await.unwrap().text().await.unwrap();
    let mut form = hidden_inputs(&page);
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "pw".into()));
    let consent = browser.post(srv.url("/oauth2/authorize")).form(&form).send().await.unwrap().text().await.unwrap();
    let mut form = hidden_inputs(&consent);
    form.push(("approve".into(), "yes".into()));
    let r = browser.post(srv.url("/oauth2/authorize")).form(&form).send().await.unwrap();
    let code = query_param(&location(&r), "code").expect("a code after consent");
    let t = srv
        .token(
            &creds,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "https://rp.example/cb"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(t.status(), 200);
    let id_token = t.json::<Value>().await.unwrap()["id_token"].as_str().unwrap().to_string();
    browser.get(srv.url(&format!("/oidc/logout?id_token_hint={id_token}"))).send().await.unwrap();

    let p = srv.running().provider.clone();
    for _ in 0..100 {
        p.audit.flush(&*p.store).await;
        let q = EventQuery { types: vec!["logout.backchannel_failed".into()], limit: 10, ..Default::default() };
        let ev = p.store.list_events(&q).await.unwrap();
        if let Some(e) = ev.first() {
            let reason = e.detail["reason"].as_str().unwrap_or("");
            assert!(reason.contains("address not allowed"), "{reason}");
            assert_eq!(e.detail["attempts"], 1, "not retried");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the guarded delivery left no event");
}

/// Certificate clients register through their metadata: `self_signed_tls_client_auth` with its
/// certificate as `x5c` in `jwks` (and then authenticates with it, its token bound to it), and
/// `tls_client_auth` with `tls_client_auth_subject_dn`.
#[tokio::test]
async fn certificate_clients_register_and_authenticate() {
    use base64::Engine;
    let srv = TestServer::start().await;
    let (_, token) = registrar_token(&srv).await;
    let cert = client_cert("registered-device");
    let x5c = base64::engine::general_purpose::STANDARD.encode(&cert.der);
    let r = register(
        &srv,
        Some(&token),
        &json!({
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "self_signed_tls_client_auth",
            "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "x5c": [x5c]}]},
            "tls_client_certificate_bound_access_tokens": true,
            "access_token_type": "jwt",
        }),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let c: Value = r.json().await.unwrap();
    assert_eq!((c["token_binding_type"].as_str(), c["access_token_type"].as_str()), (Some("certificate"), Some("jwt")));
    let id = c["client_id"].as_str().unwrap();
    let t = srv
        .client_with(&cert)
        .post(srv.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", id)])
        .send()
        .await
        .unwrap();
    assert_eq!(t.status(), 200, "authenticated by its certificate");
    let at = t.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(jwt_claims(&at)["cnf"]["x5t#S256"], cert.thumbprint.as_str());
    let other = client_cert("someone-else");
    let t = srv
        .client_with(&other)
        .post(srv.url("/oauth2/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", id)])
        .send()
        .await
        .unwrap();
    assert_eq!(t.status(), 401, "another certificate does not authenticate");

    let r = register(
        &srv,
        Some(&token),
        &json!({
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=partner,O=Example",
        }),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["tls_client_auth_subject_dn"], "CN=partner,O=Example");
    let r = register(
        &srv,
        Some(&token),
        &json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "tls_client_auth"}),
    )
    .await;
    refused(r, 400, "invalid_client_metadata").await;
}
