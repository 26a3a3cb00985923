use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};
use tether_testkit::*;

async fn jwks(srv: &TestServer) -> Value {
    srv.client().get(srv.url("/oauth2/jwks")).send().await.unwrap().json().await.unwrap()
}

/// Verify a JWT with jsonwebtoken (an independent implementation) against the published JWKS.
fn verify(jwks: &Value, jwt: &str, alg: Algorithm, aud: &str) -> Value {
    let h = decode_header(jwt).unwrap();
    let kid = h.kid.unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).expect("kid in JWKS");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut v = Validation::new(alg);
    v.set_audience(&[aud]);
    // Tokens carry the test clock's times (2026-11-01), not the verifier's wall clock.
    v.validate_exp = false;
    decode::<Value>(jwt, &key, &v).unwrap().claims
}

#[tokio::test]
async fn jwt_access_token_is_rfc9068_and_verifies_against_jwks() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mut ch = app(&["password", "refresh_token"]);
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    let body: Value = srv
        .token(
            &a,
            &[("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("scope", "openid profile email")],
        )
        .await
        .json()
        .await
        .unwrap();
    let at = body["access_token"].as_str().unwrap();
    let h = jwt_header(at);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "ES256");
    let keys = jwks(&srv).await;
    for k in keys["keys"].as_array().unwrap() {
        assert!(k.get("d").is_none() && k.get("p").is_none(), "no private members in the JWKS");
    }
    let c = verify(&keys, at, Algorithm::ES256, &a.client_id);
    for claim in ["iss", "sub", "aud", "client_id", "scope", "jti", "iat", "exp"] {
        assert!(c.get(claim).is_some(), "claim {claim}");
    }
    assert_eq!(c["iss"], srv.base.as_str());
    assert_eq!(c["sub"], "user-alice");
    assert_eq!(c["exp"], T0 + 3600);
    // ID token: RS256 by default, at_hash over the access token, verifies.
    let id = body["id_token"].as_str().unwrap();
    assert_eq!(jwt_header(id)["alg"], "RS256");
    let ic = verify(&keys, id, Algorithm::RS256, &a.client_id);
    assert_eq!(ic["sub"], "user-alice");
    assert_eq!(ic["email"], "alice@example.com");
    assert_eq!(ic["at_hash"], tether_core::token::id_token::at_hash(at));
    // Introspection of the JWT.
    let i = srv.introspect(&a, at).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["jti"], c["jti"]);
    // Userinfo.
    let u: Value =
        srv.client().get(srv.url("/oauth2/userinfo")).bearer_auth(at).send().await.unwrap().json().await.unwrap();
    assert_eq!(u["sub"], "user-alice");
    assert_eq!(u["preferred_username"], "alice");
    assert_eq!(u["email"], "alice@example.com");
}

