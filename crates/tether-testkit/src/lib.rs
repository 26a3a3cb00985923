//! Test helpers (dev-only; nothing in the product depends on this crate): a real `tether serve` on 127.0.0.1 with an ephemeral port, its own data
//! directory, real TLS (the generated local CA is trusted by the client), real SQLite, and a
//! clock the test steers. Plus the one assertion helper for OAuth errors.

pub use rcgen;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use tether_core::admin::{self, AppChanges};
use tether_core::clock::ManualClock;
use tether_core::model::{User, UserRecord};
use tether_server::{FileConfig, Overrides, Running, Settings};

/// A fixed start time for every test: 2026-11-01T00:00:00Z.
pub const T0: i64 = 1_793_491_200;

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let rnd = tether_core::secret::hex(&tether_core::secret::random_bytes::<6>());
        let p = std::env::temp_dir().join(format!("tether-test-{tag}-{rnd}"));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The PostgreSQL admin URL the suite runs against, if any (`scripts/test` sets it for the second
/// pass of the suite; without it the suite runs on SQLite).
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("TETHER_TEST_POSTGRES_URL").ok().filter(|s| !s.is_empty())
}

/// A fresh, empty database on the test cluster; `None` when the suite runs on SQLite.
pub async fn test_database() -> Option<String> {
    use sqlx::Connection;
    let admin = postgres_admin_url()?;
    let name = format!("tether_t_{}", tether_core::secret::hex(&tether_core::secret::random_bytes::<6>()));
    let mut c = sqlx::PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL cluster");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.expect("create test database");
    let mut u = url::Url::parse(&admin).expect("admin URL");
    u.set_path(&format!("/{name}"));
    Some(u.to_string())
}

/// Every table the PostgreSQL migrations of tether-store create (`migrations/postgres/*.sql`).
pub const POSTGRES_TABLES: &[&str] = &[
    "meta",
    "apps",
    "events",
    "unlocks",
    "par_requests",
    "logout_deliveries",
    "client_registrations",
    "users",
    "signing_keys",
    "server_secrets",
    "sessions",
    "codes",
    "access_tokens",
    "refresh_tokens",
    "device_codes",
    "dpop_jti",
];

/// All bytes a database keeps: the SQLite file and WAL in `dir`, or for PostgreSQL a text dump
/// of every table. Panics if the PostgreSQL database has a table [`POSTGRES_TABLES`] misses (a
/// new migration's table would otherwise escape the "not stored in clear" checks).
pub async fn database_bytes(database_url: Option<&str>, dir: &Path) -> Vec<u8> {
    if let Some(url) = database_url {
        use sqlx::{Connection, Row};
        let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()")
                .fetch_all(&mut c)
                .await
                .expect("list tables");
        for t in &tables {
            assert!(
                t == "tether_migrations" || POSTGRES_TABLES.contains(&t.as_str()),
                "table {t} is not in tether-testkit's POSTGRES_TABLES: add it"
            );
        }
        let mut out = Vec::new();
        for t in POSTGRES_TABLES {
            let rows =
                sqlx::query(&format!("SELECT row_to_json(x)::text FROM {t} x")).fetch_all(&mut c).await.expect("dump");
            for r in rows {
                out.extend_from_slice(r.get::<String, _>(0).as_bytes());
            }
        }
        return out;
    }
    let mut b = std::fs::read(dir.join("tether.db")).unwrap_or_default();
    b.extend(std::fs::read(dir.join("tether.db-wal")).unwrap_or_default());
    b
}

pub struct TestServer {
    pub running: Option<Running>,
    /// `Some(url)` when this server runs on PostgreSQL.
    pub database_url: Option<String>,
    pub clock: ManualClock,
    pub base: String,
    pub dir: TempDir,
    pub ca_pem: String,
}

