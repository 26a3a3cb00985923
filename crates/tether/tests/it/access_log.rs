//! The access log: one JSON object per request from `tether serve --log-format json`, with
//! method, path without the query, status, duration, bytes, the client's address (forwarded only
//! from a trusted proxy) and the authenticated client; never a query value, secret or token;
//! `[log] access = false` and `RUST_LOG=…,access=off` turn it off. The gateway's line names the
//! verified token's client.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_testkit::*;

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// A `tether` process whose stderr is collected.
struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .env_remove("TETHER_DATABASE_URL");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tether");
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

    /// Wait until `done` holds for the log so far.
    fn wait_until(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if done(&self.log()) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("tether exited ({st}) before {what}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The HTTPS port from the JSON `listening` line.
    fn port(&mut self) -> u16 {
        self.wait_until("listening", |l| l.contains("\"listening\""));
        let log = self.log();
        let line = log.lines().find(|l| l.contains("\"listening\"")).unwrap();
        let v: Value = serde_json::from_str(line).unwrap();
        v["addr"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap()
    }

    fn term(&mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The access lines of a JSON log.
fn access_lines(log: &str) -> Vec<Value> {
    log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["message"] == "access").collect()
}

fn cli(dir: &Path, db: &Option<String>, args: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--data-dir").arg(dir).env_remove("TETHER_DATABASE_URL");
    if let Some(u) = db {
        cmd.env("TETHER_DATABASE_URL", u);
    }
    let out = cmd.output().expect("run tether");
    assert!(out.status.success(), "tether {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A database with one confidential client_credentials app; its id and secret.
fn prepare(dir: &Path, db: &Option<String>) -> (String, String) {
    cli(dir, db, &["init"]);
    let out = cli(dir, db, &["app", "create", "--name", "m2m", "--grant-types", "client_credentials", "--json"]);
    let app: Value = serde_json::from_str(&out).unwrap();
    (app["client_id"].as_str().unwrap().to_string(), app["client_secret"].as_str().unwrap().to_string())
}

fn serve(dir: &Path, config: &str, db: &Option<String>, rust_log: Option<&str>) -> Proc {
    let cfg = dir.join("tether.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut env: Vec<(&str, &str)> = Vec::new();
    if let Some(u) = db {
        env.push(("TETHER_DATABASE_URL", u));
    }
    if let Some(l) = rust_log {
        env.push(("RUST_LOG", l));
    }
    let (d, c) = (dir.to_str().unwrap(), cfg.to_str().unwrap());
    Proc::spawn(
        &[
            "serve",
            "--config",
            c,
            "--data-dir",
            d,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--log-format",
            "json",
        ],
        &env,
    )
}

/// A client of the server's local CA, connecting from `from` (a loopback address).
fn client(dir: &Path, port: u16, from: &str) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("tls/ca.pem")).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn serve_logs_one_line_per_request_and_nothing_secret() {
    let d = TempDir::new("access");
    let dir = d.path();
    let db = test_database().await;
    let (id, secret) = prepare(dir, &db);
    // 127.0.0.2 is the trusted proxy; requests from 127.0.0.1 are from an ordinary client.
    let mut p = serve(dir, "[tls]\ntrusted_proxies = [\"127.0.0.2/32\"]\n", &db, None);
    let port = p.port();
    let (c, proxy) = (client(dir, port, "127.0.0.1"), client(dir, port, "127.0.0.2"));
    let url = |path: &str| format!("https://localhost:{port}{path}");

    // (method, path, status, ip, client_id) of every request, in order.
    let mut expected: Vec<(&str, &str, u16, &str, Option<&str>)> = Vec::new();
    let r = c.get(url("/oauth2/authorize?client_id=x&state=SECRET123")).send().await.unwrap();
    expected.push(("GET", "/oauth2/authorize", r.status().as_u16(), "127.0.0.1", None));
    let r = c
        .post(url("/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    expected.push(("POST", "/oauth2/token", 200, "127.0.0.1", Some(&id)));
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let r = c
        .post(url("/oauth2/introspect"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["active"], true);
    expected.push(("POST", "/oauth2/introspect", 200, "127.0.0.1", Some(&id)));
    // A wrong secret: 401, and no client is named.
    let r = c
        .post(url("/oauth2/token"))
        .basic_auth(&id, Some("not-the-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    expected.push(("POST", "/oauth2/token", 401, "127.0.0.1", None));
    // X-Forwarded-For counts only from the trusted proxy.
    let r = proxy.get(url("/healthz")).header("x-forwarded-for", "203.0.113.9").send().await.unwrap();
    assert_eq!(r.status(), 200);
    expected.push(("GET", "/healthz", 200, "203.0.113.9", None));
    let r = c.get(url("/healthz")).header("x-forwarded-for", "198.51.100.4").send().await.unwrap();
    assert_eq!(r.status(), 200);
    expected.push(("GET", "/healthz", 200, "127.0.0.1", None));
    let r = c.get(url("/no/such/path?access_token=SECRET123")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    expected.push(("GET", "/no/such/path", 404, "127.0.0.1", None));

    let n = expected.len();
    p.wait_until("the access lines", |l| access_lines(l).len() >= n);
    std::thread::sleep(Duration::from_millis(200));
    p.term();
    let log = p.log();
    let lines = access_lines(&log);
    assert_eq!(lines.len(), n, "one access line per request:\n{log}");
    for (v, (method, path, status, ip, client_id)) in lines.iter().zip(&expected) {
        assert_eq!(v["level"], "INFO", "{v}");
        assert_eq!(v["method"], *method, "{v}");
        assert_eq!(v["path"], *path, "{v}");
        assert_eq!(v["status"], *status, "{v}");
        assert_eq!(v["ip"], *ip, "{v}");
        assert_eq!(v["client_id"].as_str(), *client_id, "{v}");
        assert!(v["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{v}");
        assert!(v["bytes"].as_u64().is_some_and(|b| b > 0), "{v}");
    }
    for line in log.lines() {
        for secret_value in ["SECRET123", secret.as_str(), token.as_str()] {
            assert!(!line.contains(secret_value), "a secret or query value leaked into the log: {line}");
        }
    }
}

#[tokio::test]
async fn access_log_off_in_the_config_or_by_rust_log() {
    let d = TempDir::new("access-off");
    let dir = d.path();
    let db = test_database().await;
    let (id, secret) = prepare(dir, &db);
    for (config, rust_log) in [("[log]\naccess = false\n", None), ("", Some("info,access=off"))] {
        let mut p = serve(dir, config, &db, rust_log);
        let port = p.port();
        let c = client(dir, port, "127.0.0.1");
        let r = c.get(format!("https://localhost:{port}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = c
            .post(format!("https://localhost:{port}/oauth2/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        std::thread::sleep(Duration::from_millis(200));
        p.term();
        let log = p.log();
        assert!(log.contains("\"listening\""), "the other logs are there:\n{log}");
        assert!(access_lines(&log).is_empty(), "no access lines with {config:?} / {rust_log:?}:\n{log}");
    }
}

/// An in-memory log sink for a subscriber scoped to this test's thread.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The gateway in this process, its access lines taken as `tether gateway` writes them: through
/// the direct writer (`tether_tls::access::set_writer`, which the binary installs), as JSON. (A
/// thread-local tracing subscriber missed lines when other tests ran alongside.) The writer is
/// the process's, so the lines are told apart by this test's own path.
#[tokio::test]
async fn gateway_logs_the_tokens_client_and_never_the_token() {
    // `RUST_LOG` decides whether an access line is written at all: a process-wide subscriber that
    // enables the target (and writes nothing itself), as the binary has.
    let _ = tracing_subscriber::fmt().with_writer(std::io::sink).with_env_filter("access=info").try_init();
    let sink = Sink::default();
    let w = sink.clone();
    tether_tls::access::set_writer(move |record| {
        let mut line = Vec::new();
        record.write(tether_tls::access::Layout::Json, std::time::SystemTime::UNIX_EPOCH, &mut line);
        let _ = w.clone().write(&line);
    });

    let srv = TestServer::start().await;
    let mut ch = app(&["client_credentials"]);
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;
    let r = srv
        .client()
        .post(srv.url("/oauth2/token"))
        .basic_auth(&a.client_id, a.client_secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let upstream = echo_upstream().await;
    let gw = srv
        .gateway(upstream, |c| {
            c.auth_methods = Some(vec!["bearer".into()]);
            c.trusted_proxies = Some(vec!["127.0.0.1/32".into()]);
        })
        .await
        .unwrap();
    let c = gw.client();
    let r = c
        .get(gw.url("/api/access-log-probe?q=SECRETQ"))
        .bearer_auth(&token)
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = c.get(gw.url("/api/access-log-probe?q=SECRETQ")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    r.bytes().await.unwrap();
    gw.stop().await;

    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = access_lines(&log).into_iter().filter(|v| v["path"] == "/api/access-log-probe").collect();
    assert_eq!(lines.len(), 2, "one line per gateway request:\n{log}");
    assert_eq!(lines[0]["method"], "GET");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["client_id"], a.client_id.as_str());
    assert_eq!(lines[0]["ip"], "203.0.113.9", "the trusted proxy's X-Forwarded-For");
    assert!(lines[0]["duration_ms"].as_f64().is_some());
    assert_eq!((lines[0]["route"].as_str(), lines[0]["sub"].as_str()), (Some("default"), Some(a.client_id.as_str())));
    assert_eq!(lines[1]["status"], 401);
    assert!(lines[1].get("client_id").is_none(), "no client without a token: {}", lines[1]);
    assert_eq!(lines[1]["reason"], "no_token", "the rejection reason: {}", lines[1]);
    for line in log.lines() {
        assert!(!line.contains(&token) && !line.contains("SECRETQ"), "leaked into the log: {line}");
    }
}
