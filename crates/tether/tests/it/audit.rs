//! Audit events with the right actor for the acts a security team asks about first, and the
//! admin API on its own listener.

use serde_json::Value;
use tether_testkit::*;

const API: &str = "/api/admin/v1";

async fn admin_token(srv: &TestServer) -> String {
    let mut ch = app(&["client_credentials"]);
    ch.scopes = Some(vec!["admin:read".into(), "admin:write".into()]);
    ch.name = Some("auditor".into());
    let a = srv.create_app(ch).await;
    let r = srv.token(&a, &[("grant_type", "client_credentials"), ("scope", "admin:read admin:write")]).await;
    r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

async fn events(srv: &TestServer, token: &str, query: &str) -> Vec<Value> {
    let r = srv.client().get(srv.url(&format!("{API}/events?{query}"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn what_a_security_team_asks_is_recorded_with_its_actor() {
    let srv = TestServer::start().await;
    srv.add_user("frank", "pw").await;
    let web = srv.create_app(app(&["password", "refresh_token"])).await;
    let admin = admin_token(&srv).await;

    // A wrong password: login.failure naming the user, the client and the address.
    let r = srv.token(&web, &[("grant_type", "password"), ("username", "frank"), ("password", "nope")]).await;
    assert_eq!(r.status(), 400);
    let ev = events(&srv, &admin, "type=login.failure").await;
    assert_eq!(ev[0]["username"], "frank");
    assert_eq!(ev[0]["client_id"], web.client_id.as_str());
    assert_eq!(ev[0]["ip"], "127.0.0.1");
    assert!(ev[0]["time"].as_str().unwrap().ends_with('Z'), "RFC 3339: {}", ev[0]);

    // A used refresh token comes back: token.refresh_reuse.
    let t: Value = srv
        .token(&web, &[("grant_type", "password"), ("username", "frank"), ("password", "pw")])
        .await
        .json()
        .await
        .unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    assert_eq!(srv.token(&web, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await.status(), 200);
    assert_eq!(srv.token(&web, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await.status(), 400);
    let ev = events(&srv, &admin, "type=token.refresh_reuse").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["client_id"], web.client_id.as_str());
    assert_eq!(ev[0]["username"], "frank");
    // Issued and refreshed tokens are recorded, never with their values.
    let issued = events(&srv, &admin, "type=token.issued,token.refreshed&username=frank").await;
    assert!(issued.len() >= 2);
    let all = events(&srv, &admin, "limit=500").await;
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(rt) && !text.contains(t["access_token"].as_str().unwrap()), "no token values in events");

    // A certificate-bound token presented without its certificate: binding.mismatch.
    let ca = TestCa::new("audit-ca");
    let cert = ca.issue(&[(rcgen::DnType::CommonName, "svc")], None);
    let mut ch = app(&["password"]);
    ch.binding = Some("certificate".into());
    ch.scopes = Some(vec!["openid".into()]);
    ch.name = Some("bound".into());
    let bound = srv.create_app(ch).await;
    let r = srv
        .client_with(&cert)
        .post(srv.url("/oauth2/token"))
        .basic_auth(&bound.client_id, bound.client_secret.as_deref())
        .form(&[("grant_type", "password"), ("username", "frank"), ("password", "pw"), ("scope", "openid")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let at = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let r = srv.client().get(srv.url("/oauth2/userinfo")).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), 401, "the stolen token is refused");
    let ev = events(&srv, &admin, "type=binding.mismatch").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["detail"]["where"], "userinfo");
    assert_eq!(ev[0]["detail"]["binding_type"], "certificate");
    assert_eq!(ev[0]["client_id"], bound.client_id.as_str());

    // Filters and the cursor.
    let page1 = srv.client().get(srv.url(&format!("{API}/events?limit=2"))).bearer_auth(&admin).send().await.unwrap();
    let page1: Value = page1.json().await.unwrap();
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = events(&srv, &admin, &format!("limit=2&cursor={cursor}")).await;
    assert!(page2[0]["id"].as_str().unwrap() < page1["items"][1]["id"].as_str().unwrap(), "newest first");
    let r = srv.client().get(srv.url(&format!("{API}/events?type=nope"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = srv.client().get(srv.url(&format!("{API}/events?since=yesterday"))).bearer_auth(&admin).send().await;
    assert_eq!(r.unwrap().status(), 400);
}

#[tokio::test]
async fn with_admin_listen_the_api_lives_on_its_own_listener_only() {
    let srv = TestServer::start_with(|s| s.admin_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let admin = admin_token(&srv).await;
    let r = srv.client().get(srv.url(&format!("{API}/apps"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 404, "the main listener hides it");
    let addr = srv.running().admin_addr.expect("admin listener");
    let ca = reqwest::Certificate::from_pem(srv.ca_pem.as_bytes()).unwrap();
    let c = reqwest::Client::builder().tls_certs_only([ca]).resolve("localhost", addr).build().unwrap();
    let r = c.get(format!("https://localhost:{}{API}/apps", addr.port())).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("https://localhost:{}/oauth2/jwks", addr.port())).send().await.unwrap();
    assert_eq!(r.status(), 404, "and nothing else there");

    // A DPoP-bound admin token is proven with the admin listener's URL (`admin_url`, by default
    // https:// + admin_listen) as `htu`, not the issuer's.
    let mut ch = app(&["client_credentials"]);
    ch.scopes = Some(vec!["admin:read".into()]);
    let a = srv.create_app(ch).await;
    let key = DpopKey::generate();
    let now = tether_core::clock::Clock::now(&srv.clock);
    let r = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .header("dpop", key.proof("POST", &srv.url("/oauth2/token"), now, None, None))
        .form(&[("grant_type", "client_credentials"), ("scope", "admin:read")])
        .send()
        .await
        .unwrap();
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "DPoP", "{t}");
    let at = t["access_token"].as_str().unwrap();
    let admin_url = format!("https://{addr}{API}/apps");
    let ip = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(srv.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let call = |htu: String| {
        let proof = key.proof("GET", &htu, now, Some(at), None);
        ip.get(&admin_url).header("authorization", format!("DPoP {at}")).header("dpop", proof).send()
    };
    let r = call(admin_url.clone()).await.unwrap();
    assert_eq!(r.status(), 200, "htu = admin_url");
    let r = call(srv.url(&format!("{API}/apps"))).await.unwrap();
    assert_eq!(r.status(), 401, "the issuer's URL is not where the request went");
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("DPoP") && challenge.contains("invalid_dpop_proof"), "{challenge}");
}