pub struct AppCreds {
    pub client_id: String,
    pub client_secret: Option<String>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Start with a config file's settings adjusted by `f`.
    pub async fn start_with(f: impl FnOnce(&mut Settings)) -> Self {
        let dir = TempDir::new("srv");
        let overrides = Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            listen: Some("127.0.0.1:0".into()),
            metrics_listen: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let mut settings = Settings::resolve(&overrides, FileConfig::default()).expect("settings");
        let database_url = test_database().await;
        if let Some(u) = &database_url {
            settings.database_url = u.clone();
            settings.database_pool_size = 8;
        }
        f(&mut settings);
        let database_url = settings.database_url.starts_with("postgres").then(|| settings.database_url.clone());
        let data_dir = settings.data_dir.clone();
        let clock = ManualClock::new(T0);
        let running = tether_server::start(settings, Arc::new(clock.clone())).await.expect("server starts");
        let base = format!("https://localhost:{}", running.addr.port());
        let ca_pem = std::fs::read_to_string(data_dir.join("tls/ca.pem")).expect("ca.pem");
        TestServer { running: Some(running), database_url, clock, base, dir, ca_pem }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// An HTTPS client that trusts the server's local CA and resolves `localhost` to 127.0.0.1.
    pub fn client(&self) -> Client {
        self.client_builder().build().expect("client")
    }

    /// Same, with a cookie jar (a browser-like session).
    pub fn browser(&self) -> Client {
        self.client_builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client")
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca");
        Client::builder()
            .tls_certs_only([ca])
            .resolve("localhost", self.running().addr)
            .redirect(reqwest::redirect::Policy::none())
    }

    pub async fn create_app(&self, changes: AppChanges) -> AppCreds {
        let (mut rec, secret) = admin::create(&changes).expect("valid app");
        tether_core::admin_ops::seal_secret(&self.running().provider, &mut rec, secret.as_ref());
        self.running().provider.store.create_app(&rec).await.expect("store app");
        self.running().provider.refresh().await.expect("refresh");
        AppCreds { client_id: rec.app.client_id, client_secret: secret.map(|s| s.into_inner()) }
    }

    pub async fn add_user(&self, username: &str, password: &str) -> String {
        let rec = UserRecord {
            user: User {
                id: format!("user-{username}"),
                username: username.into(),
                email: Some(format!("{username}@example.com")),
                name: Some(format!("User {username}")),
                created_at: T0,
                roles: vec![],
                disabled: false,
            },
            password_hash: tether_core::password::hash(password).expect("hash"),
        };
        self.running().provider.store.create_user(&rec).await.expect("store user");
        rec.user.id
    }

    /// POST a form to the token endpoint with HTTP Basic client authentication.
    pub async fn token(&self, app: &AppCreds, form: &[(&str, &str)]) -> Response {
        let mut req = self.client().post(self.url("/oauth2/token"));
        match &app.client_secret {
            Some(s) => req = req.basic_auth(&app.client_id, Some(s)),
            None => {
                let mut f: Vec<(&str, &str)> = form.to_vec();
                f.push(("client_id", &app.client_id));
                return req.form(&f).send().await.expect("send");
            }
        }
        req.form(form).send().await.expect("send")
    }

    pub async fn introspect(&self, caller: &AppCreds, token: &str) -> Value {
        let r = self
            .client()
            .post(self.url("/oauth2/introspect"))
            .basic_auth(&caller.client_id, caller.client_secret.as_deref())
            .form(&[("token", token)])
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK, "introspection status");
        r.json().await.expect("json")
    }

    /// Count rows of a table with a separate SQLite connection (to check nothing was written).
    pub async fn count(&self, table: &str) -> i64 {
        if let Some(url) = &self.database_url {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
            return sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&mut c)
                .await
                .expect("count");
        }
        let c = rusqlite::Connection::open(self.dir.path().join("tether.db")).expect("sqlite");
        c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).expect("count")
    }

    /// All bytes the database keeps, to check that no secret is stored in clear.
    pub async fn database_bytes(&self) -> Vec<u8> {
        database_bytes(self.database_url.as_deref(), self.dir.path()).await
    }

    /// Stop the server; the data directory lives on in the returned guard.
    pub async fn stop(mut self) -> TempDir {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.dir
    }
}

/// Assert an RFC 6749 §5.2 error: status, `error` code, a non-empty description, JSON, no-store.
pub async fn assert_oauth_error(resp: Response, status: u16, code: &str) -> Value {
    let got = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "status (body {body})");
    assert_eq!(body["error"], code, "error code (body {body})");
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()), "error_description present: {body}");
    assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    if code == "invalid_client" {
        assert!(headers.get("www-authenticate").is_some(), "invalid_client needs WWW-Authenticate");
    }
    body
}

/// App changes for a confidential app with the given grant types.
pub fn app(grants: &[&str]) -> AppChanges {
    AppChanges {
        name: Some("test app".into()),
        grant_types: Some(grants.iter().map(|s| s.to_string()).collect()),
        redirect_uris: grants.contains(&"authorization_code").then(|| vec!["https://app.example/cb".to_string()]),
        ..Default::default()
    }
}

/// Decode a JWT's payload without verifying it.
pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("b64");
    serde_json::from_slice(&bytes).expect("json")
}

pub fn jwt_header(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("b64");
    serde_json::from_slice(&bytes).expect("json")
}

/// PKCE pair (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let v = tether_core::secret::random_token() + "xyz";
    let c = tether_core::secret::b64url(&tether_core::secret::sha256(v.as_bytes()));
    (v, c)
}

