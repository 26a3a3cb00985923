//! Security hardening: no store write before the client authenticated (a DPoP proof's `jti` is
//! spent only for an authenticated client), one answer for every failed client authentication (no
//! client enumeration), CORS per app, and a data directory only its owner can read.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, Response};
use serde_json::{Value, json};
use tether_core::clock::Clock;
use tether_testkit::*;

// ---------------------------------------------------------------------------------------------
// 8. Nothing is written for an unauthenticated request.

#[tokio::test]
async fn a_dpop_proof_is_spent_only_once_the_client_authenticated() {
    let srv = TestServer::start().await;
    let a = srv.create_app(app(&["client_credentials"])).await;
    let key = DpopKey::generate();
    let revoke = srv.url("/oauth2/revoke");
    let proof = key.proof("POST", &revoke, srv.clock.now(), None, None);
    let send = |id: &str, secret: &str, proof: &str| {
        srv.client()
            .post(&revoke)
            .basic_auth(id, Some(secret))
            .header("dpop", proof)
            .form(&[("token", "no-such-token")])
            .send()
    };
    // A wrong secret, an unknown client: refused, and the proof's jti is not stored.
    assert_oauth_error(send(&a.client_id, "wrong", &proof).await.unwrap(), 401, "invalid_client").await;
    assert_oauth_error(send("nobody", "wrong", &proof).await.unwrap(), 401, "invalid_client").await;
    assert_eq!(srv.count("dpop_jti").await, 0, "no jti stored for an unauthenticated revocation");
    // The same proof still works for the authenticated client, once.
    let secret = a.client_secret.as_deref().unwrap();
    assert_eq!(send(&a.client_id, secret, &proof).await.unwrap().status(), 200);
    assert_eq!(srv.count("dpop_jti").await, 1);
    let e = assert_oauth_error(send(&a.client_id, secret, &proof).await.unwrap(), 400, "invalid_dpop_proof").await;
    assert!(e["error_description"].as_str().unwrap().contains("already used"), "{e}");

    // The token endpoint too: a wrong secret spends nothing, the proof then works.
    let token = srv.url("/oauth2/token");
    let proof = key.proof("POST", &token, srv.clock.now(), None, None);
    let send = |secret: &str| {
        srv.client()
            .post(&token)
            .basic_auth(&a.client_id, Some(secret))
            .header("dpop", &proof)
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    assert_oauth_error(send("wrong").await.unwrap(), 401, "invalid_client").await;
    assert_eq!(srv.count("dpop_jti").await, 1);
    let r = send(secret).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["token_type"], "DPoP");
    assert_eq!(srv.count("dpop_jti").await, 2);
}

// ---------------------------------------------------------------------------------------------
// 9. No client enumeration.