#[tokio::test]
async fn es256_id_tokens_and_key_rotation() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mut ch = app(&["password"]);
    ch.id_token_alg = Some("ES256".into());
    let a = srv.create_app(ch).await;
    let form = [("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("scope", "openid")];
    let body: Value = srv.token(&a, &form).await.json().await.unwrap();
    let id1 = body["id_token"].as_str().unwrap().to_string();
    assert_eq!(jwt_header(&id1)["alg"], "ES256");
    let before = jwks(&srv).await;
    assert_eq!(before["keys"].as_array().unwrap().len(), 2);
    let p = &srv.running().provider;
    // Rotation through the same function `tether keys rotate` calls; the server picks it up.
    let master = tether_server::load_master_key(
        &tether_server::Settings::resolve(
            &tether_server::Overrides { data_dir: Some(srv.dir.path().to_path_buf()), ..Default::default() },
            Default::default(),
        )
        .unwrap(),
    )
    .unwrap();
    tether_core::provider::rotate_keys(&*p.store, &master, {
        use tether_core::clock::Clock;
        srv.clock.now()
    })
    .await
    .unwrap();
    p.refresh().await.unwrap();
    let after = jwks(&srv).await;
    assert_eq!(after["keys"].as_array().unwrap().len(), 4, "old keys stay published");
    let body: Value = srv.token(&a, &form).await.json().await.unwrap();
    let id2 = body["id_token"].as_str().unwrap();
    assert_ne!(jwt_header(&id1)["kid"], jwt_header(id2)["kid"], "new tokens use the new key");
    verify(&after, &id1, Algorithm::ES256, &a.client_id);
    verify(&after, id2, Algorithm::ES256, &a.client_id);
    // Old keys leave the JWKS once their tokens can no longer be valid.
    srv.clock.advance(3601);
    p.refresh().await.unwrap();
    assert_eq!(jwks(&srv).await["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn introspection_visibility_and_revocation_pairs() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let owner = srv.create_app(app(&["password", "refresh_token"])).await;
    let other = srv.create_app(app(&["client_credentials"])).await;
    let mut rs = app(&["client_credentials"]);
    rs.introspect_any = Some(true);
    let resource_server = srv.create_app(rs).await;
    let mut pub_ch = app(&["authorization_code"]);
    pub_ch.public = Some(true);
    let public = srv.create_app(pub_ch).await;

    let form = [("grant_type", "password"), ("username", "alice"), ("password", "pw")];
    let t: Value = srv.token(&owner, &form).await.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    assert_eq!(srv.introspect(&other, at).await, json!({"active": false}), "another client's token is invisible");
    assert_eq!(srv.introspect(&resource_server, at).await["active"], true, "--introspect-any sees it");
    assert_eq!(srv.introspect(&owner, "garbage").await, json!({"active": false}));
    let ri = srv.introspect(&owner, rt).await;
    assert_eq!(ri["active"], true);
    assert_eq!(ri["token_type"], "refresh_token");
    // Public clients may not introspect.
    let r = srv
        .client()
        .post(srv.url("/oauth2/introspect"))
        .form(&[("token", at), ("client_id", public.client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_oauth_error(r, 401, "invalid_client").await;

    // Revoking the access token revokes its refresh token too.
    let revoke = |who: &AppCreds, token: &str| {
        srv.client()
            .post(srv.url("/oauth2/revoke"))
            .basic_auth(&who.client_id, who.client_secret.as_deref())
            .form(&[("token", token.to_string())])
            .send()
    };
    assert_eq!(revoke(&other, at).await.unwrap().status(), 400, "another client cannot revoke it");
    assert_eq!(srv.introspect(&owner, at).await["active"], true);
    assert_eq!(revoke(&owner, at).await.unwrap().status(), 200);
    assert_eq!(srv.introspect(&owner, at).await, json!({"active": false}));
    assert_eq!(srv.introspect(&owner, rt).await, json!({"active": false}));
    assert_oauth_error(
        srv.token(&owner, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await,
        400,
        "invalid_grant",
    )
    .await;
    // ...and the other way round.
    let t: Value = srv.token(&owner, &form).await.json().await.unwrap();
    assert_eq!(revoke(&owner, t["refresh_token"].as_str().unwrap()).await.unwrap().status(), 200);
    assert_eq!(srv.introspect(&owner, t["access_token"].as_str().unwrap()).await, json!({"active": false}));
    // Unknown tokens: 200 (RFC 7009 §2.2).
    assert_eq!(revoke(&owner, "unknown").await.unwrap().status(), 200);
    // Userinfo rejects the revoked token with a Bearer challenge.
    let r = srv.client().get(srv.url("/oauth2/userinfo")).bearer_auth(at).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    let r = srv.client().get(srv.url("/oauth2/userinfo")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tether\"");
}

#[tokio::test]
async fn expiry_follows_the_clock() {
    let srv = TestServer::start().await;
    let mut ch = app(&["client_credentials"]);
    ch.access_token_ttl = Some(60);
    let a = srv.create_app(ch).await;
    let t: Value = srv.token(&a, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(t["expires_in"], 60);
    srv.clock.advance(59);
    assert_eq!(srv.introspect(&a, at).await["active"], true);
    srv.clock.advance(1);
    assert_eq!(srv.introspect(&a, at).await, json!({"active": false}));
}

#[tokio::test]
async fn deleting_an_app_or_user_revokes_their_tokens() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mut rs = app(&["client_credentials"]);
    rs.introspect_any = Some(true);
    let rs = srv.create_app(rs).await;
    let a = srv.create_app(app(&["password"])).await;
    let b = srv.create_app(app(&["client_credentials"])).await;
    let ta: Value = srv
        .token(&a, &[("grant_type", "password"), ("username", "alice"), ("password", "pw")])
        .await
        .json()
        .await
        .unwrap();
    let tb: Value = srv.token(&b, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
    let p = &srv.running().provider;
    assert!(p.store.delete_user("alice", T0).await.unwrap());
    assert_eq!(srv.introspect(&rs, ta["access_token"].as_str().unwrap()).await, json!({"active": false}));
    assert!(p.store.delete_app(&b.client_id, T0).await.unwrap());
    assert_eq!(srv.introspect(&rs, tb["access_token"].as_str().unwrap()).await, json!({"active": false}));
}

#[tokio::test]
async fn discovery_documents_and_cors() {
    let srv = TestServer::start().await;
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let d: Value = srv.client().get(srv.url(path)).send().await.unwrap().json().await.unwrap();
        assert_eq!(d["issuer"], srv.base.as_str());
        assert_eq!(d["token_endpoint"], srv.url("/oauth2/token").as_str());
        assert_eq!(d["jwks_uri"], srv.url("/oauth2/jwks").as_str());
        assert_eq!(d["introspection_endpoint"], srv.url("/oauth2/introspect").as_str());
        assert_eq!(d["revocation_endpoint"], srv.url("/oauth2/revoke").as_str());
        assert!(d["code_challenge_methods_supported"].as_array().unwrap().contains(&json!("S256")));
    }
    let mut ch = app(&["authorization_code"]);
    ch.public = Some(true);
    ch.allowed_origins = Some(vec!["https://spa.example".into()]);
    srv.create_app(ch).await;
    let pre = |origin: &'static str| {
        srv.client()
            .request(reqwest::Method::OPTIONS, srv.url("/oauth2/token"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = pre("https://spa.example").await.unwrap();
    assert_eq!(ok.headers().get("access-control-allow-origin").unwrap(), "https://spa.example");
    let no = pre("https://evil.example").await.unwrap();
    assert!(no.headers().get("access-control-allow-origin").is_none());
}