/// Extract `name="..." value="..."` hidden inputs from an HTML form.
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in html.split("<input").skip(1) {
        let tag = chunk.split('>').next().unwrap_or("");
        if !tag.contains("type=\"hidden\"") {
            continue;
        }
        let attr = |n: &str| -> Option<String> {
            let start = tag.find(&format!("{n}=\""))? + n.len() + 2;
            let end = tag[start..].find('"')? + start;
            Some(html_unescape(&tag[start..end]))
        };
        if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
            out.push((n, v));
        }
    }
    out
}

fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let ent = &tail[1..end];
        let ch = match ent {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "lt" => Some('<'),
            "gt" => Some('>'),
            _ if ent.starts_with("#x") => u32::from_str_radix(&ent[2..], 16).ok().and_then(char::from_u32),
            _ if ent.starts_with('#') => ent[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Run the authorization-code flow through the login form with a browser-like client.
/// Returns the `Location` of the final redirect (carrying `code` or `error`).
pub async fn login_flow(srv: &TestServer, browser: &Client, authorize_query: &str, user: &str, pw: &str) -> String {
    let r = browser.get(srv.url(&format!("/oauth2/authorize?{authorize_query}"))).send().await.expect("authorize");
    if r.status().is_redirection() {
        return location(&r);
    }
    assert_eq!(r.status(), StatusCode::OK, "login page");
    let html = r.text().await.expect("html");
    assert!(html.contains("name=\"username\"") && html.contains("name=\"password\""), "login form: {html}");
    let mut form = hidden_inputs(&html);
    form.push(("username".into(), user.into()));
    form.push(("password".into(), pw.into()));
    let r = browser.post(srv.url("/oauth2/authorize")).form(&form).send().await.expect("login post");
    assert!(r.status().is_redirection(), "login redirects, got {}", r.status());
    location(&r)
}

pub fn location(r: &Response) -> String {
    r.headers().get("location").and_then(|v| v.to_str().ok()).expect("Location").to_string()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    u.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A fresh self-signed client certificate, returned as `cert PEM + key PEM` (reqwest Identity form).
pub fn self_signed_client_pem(cn: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).expect("cert");
    format!("{}{}", cert.pem(), key.serialize_pem())
}

/// A client certificate generated for a test: the identity reqwest presents, and its RFC 8705
/// thumbprint as computed independently here (SHA-256 of the DER, base64url).
pub struct ClientCert {
    pub identity_pem: String,
    /// The certificate alone (what `--cert-file` or a proxy header carries).
    pub cert_pem: String,
    pub der: Vec<u8>,
    pub thumbprint: String,
}

impl ClientCert {
    fn new(cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.der().as_ref());
        ClientCert {
            identity_pem: format!("{}{}", cert.pem(), key.serialize_pem()),
            cert_pem: cert.pem(),
            der: cert.der().to_vec(),
            thumbprint: tether_core::secret::b64url(d.as_ref()),
        }
    }
}

pub fn client_cert(cn: &str) -> ClientCert {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).expect("cert");
    ClientCert::new(&cert, &key)
}

/// A self-signed client certificate valid only between two dates (year, month, day).
pub fn client_cert_valid(cn: &str, from: Ymd, until: Ymd) -> ClientCert {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let cert = params.self_signed(&key).expect("cert");
    ClientCert::new(&cert, &key)
}

/// A date: (year, month, day).
pub type Ymd = (i32, u8, u8);

/// A certificate authority made for a test (`tls_client_auth` trust anchors).
pub struct TestCa {
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(cn: &str) -> Self {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("ca");
        TestCa { pem: cert.pem(), issuer: rcgen::Issuer::new(params, key) }
    }

    /// A client certificate with subject `dn` (most specific last, as X.509 stores it: C, O, CN),
    /// optionally valid only between two dates, with the clientAuth extended key usage.
    pub fn issue(&self, dn: &[(rcgen::DnType, &str)], valid: Option<(Ymd, Ymd)>) -> ClientCert {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        // rcgen starts with a placeholder CN, which would fix the CN's position.
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        if let Some((from, until)) = valid {
            params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
            params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("cert");
        ClientCert::new(&cert, &key)
    }
}

impl TestServer {
    /// An HTTPS client presenting `cert` in the TLS handshake.
    pub fn client_with(&self, cert: &ClientCert) -> Client {
        self.client_builder()
            .identity(reqwest::Identity::from_pem(cert.identity_pem.as_bytes()).expect("identity"))
            .build()
            .expect("client")
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway

/// An upstream for gateway tests: answers every request with a JSON echo of what reached it
/// (method, path, query, headers, body length).
pub async fn echo_upstream() -> std::net::SocketAddr {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, Uri};
    let app = axum::Router::new().fallback(|method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
        let h: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), Value::String(v.to_str().unwrap_or("").to_string())))
            .collect();
        axum::Json(serde_json::json!({
            "method": method.as_str(), "path": uri.path(), "query": uri.query(), "headers": h, "body_len": body.len(),
        }))
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    addr
}