/// Status, the headers a client could tell apart, and the body of an answer.
async fn shape(r: Response) -> (u16, Option<String>, Option<String>, Value) {
    let h = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, www, cache) = (r.status().as_u16(), h("www-authenticate"), h("cache-control"));
    (status, www, cache, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_failed_client_authentication_gives_the_same_answer() {
    let srv = TestServer::start().await;
    let mut ch = app(&["client_credentials", "device_code"]);
    ch.introspect_any = Some(true);
    let basic = srv.create_app(ch).await;
    let mut ch = app(&["client_credentials"]);
    ch.auth_method = Some("client_secret_post".into());
    let post = srv.create_app(ch).await;
    let mut ch = app(&["authorization_code", "device_code"]);
    ch.public = Some(true);
    let public = srv.create_app(ch).await;
    let mut ch = app(&["client_credentials"]);
    ch.auth_method = Some("self_signed_tls_client_auth".into());
    ch.cert_file = Some(client_cert("registered").cert_pem);
    let self_signed = srv.create_app(ch).await;
    let mut ch = app(&["client_credentials"]);
    ch.auth_method = Some("tls_client_auth".into());
    ch.tls_subject_dn = Some("CN=billing".into());
    let pki = srv.create_app(ch).await;

    let expected = json!({"error": "invalid_client", "error_description": "client authentication failed"});
    let c = srv.client();
    let stranger = srv.client_with(&client_cert("stranger"));
    for path in ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke", "/oauth2/device_authorize"] {
        let url = srv.url(path);
        let form = |extra: &[(&str, &str)]| {
            let mut f: Vec<(String, String)> =
                vec![("grant_type".into(), "client_credentials".into()), ("token".into(), "some-token".into())];
            f.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            f
        };
        let basic_req = |id: &str, secret: &str| c.post(&url).basic_auth(id, Some(secret)).form(&form(&[]));
        let cases: Vec<(&str, RequestBuilder)> = vec![
            ("Basic, unknown client", basic_req("no-such-client", "whatever")),
            ("Basic, wrong secret", basic_req(&basic.client_id, "wrong")),
            ("Basic, secret of another client", basic_req(&basic.client_id, post.client_secret.as_deref().unwrap())),
            ("Basic, public client with a secret", basic_req(&public.client_id, "whatever")),
            ("Basic, certificate client with a secret", basic_req(&self_signed.client_id, "whatever")),
            ("post, unknown client", c.post(&url).form(&form(&[("client_id", "nobody"), ("client_secret", "x")]))),
            (
                "post, wrong secret",
                c.post(&url).form(&form(&[("client_id", post.client_id.as_str()), ("client_secret", "x")])),
            ),
            ("none, unknown client", c.post(&url).form(&form(&[("client_id", "nobody")]))),
            ("none, confidential client", c.post(&url).form(&form(&[("client_id", basic.client_id.as_str())]))),
            ("self-signed, no certificate", c.post(&url).form(&form(&[("client_id", self_signed.client_id.as_str())]))),
            (
                "self-signed, another certificate",
                stranger.post(&url).form(&form(&[("client_id", self_signed.client_id.as_str())])),
            ),
            (
                "tls_client_auth, no trust anchors",
                stranger.post(&url).form(&form(&[("client_id", pki.client_id.as_str())])),
            ),
        ];
        let mut answers = Vec::new();
        for (what, req) in cases {
            let (status, www, cache, body) = shape(req.send().await.unwrap()).await;
            assert_eq!(status, 401, "{path}, {what}: {body}");
            assert_eq!(body, expected, "{path}, {what}");
            assert_eq!(cache.as_deref(), Some("no-store"), "{path}, {what}");
            assert!(www.as_deref().is_some_and(|w| w.starts_with("Basic")), "{path}, {what}: {www:?}");
            answers.push((what, www));
        }
        assert!(answers.windows(2).all(|w| w[0].1 == w[1].1), "{path}: the same challenge for all: {answers:?}");
    }
    // At introspection a public client is refused like any other failed authentication.
    let r = c
        .post(srv.url("/oauth2/introspect"))
        .form(&[("client_id", public.client_id.as_str()), ("token", "t")])
        .send()
        .await
        .unwrap();
    let (status, _, _, body) = shape(r).await;
    assert_eq!((status, body), (401, expected.clone()));
    // The right credentials still work everywhere.
    let ok = c
        .post(srv.url("/oauth2/token"))
        .basic_auth(&basic.client_id, basic.client_secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok = c
        .post(srv.url("/oauth2/device_authorize"))
        .form(&[("client_id", public.client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// 11. CORS per app.

#[tokio::test]
async fn an_origin_reads_only_the_answers_of_its_own_app() {
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mk = |origin: &str| {
        let mut ch = app(&["password", "client_credentials"]);
        ch.allowed_origins = Some(vec![origin.to_string()]);
        ch
    };
    let (a_origin, b_origin) = ("https://a.example", "https://b.example");
    let a = srv.create_app(mk(a_origin)).await;
    let b = srv.create_app(mk(b_origin)).await;
    let acao = |r: &Response| r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_owned());
    let token = |creds: &AppCreds, secret: &str, origin: &str| {
        srv.client()
            .post(srv.url("/oauth2/token"))
            .header("origin", origin)
            .basic_auth(&creds.client_id, Some(secret))
            .form(&[("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("scope", "openid")])
            .send()
    };
    let a_secret = a.client_secret.as_deref().unwrap();

    // A token request for A from B's origin: answered, but not readable by B's page.
    let r = token(&a, a_secret, b_origin).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(acao(&r), None, "B's origin cannot read A's tokens");
    assert!(r.headers().get("access-control-expose-headers").is_none());
    // From A's origin it is.
    let r = token(&a, a_secret, a_origin).await.unwrap();
    assert_eq!(acao(&r).as_deref(), Some(a_origin));
    let at = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    // And B's own requests from B's origin.
    let r = token(&b, b.client_secret.as_deref().unwrap(), b_origin).await.unwrap();
    assert_eq!(acao(&r).as_deref(), Some(b_origin));
    // An error names its client too: A's origin may read A's failure, B's may not.
    let r = token(&a, "wrong", a_origin).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(acao(&r).as_deref(), Some(a_origin));
    assert_eq!(acao(&token(&a, "wrong", b_origin).await.unwrap()), None);

    // Userinfo: the app of the access token.
    let userinfo =
        |origin: &str| srv.client().get(srv.url("/oauth2/userinfo")).bearer_auth(&at).header("origin", origin).send();
    let r = userinfo(b_origin).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(acao(&r), None);
    assert_eq!(acao(&userinfo(a_origin).await.unwrap()).as_deref(), Some(a_origin));

    // Revocation: the authenticated client.
    let revoke = |origin: &str| {
        srv.client()
            .post(srv.url("/oauth2/revoke"))
            .header("origin", origin)
            .basic_auth(&a.client_id, Some(a_secret))
            .form(&[("token", "unknown")])
            .send()
    };
    assert_eq!(acao(&revoke(b_origin).await.unwrap()), None);
    assert_eq!(acao(&revoke(a_origin).await.unwrap()).as_deref(), Some(a_origin));

    // A preflight names no app: any registered origin gets one; others do not.
    let preflight = |origin: &str| {
        srv.client()
            .request(reqwest::Method::OPTIONS, srv.url("/oauth2/token"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    assert_eq!(acao(&preflight(b_origin).await.unwrap()).as_deref(), Some(b_origin));
    assert_eq!(acao(&preflight("https://evil.example").await.unwrap()), None);
}

// ---------------------------------------------------------------------------------------------
// 10. The data directory is private, whatever the umask.

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// `tether ARGS` under `umask 022`, with its stderr collected.
struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg("umask 022 && exec \"$0\" \"$@\"")
            .arg(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .env_remove("TETHER_DATABASE_URL")
            .env_remove("TETHER_MASTER_KEY")
            .env_remove("TETHER_CONFIG")
            .spawn()
            .expect("spawn tether");
        let log = Arc::new(Mutex::new(String::new()));
        let (l2, stderr) = (log.clone(), child.stderr.take().expect("stderr"));
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut g = l2.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        Proc { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.log().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("tether exited ({st}) before logging {needle:?}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "timed out waiting for {needle:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

fn serve(data: &Path) -> Proc {
    let d = data.to_str().unwrap();
    Proc::spawn(&["serve", "--data-dir", d, "--listen", "127.0.0.1:0", "--metrics-listen", "off"])
}

#[tokio::test]
async fn the_data_directory_is_private_whatever_the_umask() {
    let tmp = TempDir::new("perms");
    let data = tmp.path().join("data");
    // `tether init` creates the data directory, database and keys; then the CLI and the server.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("umask 022 && \"$0\" --data-dir \"$2\" init >/dev/null && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(["--data-dir", data.to_str().unwrap(), "app", "create", "--name", "svc"])
        .args(["--grant-types", "client_credentials", "--json"])
        .env_remove("TETHER_DATABASE_URL")
        .env_remove("TETHER_MASTER_KEY")
        .env_remove("TETHER_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(mode(&data), 0o700, "data dir made by tether init");
    assert_eq!(mode(&data.join("tether.db")), 0o600, "database made by tether init");
    assert_eq!(mode(&data.join("master.key")), 0o600, "master key made by tether init");

    let mut p = serve(&data);
    let line = p.wait_for("listening on https://");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("tls")), 0o700);
    for f in [
        "tether.db",
        "tether.db-wal",
        "tether.db-shm",
        "master.key",
        "tls/ca.pem",
        "tls/ca-key.pem",
        "tls/server.pem",
        "tls/server-key.pem",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert!(!p.log().contains("should be 07") && !p.log().contains("should be 06"), "no warning: {}", p.log());

    // A failed client authentication: the reason goes to the log, the secret never does.
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(data.join("tls/ca.pem")).unwrap()).unwrap();
    let c = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let id = created["client_id"].as_str().unwrap();
    let r = c
        .post(format!("https://localhost:{port}/oauth2/token"))
        .basic_auth(id, Some("hunter2-not-the-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let line = p.wait_for("wrong client secret");
    assert!(line.contains(id), "{line}");
    assert!(!p.log().contains("hunter2"), "{}", p.log());
    p.stop();

    // Files an operator made readable to others: a warning at start, naming each and its mode.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(data.join("tether.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut p = serve(&data);
    p.wait_for("listening on https://");
    let log = p.log();
    let warned = |path: &Path, m: &str| {
        log.lines().any(|l| l.contains("WARN") && l.contains(&path.display().to_string()) && l.contains(m))
    };
    assert!(warned(&data, "0755"), "warning for the data dir: {log}");
    assert!(warned(&data.join("tether.db"), "0644"), "warning for the database: {log}");
    p.stop();
}
