//! Hostile input (issue 13, item 12): about two thousand malformed requests per HTTP version,
//! generated from small tables (no randomness), against every endpoint of `tether serve` and a
//! gateway in front of `echo_upstream`, over HTTP/1.1 and HTTP/2 (reqwest; raw TLS sockets and a
//! raw HTTP/2 client for what reqwest will not send). Whatever arrives, the answer is never a 5xx (a 503 would need `Retry-After`),
//! never a connection closed without an answer (except where a request is broken at the framing
//! level and the server deliberately closes), redirects never leave the registered places, and
//! afterwards the server is healthy and a token issued before the run is still active.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use reqwest::Client;
use serde_json::{Value, json};
use tether_core::endpoint::paths;
use tether_core::secret::b64url;
use tether_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::transport::{h2_client, tls};

// ---------------------------------------------------------------------------------------------
// Cases

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum To {
    Srv,
    Gw,
}

/// One request as reqwest sends it (well-formed at the HTTP framing level).
#[derive(Clone)]
struct Case {
    what: String,
    to: To,
    method: String,
    /// Path and query, as sent.
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    /// A redirect's `Location` must start with one of these (`None`: not checked).
    redirects: Option<Vec<String>>,
    /// The statuses this case may get (`None`: any below 500).
    expect: Option<Vec<u16>>,
}

const FORM: &str = "application/x-www-form-urlencoded";

fn case(to: To, method: &str, target: impl Into<String>, what: impl Into<String>) -> Case {
    Case {
        what: what.into(),
        to,
        method: method.into(),
        target: target.into(),
        headers: Vec::new(),
        body: None,
        redirects: None,
        expect: None,
    }
}

impl Case {
    fn h(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.to_string(), value.as_ref().to_vec()));
        self
    }
    fn body(mut self, b: impl AsRef<[u8]>) -> Self {
        self.body = Some(b.as_ref().to_vec());
        self
    }
    fn form(self, b: impl AsRef<[u8]>) -> Self {
        self.h("content-type", FORM).body(b)
    }
    fn auth(self, basic: &str) -> Self {
        self.h("authorization", basic)
    }
    fn redirects(mut self, allowed: &[&str]) -> Self {
        self.redirects = Some(allowed.iter().map(|s| s.to_string()).collect());
        self
    }
    fn expect(mut self, statuses: &[u16]) -> Self {
        self.expect = Some(statuses.to_vec());
        self
    }
    fn label(&self) -> String {
        let t: String = self.target.chars().take(90).collect();
        format!("{:?} {} {t} [{}]", self.to, self.method, self.what)
    }
}

fn std_b64(b: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", std_b64(format!("{user}:{pass}")))
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn big(n: usize) -> String {
    "A".repeat(n)
}

// ---------------------------------------------------------------------------------------------
// The world: a server, its apps and users, a signed-in browser, a device code and a gateway

struct World {
    srv: TestServer,
    gw: TestGateway,
    web: AppCreds,
    web_basic: String,
    api_basic: String,
    tv: AppCreds,
    /// An opaque access token issued before the run: still active after it.
    canary: String,
    /// A JWT access token the gateway accepts.
    jwt: String,
    id_token: String,
    kid: String,
    issuer: String,
    /// A signed-in browser: its `tether_browser` and `tether_session` cookies.
    browser: String,
    session: String,
    /// The sign-in form that browser was shown (valid hidden values).
    authz: String,
    csrf: String,
    user_code: String,
    dpop: DpopKey,
    gw_redirect: String,
}

fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        let v = c.strip_prefix(&format!("{name}="))?;
        Some(v.split(';').next().unwrap_or("").to_string())
    })
}