/// A `tether gateway` in this process, in front of `upstream`, trusting `srv` as its issuer and
/// sharing its clock.
pub struct TestGateway {
    pub running: Option<tether_gateway::server::Running>,
    pub base: String,
    pub ca_pem: String,
    pub dir: TempDir,
}

impl TestServer {
    /// Start a gateway for this server. `f` adjusts the config file (issuer, ca_file, upstream,
    /// data_dir and listen are preset).
    pub async fn gateway(
        &self,
        upstream: std::net::SocketAddr,
        f: impl FnOnce(&mut tether_gateway::FileConfig),
    ) -> Result<TestGateway, String> {
        let dir = TempDir::new("gw");
        let ca_file = dir.path().join("issuer-ca.pem");
        std::fs::write(&ca_file, &self.ca_pem).expect("write ca");
        let mut fc = tether_gateway::FileConfig {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().join("data")),
            upstream: Some(format!("http://{upstream}")),
            issuer: Some(self.base.clone()),
            ca_file: Some(ca_file),
            // Many gateways run at once in the tests: never the fixed default port.
            metrics_listen: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        f(&mut fc);
        let cfg = tether_gateway::Config::from_file(fc)?;
        let running = tether_gateway::server::start(cfg, Arc::new(self.clock.clone())).await?;
        let base = format!("https://localhost:{}", running.addr.port());
        let ca_pem = std::fs::read_to_string(dir.path().join("data/tls/ca.pem")).expect("gateway ca");
        Ok(TestGateway { running: Some(running), base, ca_pem, dir })
    }
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
    pub fn addr(&self) -> std::net::SocketAddr {
        self.running.as_ref().expect("running").addr
    }
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca");
        Client::builder()
            .tls_certs_only([ca])
            .resolve("localhost", self.addr())
            .redirect(reqwest::redirect::Policy::none())
    }
    pub fn client(&self) -> Client {
        self.client_builder().build().expect("client")
    }
    pub fn client_with(&self, cert: &ClientCert) -> Client {
        self.client_builder()
            .identity(reqwest::Identity::from_pem(cert.identity_pem.as_bytes()).expect("identity"))
            .build()
            .expect("client")
    }
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DPoP

/// A DPoP key for tests, with a proof builder that can also craft hostile proofs.
pub struct DpopKey {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
    pub jwk: Value,
    pub jkt: String,
}

impl Default for DpopKey {
    fn default() -> Self {
        Self::generate()
    }
}

impl DpopKey {
    pub fn generate() -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("key");
        let p = pair.public_key().as_ref().to_vec();
        let b = tether_core::secret::b64url;
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b(&p[1..33]), "y": b(&p[33..65])});
        let jkt = tether_core::keys::jwk_thumbprint(&jwk).expect("thumbprint");
        DpopKey { pair, jwk, jkt }
    }

    /// Sign `header` and `claims` as given (for crafted proofs).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let b = tether_core::secret::b64url;
        let input = format!("{}.{}", b(header.to_string().as_bytes()), b(claims.to_string().as_bytes()));
        let sig = self.pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).expect("sign");
        format!("{input}.{}", b(sig.as_ref()))
    }

    /// A valid proof for `htm` at `htu`, issued at `iat`, with `ath` for `token` and `nonce`.
    pub fn proof(&self, htm: &str, htu: &str, iat: i64, token: Option<&str>, nonce: Option<&str>) -> String {
        let (h, c) = self.parts(htm, htu, iat, token, nonce);
        self.sign_raw(&h, &c)
    }

    /// The header and claims of a valid proof, to be altered before [`Self::sign_raw`].
    pub fn parts(&self, htm: &str, htu: &str, iat: i64, token: Option<&str>, nonce: Option<&str>) -> (Value, Value) {
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let mut claims = serde_json::json!({
            "jti": tether_core::secret::b64url(&tether_core::secret::random_bytes::<12>()),
            "htm": htm,
            "htu": htu,
            "iat": iat,
        });
        if let Some(t) = token {
            claims["ath"] = Value::String(tether_core::dpop::ath(t));
        }
        if let Some(n) = nonce {
            claims["nonce"] = Value::String(n.to_string());
        }
        (header, claims)
    }
}