async fn world() -> World {
    let srv = TestServer::start_with(|s| {
        // Absurd Content-Length values with no body behind them end in a 408 soon.
        s.http.body_read_timeout_seconds = 2;
    })
    .await;
    srv.add_user("alice", "pw").await;
    let mut ch = app(&["authorization_code", "refresh_token", "password", "client_credentials"]);
    ch.introspect_any = Some(true);
    ch.allowed_origins = Some(vec!["https://app.example".into()]);
    let web = srv.create_app(ch).await;
    let web_basic = basic(&web.client_id, web.client_secret.as_deref().unwrap());
    let mut ch = app(&["token_exchange"]);
    ch.exchange_from = Some(vec![web.client_id.clone()]);
    let api = srv.create_app(ch).await;
    let api_basic = basic(&api.client_id, api.client_secret.as_deref().unwrap());
    let mut ch = app(&["device_code", "refresh_token"]);
    ch.public = Some(true);
    let tv = srv.create_app(ch).await;
    let mut ch = app(&["password"]);
    ch.token_type = Some("jwt".into());
    let jwt_app = srv.create_app(ch).await;

    let r = srv.token(&web, &[("grant_type", "password"), ("username", "alice"), ("password", "pw")]).await;
    assert_eq!(r.status(), 200);
    let canary = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let pw = [("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("scope", "openid")];
    let r = srv.token(&web, &pw).await;
    let id_token = r.json::<Value>().await.unwrap()["id_token"].as_str().unwrap().to_string();
    let r = srv.token(&jwt_app, &[("grant_type", "password"), ("username", "alice"), ("password", "pw")]).await;
    let jwt = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let kid = jwt_header(&jwt)["kid"].as_str().unwrap().to_string();
    let issuer = srv.running().issuer.clone();

    // Sign in through the pages by hand, keeping the cookies and the form's hidden values.
    let c = srv.client();
    let (_, challenge) = pkce();
    let q = format!(
        "response_type=code&client_id={}&redirect_uri={}&scope=openid&state=s1&code_challenge={challenge}&code_challenge_method=S256",
        web.client_id,
        enc("https://app.example/cb")
    );
    let r = c.get(srv.url(&format!("{}?{q}", paths::AUTHORIZE))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let browser = set_cookie(&r, "tether_browser").expect("browser cookie");
    let hidden = hidden_inputs(&r.text().await.unwrap());
    let get = |n: &str| hidden.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap();
    let (authz, csrf) = (get("authz"), get("csrf"));
    let mut form = hidden.clone();
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "pw".into()));
    let r = c
        .post(srv.url(paths::AUTHORIZE))
        .header("cookie", format!("tether_browser={browser}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = set_cookie(&r, "tether_session").expect("session cookie");

    let r =
        c.post(srv.url(paths::DEVICE_AUTHORIZE)).form(&[("client_id", tv.client_id.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let user_code = r.json::<Value>().await.unwrap()["user_code"].as_str().unwrap().to_string();

    // The gateway: session (its callback on a port known in advance), bearer and introspection,
    // DPoP optional.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gw_redirect = format!("https://localhost:{port}/callback");
    let mut ch = app(&["authorization_code"]);
    ch.introspect_any = Some(true);
    ch.redirect_uris = Some(vec![gw_redirect.clone()]);
    let rp = srv.create_app(ch).await;
    let upstream = echo_upstream().await;
    let gw = srv
        .gateway(upstream, |c| {
            c.listen = Some(format!("127.0.0.1:{port}"));
            c.auth_methods = Some(vec!["session".into(), "bearer".into(), "introspection".into()]);
            c.client_id = Some(rp.client_id.clone());
            c.client_secret = rp.client_secret.clone();
            c.session_secret = Some("s".repeat(40));
            c.redirect_uri = Some(gw_redirect.clone());
            c.proof_of_possession_dpop = Some("optional".into());
            c.http.body_read_timeout_seconds = Some(2);
        })
        .await
        .unwrap();
    World {
        srv,
        gw,
        web,
        web_basic,
        api_basic,
        tv,
        canary,
        jwt,
        id_token,
        kid,
        issuer,
        browser,
        session,
        authz,
        csrf,
        user_code,
        dpop: DpopKey::generate(),
        gw_redirect,
    }
}

// ---------------------------------------------------------------------------------------------
// Tables

/// Query strings (after `?`).
fn queries() -> Vec<String> {
    vec![
        "%".into(),
        "%Z".into(),
        "%ZZ=%ZZ".into(),
        "a=%FF%FE%FD".into(),
        "a=%00&%00=b".into(),
        "a=%C0%AF&b=%ED%A0%80".into(),
        "a=1&a=2&a=3".into(),
        "&&&==&=&".into(),
        "a[]=1&a[b]=2&a%5B%5D=3".into(),
        "+++=+++&%2B=%20".into(),
        "a=%E2%80%AE%EF%BB%BF".into(),
        format!("x={}", big(6000)),
        (0..600).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join("&"),
    ]
}

/// Single hostile headers (each keeps the header list well under HTTP/2's 16 KiB).
fn headers() -> Vec<(&'static str, Vec<u8>)> {
    let v = |s: &str| s.as_bytes().to_vec();
    vec![
        ("authorization", v("Basic !!!")),
        ("authorization", v(&format!("Basic {}", std_b64("nocolon")))),
        ("authorization", b"Bearer \xff\xfe\x80".to_vec()),
        ("authorization", v(&format!("Bearer {}", big(12_000)))),
        ("cookie", v(&format!("tether_session={}", big(12_000)))),
        ("cookie", b"tether_session=\xff\xfe; tether_browser=\x80\x81".to_vec()),
        ("cookie", v(";;;;=;=;tether_browser=;tether_session;=tether_device")),
        ("cookie", v(&"a=b; ".repeat(1500))),
        ("dpop", v("a.b.c")),
        ("dpop", v(&big(12_000))),
        ("origin", v("null")),
        ("origin", v("https://evil.example")),
        ("origin", b"\xff\xfe".to_vec()),
        ("x-forwarded-for", v("1.2.3.4, nonsense, ::::, 999.1.1.1, ")),
        ("forwarded", v("for=\"[::1\";proto=gopher;by=_x, for=unknown;;;")),
        ("sec-fetch-site", v("cross-site")),
        ("expect", v("100-continue")),
        ("accept", v("text/html;q=999999999999999999999, */*;q=-1")),
        ("content-type", b"\xff\xfe".to_vec()),
        ("user-agent", b"\x80\x81\x82".to_vec()),
        ("x-pad", v(&big(12_000))),
        ("content-encoding", v("gzip")),
        ("x-http-method-override", v("DELETE")),
        ("x-ssl-client-cert", v("-----BEGIN CERTIFICATE-----garbage")),
    ]
}

/// Form bodies (sent as `application/x-www-form-urlencoded`).
fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let v = |s: &str| s.as_bytes().to_vec();
    vec![
        ("lone percent", v("%")),
        ("bad escapes", v("%ZZ=%ZZ&grant_type=%G0")),
        ("invalid utf-8 escapes", v("grant_type=%FF%FE%FD&token=%C0%AF")),
        ("NUL escapes", v("grant_type=client_credentials%00&%00=%00")),
        ("raw invalid utf-8 and NUL", b"grant_type=\xff\xfe\x00\x01&token=\x00".to_vec()),
        ("raw NULs", vec![0u8; 64]),
        ("repeated grant_type", v("grant_type=password&grant_type=client_credentials")),
        ("repeated token", v("token=a&token=a")),
        ("only separators", v("&&&&&&")),
        ("only equals", v("===&==&=")),
        ("long value", v(&format!("client_id={}", big(60_000)))),
        ("just over 64 KiB", v(&format!("x={}", big(70_000)))),
        ("1 MiB", v(&format!("x={}", big(1 << 20)))),
        ("10,000 keys", v(&(0..10_000).map(|i| format!("k{i}=")).collect::<Vec<_>>().join("&"))),
        ("JSON", v(r#"{"grant_type":"client_credentials","token":"x"}"#)),
        ("empty", Vec::new()),
        ("10,000 scopes", v(&format!("grant_type=client_credentials&scope={}", "s+".repeat(10_000)))),
        ("3,000 resources", v(&format!("grant_type=client_credentials{}", "&resource=https%3A%2F%2Fa".repeat(3000)))),
        ("UTF-16", b"g\0r\0a\0n\0t\0_\0t\0y\0p\0e\0=\0x\0".to_vec()),
    ]
}

fn content_types() -> Vec<Vec<u8>> {
    let v = |s: &str| s.as_bytes().to_vec();
    vec![
        v("application/json"),
        v("text/plain"),
        v("multipart/form-data; boundary=x"),
        v("application/x-www-form-urlencoded; charset=utf-16"),
        v("application/x-www-form-urlencoded, text/html"),
        v("APPLICATION/X-WWW-FORM-URLENCODED"),
        b"application/x-www-form-urlencoded\xff".to_vec(),
        v("application/x-www-form-urlencodedx"),
        v(";;;;"),
        v(""),
    ]
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD", "FOO", "get"];

/// Garbage JWTs (the real signing key's `kid` makes some of them reach signature checks).
fn jwts(w: &World) -> Vec<(&'static str, String)> {
    let b = |v: &Value| b64url(v.to_string().as_bytes());
    let claims = json!({"iss": w.issuer, "sub": "user-alice", "aud": w.web.client_id, "exp": T0 + 3600, "iat": T0,
        "client_id": w.web.client_id, "jti": "x", "scope": "openid"});
    let sig = b64url(&[7u8; 64]);
    vec![
        ("empty", String::new()),
        ("dot", ".".into()),
        ("two dots", "..".into()),
        ("one segment", "abc".into()),
        ("two segments", "a.b".into()),
        ("four segments", "a.b.c.d".into()),
        ("JWE form", "a.b.c.d.e".into()),
        ("not base64", "!!!.@@@.###".into()),
        ("standard base64", "eyJ+/w==.eyJ+/w==.+/+/".into()),
        ("header not JSON", format!("{}.{}.{sig}", b64url(b"{"), b(&claims))),
        ("header an array", format!("{}.{}.{sig}", b(&json!([])), b(&claims))),
        ("claims a string", format!("{}.{}.{sig}", b(&json!({"alg":"ES256","kid":w.kid})), b(&json!("x")))),
        ("alg none", format!("{}.{}.", b(&json!({"alg":"none","typ":"at+jwt"})), b(&claims))),
        ("alg none, real kid", format!("{}.{}.", b(&json!({"alg":"none","kid":w.kid,"typ":"at+jwt"})), b(&claims))),
        (
            "HS256 with the real kid",
            format!("{}.{}.{sig}", b(&json!({"alg":"HS256","kid":w.kid,"typ":"at+jwt"})), b(&claims)),
        ),
        ("unknown kid", format!("{}.{}.{sig}", b(&json!({"alg":"ES256","kid":"nope","typ":"at+jwt"})), b(&claims))),
        (
            "real kid, bad signature",
            format!("{}.{}.{sig}", b(&json!({"alg":"ES256","kid":w.kid,"typ":"at+jwt"})), b(&claims)),
        ),
        ("RS256 with the real kid", format!("{}.{}.{sig}", b(&json!({"alg":"RS256","kid":w.kid})), b(&claims))),
        (
            "jku and jwk in the header",
            format!(
                "{}.{}.{sig}",
                b(&json!({"alg":"ES256","jku":"https://evil.example/jwks","jwk":w.dpop.jwk})),
                b(&claims)
            ),
        ),
        ("crit", format!("{}.{}.{sig}", b(&json!({"alg":"ES256","kid":w.kid,"crit":["x"]})), b(&claims))),
        (
            "deep nesting",
            format!("{}.{}.{sig}", b64url("[".repeat(3000).as_bytes()), b64url("{".repeat(3000).as_bytes())),
        ),
        (
            "absurd numbers",
            format!(
                "{}.{}.{sig}",
                b(&json!({"alg":"ES256","kid":w.kid})),
                b64url(br#"{"exp":1e400,"iat":-9223372036854775808,"nbf":18446744073709551616}"#)
            ),
        ),
        ("huge", format!("{}.{}.{}", big(4000), big(4000), big(3000))),
        ("padding", "eyJ=.eyJ=.=".into()),
    ]
}

/// Hostile `DPoP` header values: garbage, and proofs signed by a real key with one thing wrong.
fn dpop_proofs(w: &World, htm: &str, htu: &str, token: Option<&str>) -> Vec<(String, String)> {
    let k = &w.dpop;
    let mut out: Vec<(String, String)> =
        jwts(w).into_iter().take(12).map(|(n, j)| (format!("garbage proof: {n}"), j)).collect();
    let (h, c) = k.parts(htm, htu, T0, token, None);
    let mut alter = |name: &str, f: &dyn Fn(&mut Value, &mut Value)| {
        let (mut h, mut c) = (h.clone(), c.clone());
        f(&mut h, &mut c);
        out.push((format!("proof: {name}"), k.sign_raw(&h, &c)));
    };
    alter("typ jwt", &|h, _| h["typ"] = json!("jwt"));
    alter("alg none", &|h, _| h["alg"] = json!("none"));
    alter("alg HS256", &|h, _| h["alg"] = json!("HS256"));
    alter("private key in the jwk", &|h, _| h["jwk"]["d"] = json!(b64url(&[1u8; 32])));
    alter("oct jwk", &|h, _| h["jwk"] = json!({"kty":"oct","k":"AAAA"}));
    alter("point not on the curve", &|h, _| h["jwk"]["y"] = json!(b64url(&[9u8; 32])));
    alter("tiny RSA key", &|h, _| h["jwk"] = json!({"kty":"RSA","n":"AQAB","e":"AQAB"}));
    alter("jwk a string", &|h, _| h["jwk"] = json!("x"));
    alter("htm wrong", &|_, c| c["htm"] = json!("DELETE"));
    alter("htu javascript", &|_, c| c["htu"] = json!("javascript:alert(1)"));
    alter("htu huge", &|_, c| c["htu"] = json!(format!("https://localhost/{}", big(8000))));
    alter("htu a number", &|_, c| c["htu"] = json!(1));
    alter("iat i64::MIN", &|_, c| c["iat"] = json!(i64::MIN));
    alter("iat i64::MAX", &|_, c| c["iat"] = json!(i64::MAX));
    alter("iat u64::MAX", &|_, c| c["iat"] = json!(u64::MAX));
    alter("iat 1e30", &|_, c| c["iat"] = json!(1e30));
    alter("iat a string", &|_, c| c["iat"] = json!("now"));
    alter("jti huge", &|_, c| c["jti"] = json!(big(5000)));
    alter("jti missing", &|_, c| c["jti"] = Value::Null);
    alter("ath wrong", &|_, c| c["ath"] = json!("AAAA"));
    alter("nonce garbage", &|_, c| c["nonce"] = json!(b64url(&[0u8; 24])));
    out
}

/// `redirect_uri` tricks against the registered `https://app.example/cb`.
fn redirect_tricks() -> Vec<String> {
    let mut v: Vec<String> = [
        "//evil.example/cb",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)//https://app.example/cb",
        "data:text/html,<script>alert(1)</script>",
        "https://app.example/cb/../evil",
        "https://app.example/cb?x=1",
        "https://app.example/cb#frag",
        "https://app.example.evil.example/cb",
        "https://app.example@evil.example/cb",
        "https://evil.example\\@app.example/cb",
        "HTTPS://APP.EXAMPLE/cb",
        "https://app.example/CB",
        "https://app.example/cb\0",
        "https://app.example/cb%2F..%2Fevil",
        " https://app.example/cb",
        "https://app.example/cb\r\nSet-Cookie: x=y",
        "http://app.example/cb",
        "https:\\\\evil.example",
        "/\\evil.example",
        "/cb",
        "https://app.example:443/cb",
        "https://app.example./cb",
        "https://xn--pple-43d.example/cb",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("https://app.example/cb?{}", big(8000)));
    v
}

const REGISTERED: &str = "https://app.example/cb";

// ---------------------------------------------------------------------------------------------
// Server cases

fn server_cases(w: &World) -> Vec<Case> {
    use paths::*;
    let mut out = Vec::new();
    let s = To::Srv;
    let endpoints: &[(&str, &[&str])] = &[
        (TOKEN, &["POST"]),
        (INTROSPECT, &["POST"]),
        (REVOKE, &["POST"]),
        (DEVICE_AUTHORIZE, &["POST"]),
        (AUTHORIZE, &["GET", "POST"]),
        (DEVICE, &["GET", "POST"]),
        (LOGOUT, &["GET", "POST"]),
        (USERINFO, &["GET", "POST"]),
        (JWKS, &["GET"]),
        (OIDC_DISCOVERY, &["GET"]),
        (OAUTH_DISCOVERY, &["GET"]),
        (HEALTH, &["GET"]),
    ];
    let default_body = "grant_type=client_credentials";
    // Generic: every endpoint and method with garbled queries and headers; every POST with
    // garbled bodies and content types; every endpoint with the methods it does not take.
    for (path, methods) in endpoints {
        for m in *methods {
            let base = |c: Case| if *m == "POST" { c.form(default_body) } else { c };
            for q in queries() {
                out.push(base(case(s, m, format!("{path}?{q}"), "query")));
            }
            for (n, v) in headers() {
                out.push(base(case(s, m, *path, format!("header {n}")).h(n, v)));
            }
            if *m == "POST" {
                for (what, b) in bodies() {
                    let c = case(s, m, *path, format!("body: {what}")).form(b);
                    // Client-authenticating endpoints also see the body after authentication.
                    let c = if matches!(*path, TOKEN | INTROSPECT | REVOKE) { c.auth(&w.web_basic) } else { c };
                    out.push(c);
                }
                for ct in content_types() {
                    out.push(case(s, m, *path, "content type").h("content-type", ct).body(default_body));
                }
                out.push(case(s, m, *path, "no content type").body(default_body));
            }
        }
        for m in METHODS.iter().filter(|m| !methods.contains(m)) {
            out.push(case(s, m, *path, "wrong method"));
        }
    }
    // Paths that are not quite endpoints.
    for p in [
        "/oauth2/token/",
        "//oauth2/token",
        "/oauth2//token",
        "/OAUTH2/TOKEN",
        "/oauth2/token%00",
        "/oauth2/%74oken",
        "/oauth2/token;x=y",
        "/%ZZ",
        "/%FF%FE",
        "/.well-known/",
        "/metrics",
        "/oauth2/authorize%3Fclient_id=x",
        &format!("/{}", big(8000)),
    ] {
        out.push(case(s, "GET", p, "odd path"));
        out.push(case(s, "HEAD", p, "odd path"));
        out.push(case(s, "POST", p, "odd path").form(default_body));
    }

    // Token endpoint: client authentication.
    let id = w.web.client_id.as_str();
    let basics = [
        "Basic".to_string(),
        "Basic ".into(),
        "Basic !!!".into(),
        format!("Basic {}", std_b64("nocolon")),
        format!("Basic {}", std_b64(":")),
        format!("Basic {}", std_b64(format!("{id}:"))),
        format!("Basic {}", std_b64(":secret")),
        format!("Basic {}", std_b64(format!("{id}:wrong"))),
        format!("Basic {}", std_b64(b"\xff\xfe:\xff")),
        format!("Basic {}", std_b64(format!("{id}\0:x"))),
        format!("Basic {}", std_b64("%ZZ:%ZZ")),
        format!("Basic {}", std_b64("%FF%00:%E2%80")),
        format!("Basic {}", std_b64(format!("{}:{}", big(6000), big(3000)))),
        format!("basic {}", std_b64(format!("{id}:x"))),
        format!("Basic  {}", std_b64(format!("{id}:x"))),
        "Basic a===".into(),
        "Basic YQ".into(),
        format!("Digest username=\"{id}\""),
        "Bearer x".into(),
        "NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAO5CAAAADw==".into(),
    ];
    for b in &basics {
        for path in [TOKEN, INTROSPECT, REVOKE, DEVICE_AUTHORIZE] {
            out.push(case(s, "POST", path, "basic auth").auth(b).form("grant_type=client_credentials&token=x"));
        }
    }
    let tok = |what: &str, body: String| case(s, "POST", TOKEN, what).auth(&w.web_basic).form(body);
    out.push(tok("two Authorization headers", default_body.into()).auth(&w.web_basic));
    out.push(tok("basic and client_secret in the body", format!("{default_body}&client_secret=x")));
    out.push(tok("basic and another client_id", format!("{default_body}&client_id=other")));
    out.push(tok("client assertion", format!("{default_body}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c")));
    out.push(
        case(s, "POST", TOKEN, "post auth with garbage secret")
            .form(format!("{default_body}&client_id={id}&client_secret=%FF%00")),
    );
    out.push(
        case(s, "POST", TOKEN, "post auth with huge id").form(format!("{default_body}&client_id={}", big(60_000))),
    );
    // Token endpoint: grants and their parameters.
    for g in [
        "",
        "x",
        "password%20",
        "PASSWORD",
        "implicit",
        "authorization_code",
        "refresh_token",
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code",
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
        "client_credentials%00",
        "%FF",
    ] {
        out.push(tok("grant_type", format!("grant_type={g}")));
    }
    for (what, extra) in [
        ("code garbage", format!("code={}", big(5000))),
        ("code NUL", "code=%00".into()),
        ("verifier short", "code=x&code_verifier=abc".into()),
        ("verifier bad chars", "code=x&code_verifier=%FF%00%20%3C%3E".repeat(2)),
        ("verifier huge", format!("code=x&code_verifier={}", big(10_000))),
    ] {
        out.push(tok(what, format!("grant_type=authorization_code&redirect_uri={}&{extra}", enc(REGISTERED))));
    }
    for r in redirect_tricks() {
        out.push(tok(
            "code with a redirect trick",
            format!("grant_type=authorization_code&code=x&code_verifier={}&redirect_uri={}", big(50), enc(&r)),
        ));
    }
    for (u, p) in [
        ("alice%00", "pw"),
        ("%FF%FE", "pw"),
        (&*big(20_000), "x"),
        ("ALICE", "x"),
        ("alice", "%00"),
        ("", ""),
        ("nobody", &*big(30_000)),
    ] {
        out.push(tok("password grant", format!("grant_type=password&username={u}&password={p}")));
    }
    for rt in [big(5000), "%00".into(), "a.b.c".into(), w.jwt.clone(), "%FF%FE".into()] {
        out.push(tok("refresh garbage", format!("grant_type=refresh_token&refresh_token={}", enc(&rt))));
    }
    for scope in
        ["openid%20openid", "%00", "a%09b", "%E2%80%AE", &"x%20".repeat(5000), "openid%20offline_access%20admin"]
    {
        out.push(tok("scope", format!("grant_type=client_credentials&scope={scope}")));
    }
    for res in ["%2F%2Fevil", "javascript%3Ax", "https%3A%2F%2Fx%23frag", "urn%3Ax", "%FF"] {
        out.push(tok("resource", format!("grant_type=client_credentials&resource={res}&audience={res}")));
    }
    for dc in [big(5000), "%00".into(), "x".into()] {
        out.push(case(s, "POST", TOKEN, "device code garbage").form(format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id={}&device_code={dc}",
            w.tv.client_id
        )));
    }
    let te = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange";
    let at_type = "urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";
    for (what, j) in jwts(w) {
        out.push(
            case(s, "POST", TOKEN, format!("exchange subject: {what}"))
                .auth(&w.api_basic)
                .form(format!("{te}&subject_token_type={at_type}&subject_token={}", enc(&j))),
        );
        out.push(
            case(s, "POST", INTROSPECT, format!("introspect: {what}"))
                .auth(&w.web_basic)
                .form(format!("token={}", enc(&j))),
        );
        out.push(
            case(s, "POST", REVOKE, format!("revoke: {what}"))
                .auth(&w.web_basic)
                .form(format!("token={}&token_type_hint=refresh_token", enc(&j))),
        );
        out.push(
            case(s, "GET", USERINFO, format!("userinfo bearer: {what}")).h("authorization", format!("Bearer {j}")),
        );
        out.push(
            case(s, "GET", format!("{LOGOUT}?id_token_hint={}", enc(&j)), format!("logout hint: {what}"))
                .h("cookie", format!("tether_session={}", w.session)),
        );
    }
    for (what, extra) in [
        ("type garbage", format!("subject_token_type=%FF&subject_token={}", w.canary)),
        (
            "actor garbage",
            format!("subject_token_type={at_type}&subject_token={}&actor_token=a.b.c&actor_token_type=x", w.canary),
        ),
        (
            "requested type garbage",
            format!("subject_token_type={at_type}&subject_token={}&requested_token_type=%00", w.canary),
        ),
        ("scope beyond", format!("subject_token_type={at_type}&subject_token={}&scope=admin%20root", w.canary)),
    ] {
        out.push(case(s, "POST", TOKEN, format!("exchange {what}")).auth(&w.api_basic).form(format!("{te}&{extra}")));
    }
    for hint in ["%00", "%FF", "access_token%20refresh_token", &big(5000)] {
        out.push(
            case(s, "POST", INTROSPECT, "hint")
                .auth(&w.web_basic)
                .form(format!("token={}&token_type_hint={hint}", w.canary)),
        );
        out.push(
            case(s, "POST", REVOKE, "hint").auth(&w.web_basic).form(format!("token=unknown&token_type_hint={hint}")),
        );
    }
    out.push(case(s, "POST", INTROSPECT, "two tokens").auth(&w.web_basic).form(format!("token={}&token=x", w.canary)));
    out.push(case(s, "POST", REVOKE, "two tokens").auth(&w.web_basic).form("token=a&token=b"));
    for (what, body) in [
        ("client_id garbage", "client_id=%FF%00".to_string()),
        ("client_id huge", format!("client_id={}", big(60_000))),
        ("scope garbage", format!("client_id={}&scope=%00%FF", w.tv.client_id)),
        ("confidential with no secret", format!("client_id={id}")),
    ] {
        out.push(case(s, "POST", DEVICE_AUTHORIZE, what).form(body));
    }

    // DPoP at the token endpoint (an app without a binding type still checks a proof) and at
    // userinfo with the canary (whose checks fail before anything is written).
    let htu = w.srv.url(TOKEN);
    for (what, p) in dpop_proofs(w, "POST", &htu, None) {
        let c = case(s, "POST", TOKEN, what.clone()).auth(&w.web_basic).h("dpop", &p).form(default_body);
        // An iat outside the window, however far, is refused (not wrapped around into it).
        out.push(if what.starts_with("proof: iat") { c.expect(&[400]) } else { c });
    }
    let ui = w.srv.url(USERINFO);
    for (what, p) in dpop_proofs(w, "GET", &ui, Some(&w.canary)) {
        let c = case(s, "GET", USERINFO, what.clone()).h("authorization", format!("DPoP {}", w.canary)).h("dpop", &p);
        out.push(if what.starts_with("proof: iat") { c.expect(&[400, 401]) } else { c });
    }
    out.push(
        case(s, "POST", TOKEN, "two DPoP headers")
            .auth(&w.web_basic)
            .h("dpop", "a.b.c")
            .h("dpop", "a.b.c")
            .form(default_body),
    );

    // Userinfo: how the token is presented.
    let ui_auth: Vec<Vec<u8>> = vec![
        b"Bearer".to_vec(),
        b"Bearer ".to_vec(),
        format!("Bearer  {}", w.canary).into_bytes(),
        format!("bearer {}", w.canary).into_bytes(),
        format!("Bearer {} extra", w.canary).into_bytes(),
        format!("DPoP {}", w.canary).into_bytes(),
        format!("Basic {}", std_b64("a:b")).into_bytes(),
        b"Bearer \x80\x81".to_vec(),
    ];
    for a in &ui_auth {
        out.push(case(s, "GET", USERINFO, "userinfo authorization").h("authorization", a));
    }
    out.push(
        case(s, "GET", USERINFO, "two bearer headers")
            .h("authorization", format!("Bearer {}", w.canary))
            .h("authorization", "Bearer x"),
    );
    out.push(
        case(s, "GET", format!("{USERINFO}?access_token={}", w.canary), "header and query")
            .h("authorization", format!("Bearer {}", w.canary)),
    );
    out.push(case(s, "GET", format!("{USERINFO}?access_token=%00&access_token=%FF"), "query tokens"));
    out.push(
        case(s, "POST", USERINFO, "form and header")
            .h("authorization", "Bearer x")
            .form(format!("access_token={}", w.canary)),
    );
    out.push(case(s, "POST", USERINFO, "form token garbage").form("access_token=%FF%00&access_token=x"));

    // CORS preflights.
    for origin in
        [b"https://app.example".to_vec(), b"null".to_vec(), b"\xff".to_vec(), b"https://evil.example".to_vec()]
    {
        for path in [TOKEN, USERINFO, REVOKE, INTROSPECT] {
            out.push(
                case(s, "OPTIONS", path, "preflight")
                    .h("origin", &origin)
                    .h("access-control-request-method", "POST")
                    .h("access-control-request-headers", format!("dpop, authorization, {}", "x-a, ".repeat(500))),
            );
        }
    }

    // The authorization endpoint: redirect tricks never redirect anywhere but the registered URI.
    let (_, ch) = pkce();
    let authz = |extra: &str| {
        format!(
            "{AUTHORIZE}?response_type=code&client_id={id}&state=st&code_challenge={ch}&code_challenge_method=S256&scope=openid&{extra}"
        )
    };
    let session_cookie = format!("tether_session={}; tether_browser={}", w.session, w.browser);
    for r in redirect_tricks() {
        let q = format!("redirect_uri={}", enc(&r));
        out.push(case(s, "GET", authz(&q), "redirect trick").redirects(&[REGISTERED]));
        out.push(
            case(s, "GET", authz(&q), "redirect trick, signed in")
                .h("cookie", &session_cookie)
                .redirects(&[REGISTERED]),
        );
        out.push(
            case(s, "POST", AUTHORIZE, "redirect trick, posted")
                .form(authz(&q).split_once('?').unwrap().1)
                .redirects(&[REGISTERED]),
        );
        out.push(
            case(
                s,
                "GET",
                format!("{LOGOUT}?client_id={id}&post_logout_redirect_uri={}&state=x", enc(&r)),
                "logout redirect trick",
            )
            .h("cookie", &session_cookie)
            .redirects(&[REGISTERED]),
        );
    }
    let reg = format!("redirect_uri={}", enc(REGISTERED));
    for extra in [
        "response_type=token",
        "response_type=code%20token",
        "response_type=none",
        "response_type=%00",
        "scope=%00%FF",
        &format!("scope={}", "x%20".repeat(3000)),
        "state=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &format!("state={}", big(8000)),
        &format!("nonce={}", big(8000)),
        "code_challenge=short",
        "code_challenge=%FF%FE%00",
        &format!("code_challenge={}", big(300)),
        "code_challenge_method=plain",
        "code_challenge_method=S512",
        "code_challenge_method=",
        "prompt=none%20login%20consent%20select_account%20x",
        "prompt=%00",
        "prompt=none",
        "prompt=login",
        "max_age=-1",
        "max_age=1e3",
        "max_age=99999999999999999999",
        "max_age=9223372036854775807",
        "max_age=0",
        "max_age=-9223372036854775808",
        "request=a.b.c",
        "request_uri=https%3A%2F%2Fevil.example%2Fr",
        "dpop_jkt=%FF",
        &format!("dpop_jkt={}", big(500)),
        "claims=%7B%7B%7B",
        "id_token_hint=a.b.c",
        &format!("login_hint={}", big(8000)),
        "resource=%2F%2Fevil",
        "client_id=other",
        "redirect_uri=https%3A%2F%2Fapp.example%2Fcb",
    ] {
        // Duplicated parameters (client_id, redirect_uri) are refused; the rest alter one thing.
        let q = format!("{reg}&{extra}");
        out.push(case(s, "GET", authz(&q), "authorize parameter").redirects(&[REGISTERED]));
        out.push(
            case(s, "GET", authz(&q), "authorize parameter, signed in")
                .h("cookie", &session_cookie)
                .redirects(&[REGISTERED]),
        );
    }
    out.push(case(s, "GET", format!("{AUTHORIZE}?client_id={}&response_type=code", big(6000)), "client_id huge"));
    out.push(
        case(
            s,
            "GET",
            format!("{AUTHORIZE}?client_id=%00&redirect_uri=javascript%3Ax"),
            "unknown client, bad redirect",
        )
        .redirects(&[]),
    );

    // The sign-in form: missing, garbled and foreign CSRF values, and hostile credentials.
    let browser = format!("tether_browser={}", w.browser);
    let other_browser = format!("tether_browser={}", b64url(&[3u8; 16]));
    let login = |what: &str, cookie: &str, fields: &[(&str, &str)]| {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let c = case(s, "POST", AUTHORIZE, what).form(body).redirects(&[REGISTERED]);
        if cookie.is_empty() { c } else { c.h("cookie", cookie) }
    };
    let (a, c) = (w.authz.as_str(), w.csrf.as_str());
    let garbled = [
        "",
        "x",
        "1.2",
        ".",
        "-9223372036854775808.AAAA",
        "9223372036854775807.AAAA",
        "-1.",
        "99999999999999999999.x",
        "1.%%%",
    ];
    for g in garbled {
        out.push(login(
            "garbled csrf",
            &browser,
            &[("authz", a), ("csrf", g), ("username", "alice"), ("password", "x")],
        ));
        out.push(case(s, "POST", DEVICE, "device: garbled csrf").h("cookie", &browser).form(format!(
            "step=code&user_code={}&csrf={}",
            w.user_code,
            enc(g)
        )));
        out.push(
            case(s, "POST", LOGOUT, "logout: garbled csrf")
                .h("cookie", &session_cookie)
                .form(format!("step=confirm&csrf={}&client_id={id}", enc(g))),
        );
    }
    out.push(login("no csrf", &browser, &[("authz", a), ("username", "alice"), ("password", "x")]));
    out.push(login(
        "csrf of another browser",
        &other_browser,
        &[("authz", a), ("csrf", c), ("username", "alice"), ("password", "pw")],
    ));
    out.push(login(
        "csrf without a browser cookie",
        "",
        &[("authz", a), ("csrf", c), ("username", "alice"), ("password", "pw")],
    ));
    let altered = a.replace("state=s1", "state=s2");
    out.push(login(
        "authz altered",
        &browser,
        &[("authz", &altered), ("csrf", c), ("username", "alice"), ("password", "pw")],
    ));
    out.push(login("authz garbage", &browser, &[("authz", "%ZZ&&=%FF"), ("csrf", c)]));
    out.push(login(
        "authz with a redirect trick",
        &browser,
        &[("authz", &a.replace("app.example", "evil.example")), ("csrf", c)],
    ));
    out.push(login(
        "consent step forged",
        &session_cookie,
        &[("authz", a), ("csrf", c), ("step", "consent"), ("approve", "yes")],
    ));
    out.push(login("csrf twice", &browser, &[("authz", a), ("csrf", c), ("csrf", c)]));
    out.push(login(
        "username NUL",
        &browser,
        &[("authz", a), ("csrf", c), ("username", "alice\0"), ("password", "pw")],
    ));
    out.push(login(
        "username huge",
        &browser,
        &[("authz", a), ("csrf", c), ("username", &big(30_000)), ("password", "pw")],
    ));
    out.push(login(
        "password huge",
        &browser,
        &[("authz", a), ("csrf", c), ("username", "mallory"), ("password", &big(60_000))],
    ));
    out.push(login("cross-site", &browser, &[("authz", a), ("csrf", c)]).h("sec-fetch-site", "cross-site"));
    out.push(login("foreign origin", &browser, &[("authz", a), ("csrf", c)]).h("origin", "https://evil.example"));

    // The device page.
    for code in ["%00", "%FF%FE", &big(5000), "BCDF-GHJK", &w.user_code.to_lowercase(), "----", "%20"] {
        out.push(case(s, "GET", format!("{DEVICE}?user_code={code}"), "device code").h("cookie", &browser));
    }
    for step in ["login", "approve", "unknown", "", "%00"] {
        out.push(
            case(s, "POST", DEVICE, "device step")
                .h("cookie", &session_cookie)
                .form(format!("step={step}&user_code={}&csrf=1.x&approve=yes", w.user_code)),
        );
    }
    // Logout with a real ID token that names no session, and other parameters.
    out.push(
        case(s, "GET", format!("{LOGOUT}?id_token_hint={}", w.id_token), "hint naming no session")
            .h("cookie", &session_cookie)
            .redirects(&[REGISTERED]),
    );
    for extra in
        ["client_id=%00", "client_id=other&id_token_hint=a.b.c", &format!("state={}", big(8000)), "ui_locales=%FF"]
    {
        out.push(
            case(s, "GET", format!("{LOGOUT}?{extra}"), "logout parameter")
                .h("cookie", &session_cookie)
                .redirects(&[REGISTERED]),
        );
        out.push(
            case(s, "POST", LOGOUT, "logout parameter, posted")
                .h("cookie", &session_cookie)
                .form(extra)
                .redirects(&[REGISTERED]),
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Gateway cases

fn gateway_cases(w: &World) -> Vec<Case> {
    let g = To::Gw;
    let mut out = Vec::new();
    let bearer = format!("Bearer {}", w.jwt);
    let callback = url::Url::parse(&w.gw_redirect).unwrap().path().to_string();
    // A redirect from the gateway goes to the issuer's authorization endpoint or stays on the
    // gateway (a path, never `//host`).
    let issuer_authz = w.srv.url(paths::AUTHORIZE);
    let ok_redirects = [issuer_authz.as_str(), "/"];
    // No credentials, then garbage credentials.
    for q in queries() {
        out.push(case(g, "GET", format!("/api?{q}"), "query, no token"));
        out.push(
            case(g, "GET", format!("/api?{q}"), "query, browser").h("accept", "text/html").redirects(&ok_redirects),
        );
        out.push(case(g, "GET", format!("/api?{q}"), "query, token").auth(&bearer));
    }
    for (n, v) in headers() {
        out.push(case(g, "GET", "/api", format!("header {n}")).h(n, &v));
        out.push(case(g, "POST", "/api", format!("header {n}, token")).auth(&bearer).h(n, &v).form("a=1"));
    }
    for (what, j) in jwts(w) {
        out.push(case(g, "GET", "/api", format!("bearer: {what}")).h("authorization", format!("Bearer {j}")));
        out.push(case(g, "GET", format!("/api?access_token={}", enc(&j)), format!("query token: {what}")));
        out.push(case(g, "POST", "/api", format!("form token: {what}")).form(format!("access_token={}", enc(&j))));
    }
    let htu = w.gw.url("/api");
    for (what, p) in dpop_proofs(w, "GET", &htu, Some(&w.jwt)) {
        out.push(case(g, "GET", "/api", what.clone()).h("authorization", format!("DPoP {}", w.jwt)).h("dpop", &p));
        out.push(case(g, "GET", "/api", format!("{what} with a bearer token")).auth(&bearer).h("dpop", &p));
    }
    for a in [
        format!("Bearer {} x", w.jwt),
        format!("Bearer  {}", w.jwt),
        format!("bearer {}", w.jwt),
        format!("Basic {}", std_b64("a:b")),
        format!("Bearer {}", big(14_000)),
        "Bearer".into(),
    ] {
        out.push(case(g, "GET", "/api", "authorization").auth(&a));
    }
    out.push(case(g, "GET", "/api", "two authorization headers").auth(&bearer).auth(&bearer));
    out.push(case(g, "GET", format!("/api?access_token={}", w.jwt), "header and query token").auth(&bearer));
    out.push(case(g, "POST", "/api", "header and form token").auth(&bearer).form(format!("access_token={}", w.jwt)));
    out.push(case(g, "POST", "/api", "two form tokens").form(format!("access_token={0}&access_token={0}", w.jwt)));
    out.push(case(g, "POST", "/api", "form token in a 1.5 MiB body").form(format!(
        "access_token={}&x={}",
        w.jwt,
        big(1_500_000)
    )));
    out.push(case(g, "GET", "/api", "opaque token (introspection)").auth(&format!("Bearer {}", w.canary)));
    // Admitted requests with hostile paths, headers and bodies: the upstream sees them.
    for p in [
        "/%00",
        "/%ZZ",
        "/%FF%FE",
        "/a%2F..%2F..%2Fetc%2Fpasswd",
        "//evil.example/x",
        "/;jsessionid=x",
        "/?a=%ZZ&a=1&a=2",
        "/api%3Fx=1",
        &format!("/{}", big(8000)),
        "/%0D%0ASet-Cookie:%20x=y",
    ] {
        out.push(case(g, "GET", p, "path, token").auth(&bearer));
        out.push(case(g, "GET", p, "path, browser").h("accept", "text/html").redirects(&ok_redirects));
    }
    for (n, v) in [
        ("x-authenticated-sub", "root"),
        ("x-authenticated-scope", "admin"),
        ("connection", "x-authenticated-sub, keep-alive"),
        ("connection", "authorization"),
        ("te", "trailers"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "gopher"),
        ("proxy-authorization", "Basic eDp4"),
        ("upgrade", "websocket"),
    ] {
        out.push(case(g, "GET", "/api", format!("token and {n}")).auth(&bearer).h(n, v));
    }
    for (what, b) in bodies() {
        out.push(case(g, "POST", "/api", format!("token and body: {what}")).auth(&bearer).form(b));
    }
    // (Below the echo upstream's own 2 MB limit: an upstream that answers early and hangs up
    // while the gateway still streams the body to it makes a 502, which is fair.)
    out.push(
        case(g, "POST", "/api", "token and 1.5 MiB JSON")
            .auth(&bearer)
            .h("content-type", "application/json")
            .body(big(1_500_000)),
    );
    out.push(
        case(g, "POST", "/api", "bad token and 3 MiB JSON")
            .auth("Bearer x")
            .h("content-type", "application/json")
            .body(big(3 << 20)),
    );
    for m in METHODS {
        out.push(case(g, m, "/api", "method, token").auth(&bearer));
        out.push(case(g, m, "/api", "method, no token"));
    }
    // The session method: cookies and the callback.
    for c in [
        "tether_gw_session=AAAA".to_string(),
        format!("tether_gw_session={}", big(12_000)),
        "tether_gw_session=%FF%00".into(),
        format!("tether_gw_session={}", b64url(&[0u8; 200])),
        "tether_gw_session=; tether_gw_session=x".into(),
    ] {
        out.push(case(g, "GET", "/api", "session cookie").h("cookie", &c));
        out.push(
            case(g, "GET", "/api", "session cookie, browser")
                .h("cookie", &c)
                .h("accept", "text/html")
                .redirects(&ok_redirects),
        );
    }
    for q in [
        "",
        "error=%3Cscript%3E",
        &format!("error={}", big(5000)),
        "code=x&state=y",
        "code=%ZZ&state=%FF",
        "state=&code=",
        "code=a&code=b&state=c&state=d",
    ] {
        for cookie in ["", "tether_gw_login=AAAA", "tether_gw_login=%00%FF"] {
            let c = case(g, "GET", format!("{callback}?{q}"), "callback").redirects(&["/"]);
            out.push(if cookie.is_empty() { c } else { c.h("cookie", cookie) });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Running the cases

struct Clients {
    srv: Client,
    gw: Client,
    srv_base: String,
    gw_base: String,
}

/// `status×count, ...`
fn histogram(statuses: &[u16]) -> String {
    let mut m = std::collections::BTreeMap::new();
    for s in statuses {
        *m.entry(*s).or_insert(0) += 1;
    }
    m.iter().map(|(s, n)| format!("{s}×{n}")).collect::<Vec<_>>().join(" ")
}

/// The status of one case, and what went wrong with it, if anything.
async fn run_one(c: &Clients, case: &Case) -> (Option<u16>, Option<String>) {
    let (client, base) = match case.to {
        To::Srv => (&c.srv, &c.srv_base),
        To::Gw => (&c.gw, &c.gw_base),
    };
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
    let mut req = client.request(method, format!("{base}{}", case.target));
    for (n, v) in &case.headers {
        req = req.header(n.as_str(), reqwest::header::HeaderValue::from_bytes(v).unwrap());
    }
    if let Some(b) = &case.body {
        req = req.body(b.clone());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (None, Some(format!("no answer: {e:?}"))),
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    match resp.bytes().await {
        Ok(body) => (Some(status), judge(case, status, &headers, &body)),
        Err(e) => (Some(status), Some(format!("{status}, then the body was cut: {e:?}"))),
    }
}

/// What is wrong with an answer, if anything.
fn judge(case: &Case, status: u16, headers: &reqwest::header::HeaderMap, body: &[u8]) -> Option<String> {
    let text = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if status >= 500 && !(status == 503 && headers.contains_key("retry-after")) {
        return Some(format!("status {status}: {}", text()));
    }
    // Every answer of the server's, and the gateway's own answers (refusals, redirects; not
    // what the upstream answered), carry nosniff.
    let own = case.to == To::Srv
        || (300..400).contains(&status)
        || serde_json::from_slice::<Value>(body).is_ok_and(|v| v.get("error").is_some());
    if own && headers.get("x-content-type-options").is_none_or(|v| v != "nosniff") {
        return Some(format!("status {status} without nosniff"));
    }
    if let Some(e) = &case.expect
        && !e.contains(&status)
    {
        return Some(format!("status {status}, expected one of {e:?}: {}", text()));
    }
    if let (Some(allowed), true) = (&case.redirects, (300..400).contains(&status)) {
        let loc =
            headers.get("location").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).unwrap_or_default();
        if !allowed.iter().any(|a| redirect_ok(a, &loc)) {
            return Some(format!("status {status} redirects to {loc:?}"));
        }
    }
    None
}

/// May a redirect go to `loc`, given the allowed `prefix`? `"/"` allows any path on the same
/// host (never `//host` or `/\host`); anything else allows exactly that URL plus a query or
/// fragment.
fn redirect_ok(prefix: &str, loc: &str) -> bool {
    if prefix == "/" {
        return loc.starts_with('/') && !loc.starts_with("//") && !loc.starts_with("/\\");
    }
    loc.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with(['?', '#']))
}

/// Run `cases` with a few requests in flight; returns the statuses seen and the failures.
async fn run_all(c: Arc<Clients>, cases: Arc<Vec<Case>>) -> (Vec<u16>, Vec<String>) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (c, cases, next) = (c.clone(), cases.clone(), next.clone());
        set.spawn(async move {
            let (mut statuses, mut failures) = (Vec::new(), Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { return (statuses, failures) };
                let (status, f) = run_one(&c, case).await;
                statuses.extend(status);
                if let Some(f) = f {
                    failures.push(format!("{}: {f}", case.label()));
                }
            }
        });
    }
    let (mut statuses, mut failures) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        let (s, f) = r.unwrap();
        statuses.extend(s);
        failures.extend(f);
    }
    (statuses, failures)
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1: what reqwest refuses to send

struct Raw {
    what: &'static str,
    to: To,
    bytes: Vec<u8>,
    /// The request is broken at the framing level: closing the connection without an answer is
    /// a legitimate way to refuse it.
    may_close: bool,
}

/// The responses on a connection (status, lower-cased head), read until it closes. Each request
/// ends with `Connection: close` (or is HTTP/1.0), so the server closes after its last answer.
async fn raw_exchange(addr: std::net::SocketAddr, ca: &str, bytes: &[u8]) -> Result<Vec<(u16, String)>, String> {
    let mut s = tls(addr, ca, &[b"http/1.1"]).await;
    // The server may answer (and close) before it has read everything.
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        let mut chunk = [0u8; 16384];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        return Err(format!("no close within 15 s; got {:?}", String::from_utf8_lossy(&buf[..buf.len().min(200)])));
    }
    let mut statuses = Vec::new();
    let mut rest = &buf[..];
    while let Some(end) = rest.windows(4).position(|x| x == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let lower = head.to_ascii_lowercase();
        let status: u16 =
            head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("not a response: {head}"))?;
        let len: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        statuses.push((status, head));
        rest = &rest[(end + 4 + len).min(rest.len())..];
    }
    Ok(statuses)
}

fn raw_cases(w: &World) -> Vec<Raw> {
    let mut out = Vec::new();
    let token_head = "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n";
    let form = "grant_type=client_credentials";
    for to in [To::Srv, To::Gw] {
        let auth = match to {
            To::Srv => String::new(),
            To::Gw => format!("Authorization: Bearer {}\r\n", w.jwt),
        };
        let get = |target: &str, extra: &str| {
            format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{auth}{extra}Connection: close\r\n\r\n").into_bytes()
        };
        let post = |extra: &str, body: &str| format!("{token_head}{auth}{extra}\r\n{body}").into_bytes();
        let mut add =
            |what: &'static str, bytes: Vec<u8>, may_close: bool| out.push(Raw { what, to, bytes, may_close });
        add("NUL in the target", get("/healthz\0", ""), true);
        add(
            "raw invalid UTF-8 in the query",
            b"GET /oauth2/authorize?x=\xff\xfe HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
            true,
        );
        add("space in the target", get("/oauth2/jwks?a=b c", ""), true);
        add("absolute form", get("https://evil.example/healthz", ""), false);
        add("absolute form, other scheme", get("gopher://localhost/healthz", ""), false);
        add("dot segments", get("/.well-known/../healthz", ""), false);
        add("dot segments out of the root", get("/../../../../etc/passwd", ""), false);
        add("encoded dot segments", get("/%2e%2e/%2E%2E/healthz", ""), false);
        add("backslashes", get("/\\evil.example/x", "Accept: text/html\r\n"), true);
        add("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(), false);
        add("GET *", b"GET * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(), false);
        add("POST * with a body", format!("POST * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: {FORM}\r\nContent-Length: {}\r\n\r\n{form}", form.len()).into_bytes(), false);
        add(
            "CONNECT",
            b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nConnection: close\r\n\r\n".to_vec(),
            false,
        );
        add(
            "lower-case method",
            get("/healthz", "")
                .iter()
                .enumerate()
                .map(|(i, b)| if i < 3 { b.to_ascii_lowercase() } else { *b })
                .collect(),
            false,
        );
        add("NUL in a header value", get("/healthz", "X-A: a\0b\r\n"), true);
        add("header without a colon", get("/healthz", "Garbage\r\n"), true);
        add("space in a header name", get("/healthz", "X A: b\r\n"), true);
        add("obs-fold", get("/healthz", "X-A: a\r\n  b\r\n"), true);
        add(
            "raw invalid UTF-8 in a header",
            [
                &b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-A: \xff\xfe\x80\r\n"[..],
                auth.as_bytes(),
                b"Connection: close\r\n\r\n",
            ]
            .concat(),
            false,
        );
        add(
            "bare LF line ends",
            format!("GET /healthz HTTP/1.1\nHost: localhost\n{}Connection: close\n\n", auth.replace("\r\n", "\n"))
                .into_bytes(),
            true,
        );
        add("HTTP/1.0 without Host", b"GET /healthz HTTP/1.0\r\n\r\n".to_vec(), false);
        add("HTTP/9.9", b"GET /healthz HTTP/9.9\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(), true);
        add("no Host", format!("GET /healthz HTTP/1.1\r\n{auth}Connection: close\r\n\r\n").into_bytes(), false);
        add("two Hosts", get("/healthz", "Host: evil.example\r\n"), false);
        add(
            "Host garbage",
            format!("GET /healthz HTTP/1.1\r\nHost: evil.example:99999\r\n{auth}Connection: close\r\n\r\n")
                .into_bytes(),
            false,
        );
        add(
            "Host with userinfo",
            format!("GET /healthz HTTP/1.1\r\nHost: a@b@evil.example\r\n{auth}Connection: close\r\n\r\n").into_bytes(),
            false,
        );
        add("100 KiB header", get("/healthz", &format!("X-Pad: {}\r\n", big(100_000))), false);
        add("1 MiB header", get("/healthz", &format!("X-Pad: {}\r\n", big(1 << 20))), true);
        add("500 headers", get("/healthz", &(0..500).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()), true);
        add(
            "200 KiB of cookies",
            get("/oauth2/authorize", &format!("Cookie: {}\r\n", "tether_session=AAAAAAAA; ".repeat(8000))),
            false,
        );
        add(
            "two different Content-Lengths",
            post(&format!("Content-Length: {}\r\nContent-Length: 5\r\n", form.len()), form),
            true,
        );
        add("negative Content-Length", post("Content-Length: -1\r\n", form), true);
        add("Content-Length beyond u64", post("Content-Length: 99999999999999999999999\r\n", form), true);
        add("Content-Length not a number", post("Content-Length: abc\r\n", form), true);
        add("absurd Content-Length, no body", post("Content-Length: 1000000000000\r\n", ""), false);
        add(
            "absurd Content-Length, Expect 100-continue",
            post("Content-Length: 1000000000000\r\nExpect: 100-continue\r\n", ""),
            false,
        );
        add(
            "Content-Length and chunked",
            post(
                &format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", form.len()),
                &format!("{:x}\r\n{form}\r\n0\r\n\r\n", form.len()),
            ),
            true,
        );
        add("unknown transfer coding", post("Transfer-Encoding: gzip\r\n", form), true);
        add("chunk size not hex", post("Transfer-Encoding: chunked\r\n", "zz\r\nabc\r\n0\r\n\r\n"), true);
        add(
            "chunk size beyond u64",
            post("Transfer-Encoding: chunked\r\n", "ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
            true,
        );
        add(
            "chunked with trailers",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("{:x}\r\n{form}\r\n0\r\nX-Trailer: \u{ff}\r\n\r\n", form.len()),
            ),
            false,
        );
        add("Upgrade h2c", get("/healthz", "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"), false);
        add(
            "Upgrade websocket",
            get(
                "/api",
                "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            ),
            false,
        );
        add(
            "pipelined",
            [
                get("/healthz", "").as_slice().strip_suffix(b"Connection: close\r\n\r\n").unwrap(),
                b"\r\n",
                &get("/oauth2/jwks", ""),
            ]
            .concat(),
            false,
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/2: what reqwest will not do over HTTP/2

/// Send one request on a fresh HTTP/2 connection; the status, or why there was none.
async fn h2_one(
    addr: std::net::SocketAddr,
    ca: &str,
    req: http::Request<()>,
    body: Vec<Bytes>,
    trailers: Option<http::HeaderMap>,
    open: bool,
) -> Result<u16, String> {
    let (send, _conn) = h2_client(addr, ca).await;
    let mut ready = send.ready().await.map_err(|e| format!("not ready: {e}"))?;
    let end = body.is_empty() && trailers.is_none() && !open;
    let (resp, mut stream) = ready.send_request(req, end).map_err(|e| format!("send: {e}"))?;
    let n = body.len();
    for (i, b) in body.into_iter().enumerate() {
        let last = i + 1 == n && trailers.is_none() && !open;
        if stream.send_data(b, last).is_err() {
            break;
        }
    }
    if let Some(t) = trailers {
        let _ = stream.send_trailers(t);
    }
    let resp =
        tokio::time::timeout(Duration::from_secs(15), resp).await.map_err(|_| "no answer in 15 s".to_string())?;
    let resp = resp.map_err(|e| format!("no answer: {e}"))?;
    let status = resp.status().as_u16();
    let mut b = resp.into_body();
    while let Some(d) = b.data().await {
        let d = d.map_err(|e| format!("{status}, then the body was cut: {e}"))?;
        let _ = b.flow_control().release_capacity(d.len());
    }
    Ok(status)
}

struct H2Case {
    what: &'static str,
    to: To,
    req: http::Request<()>,
    body: Vec<Bytes>,
    trailers: Option<http::HeaderMap>,
    /// Broken at the framing level (RFC 9113 §8.1.1): a stream reset is a legitimate answer.
    may_reset: bool,
    /// Leave the request stream open after the body (a client that is still sending).
    open: bool,
}

fn h2_cases(w: &World) -> Vec<H2Case> {
    let mut out = Vec::new();
    for to in [To::Srv, To::Gw] {
        let base = match to {
            To::Srv => w.srv.base.clone(),
            To::Gw => w.gw.base.clone(),
        };
        let auth = format!("Bearer {}", w.jwt);
        let r = |m: &str, p: &str| {
            let b = http::Request::builder().method(m).uri(format!("{base}{p}"));
            if to == To::Gw { b.header("authorization", auth.as_str()) } else { b }
        };
        let post = || r("POST", "/oauth2/token").header("content-type", FORM);
        let form = Bytes::from_static(b"grant_type=client_credentials");
        let mut add = |what, req: http::Request<()>, body: Vec<Bytes>, trailers, may_reset| {
            out.push(H2Case { what, to, req, body, trailers, may_reset, open: false })
        };
        let star = http::Request::builder().method("OPTIONS").uri("*").body(()).unwrap();
        add("OPTIONS *", star, vec![], None, false);
        add(
            "Content-Length larger than the body",
            post().header("content-length", "100").body(()).unwrap(),
            vec![form.clone()],
            None,
            true,
        );
        add(
            "Content-Length smaller than the body",
            post().header("content-length", "3").body(()).unwrap(),
            vec![form.clone()],
            None,
            true,
        );
        add(
            "absurd Content-Length",
            post().header("content-length", "1000000000000").body(()).unwrap(),
            vec![form.clone()],
            None,
            true,
        );
        add(
            "Content-Length beyond u64",
            post().header("content-length", "99999999999999999999999").body(()).unwrap(),
            vec![form.clone()],
            None,
            true,
        );
        let mut t = http::HeaderMap::new();
        t.insert("x-trailer", http::HeaderValue::from_static("x"));
        t.insert("authorization", http::HeaderValue::from_static("Bearer trailer"));
        add("trailers after a form", post().body(()).unwrap(), vec![form.clone()], Some(t), false);
        add("a body on GET", r("GET", "/healthz").body(()).unwrap(), vec![Bytes::from(big(100_000))], None, false);
        add(
            "a body in 1,000 frames",
            post().body(()).unwrap(),
            (0..1000).map(|_| Bytes::from_static(b"a=b&")).collect(),
            None,
            false,
        );
        // A flood of empty DATA frames is an attack (CVE-2019-9518): the HTTP/2 layer closes
        // the connection with ENHANCE_YOUR_CALM.
        add("200 empty DATA frames", post().body(()).unwrap(), vec![Bytes::new(); 200], None, true);
        let mut many = r("GET", "/healthz");
        for i in 0..300 {
            many = many.header(format!("x-h{i}"), "v");
        }
        add("300 headers", many.body(()).unwrap(), vec![], None, false);
        // Over the 16 KiB header list: a 431 or a refused stream (or, once the block needs
        // CONTINUATION frames, GOAWAY) from the HTTP/2 layer.
        add(
            "20 KiB cookie",
            r("GET", "/oauth2/authorize").header("cookie", format!("a={}", big(20_000))).body(()).unwrap(),
            vec![],
            None,
            true,
        );
        // An absurd Content-Length on a stream that is still sending: a 413 (or a 408 when the
        // body stops), not a reset.
        let absurd = post().header("content-length", "1000000000000").body(()).unwrap();
        out.push(H2Case {
            what: "absurd Content-Length, still sending",
            to,
            req: absurd,
            body: vec![form.clone()],
            trailers: None,
            may_reset: false,
            open: true,
        });
        let absurd = post().header("content-length", "1000000000000").body(()).unwrap();
        out.push(H2Case {
            what: "absurd Content-Length, no body yet",
            to,
            req: absurd,
            body: vec![],
            trailers: None,
            may_reset: false,
            open: true,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The test

#[tokio::test]
async fn hostile_requests_get_answers_and_change_nothing() {
    let started = Instant::now();
    let w = world().await;
    let srv_cases = server_cases(&w);
    let gw_cases = gateway_cases(&w);
    let mut cases = srv_cases.clone();
    cases.extend(gw_cases.iter().cloned());
    let cases = Arc::new(cases);
    let mut failures = Vec::new();
    for h2 in [false, true] {
        let mk = |b: reqwest::ClientBuilder| {
            let b = b.timeout(Duration::from_secs(20));
            if h2 { b.http2_prior_knowledge() } else { b.http1_only() }.build().unwrap()
        };
        let clients = Arc::new(Clients {
            srv: mk(w.srv.client_builder()),
            gw: mk(w.gw.client_builder()),
            srv_base: w.srv.base.clone(),
            gw_base: w.gw.base.clone(),
        });
        let t = Instant::now();
        let (statuses, f) = run_all(clients, cases.clone()).await;
        eprintln!(
            "hostile: HTTP/{}: {} requests ({} server, {} gateway) in {:.1?}, {} failures; statuses {}",
            if h2 { "2" } else { "1.1" },
            cases.len(),
            srv_cases.len(),
            gw_cases.len(),
            t.elapsed(),
            f.len(),
            histogram(&statuses)
        );
        failures.extend(f.into_iter().map(|f| format!("HTTP/{}: {f}", if h2 { "2" } else { "1.1" })));
    }

    // Raw HTTP/1.1.
    let raw = raw_cases(&w);
    let mut raw_statuses = Vec::new();
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, r) in raw.iter().enumerate() {
        let (addr, ca) = match r.to {
            To::Srv => (w.srv.running().addr, w.srv.ca_pem.clone()),
            To::Gw => (w.gw.addr(), w.gw.ca_pem.clone()),
        };
        let bytes = r.bytes.clone();
        set.spawn(async move { (i, raw_exchange(addr, &ca, &bytes).await) });
    }
    while let Some(res) = set.join_next().await {
        let (i, res) = res.unwrap();
        let r = &raw[i];
        if let Ok(s) = &res {
            raw_statuses.extend(s.iter().map(|(s, _)| *s));
        }
        let bad = match res {
            Err(e) => Some(e),
            Ok(s) if s.is_empty() && !r.may_close => Some("closed without an answer".into()),
            Ok(s) => s.iter().find(|(s, _)| *s >= 500).map(|(s, _)| format!("status {s}")),
        };
        if let Some(b) = bad {
            failures.push(format!("raw HTTP/1.1 {:?} [{}]: {b}", r.to, r.what));
        }
    }
    eprintln!("hostile: raw HTTP/1.1: {} requests in {:.1?}: {}", raw.len(), t.elapsed(), histogram(&raw_statuses));

    // Raw HTTP/2.
    let t = Instant::now();
    let h2 = h2_cases(&w);
    let n_h2 = h2.len();
    let (mut h2_statuses, mut h2_resets) = (Vec::new(), 0);
    let mut set = tokio::task::JoinSet::new();
    for c in h2 {
        let (addr, ca) = match c.to {
            To::Srv => (w.srv.running().addr, w.srv.ca_pem.clone()),
            To::Gw => (w.gw.addr(), w.gw.ca_pem.clone()),
        };
        set.spawn(async move {
            let res = h2_one(addr, &ca, c.req, c.body, c.trailers, c.open).await;
            (c.to, c.what, c.may_reset, res)
        });
    }
    while let Some(r) = set.join_next().await {
        let (to, what, may_reset, res) = r.unwrap();
        match &res {
            Ok(s) => h2_statuses.push(*s),
            Err(_) => h2_resets += 1,
        }
        let bad = match res {
            Ok(s) if s >= 500 => Some(format!("status {s}")),
            Ok(_) => None,
            Err(_) if may_reset => None,
            Err(e) => Some(e),
        };
        if let Some(b) = bad {
            failures.push(format!("raw HTTP/2 {to:?} [{what}]: {b}"));
        }
    }
    eprintln!(
        "hostile: raw HTTP/2: {n_h2} requests in {:.1?}: {}, {h2_resets} refused by the HTTP/2 layer",
        t.elapsed(),
        histogram(&h2_statuses)
    );

    assert!(failures.is_empty(), "{} hostile requests went wrong:\n{}", failures.len(), failures.join("\n"));

    // Afterwards: healthy, the token issued before the run still active, the gateway still
    // passing it.
    let r = w.srv.client().get(w.srv.url(paths::HEALTH)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v = w.srv.introspect(&w.web, &w.canary).await;
    assert_eq!(v["active"], true, "{v}");
    let r = w.gw.client().get(w.gw.url("/api")).bearer_auth(&w.jwt).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = w.gw.client().get(w.gw.url("/api")).bearer_auth(&w.canary).send().await.unwrap();
    assert_eq!(r.status(), 200);
    eprintln!("hostile: done in {:.1?}", started.elapsed());
}

/// The gateway's session method sends a browser back where it was going after sign-in, but only
/// to a path of its own: a request target that a browser would read as another host (`//host`)
/// comes back as `/`; one with a backslash, raw or encoded (`/\host`), is refused before anything
/// else (400), as every path a server could read two ways is.
#[tokio::test]
async fn the_gateway_returns_browsers_to_its_own_paths_only() {
    let w = world().await;
    for target in ["/\\evil.example/x", "/%5Cevil.example/x?a=1"] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\nConnection: close\r\n\r\n");
        let answers = raw_exchange(w.gw.addr(), &w.gw.ca_pem, req.as_bytes()).await.unwrap();
        assert_eq!(answers[0].0, 400, "{target}: {}", answers[0].1);
    }
    for (target, back) in [("//evil.example/x", "/")] {
        // A browser navigation (raw: reqwest would rewrite the backslash) without a session.
        let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\nConnection: close\r\n\r\n");
        let answers = raw_exchange(w.gw.addr(), &w.gw.ca_pem, req.as_bytes()).await.unwrap();
        let (status, head) = &answers[0];
        assert_eq!(*status, 302, "{target}: {head}");
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
                .unwrap()
                .to_string()
        };
        let to_issuer = header("location");
        let login_cookie = header("set-cookie").split(';').next().unwrap().to_string();
        // Sign in at the issuer, come back to the callback with the code.
        let query = to_issuer.split_once('?').unwrap().1.to_string();
        let callback = login_flow(&w.srv, &w.srv.browser(), &query, "alice", "pw").await;
        assert!(callback.starts_with(&w.gw_redirect), "{callback}");
        let r = w.gw.client().get(&callback).header("cookie", &login_cookie).send().await.unwrap();
        assert_eq!(r.status(), 302, "{target}");
        assert_eq!(location(&r), back, "{target}");
    }
}
