//! The `tether` binary as users run it: embedded defaults, the admin CLI, a running server seeing
//! CLI changes, graceful shutdown, logs.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_testkit::{TempDir, echo_upstream};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

pub(crate) struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    pub(crate) fn spawn(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(cwd)
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

    /// Wait for a log line containing `needle`; return that line.
    pub(crate) fn wait_for(&mut self, needle: &str) -> String {
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

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn term(&mut self) -> std::process::ExitStatus {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
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

/// The database of the current test, handed to every process it starts (SQLite in the data dir
/// when the suite runs without PostgreSQL).
fn db_env(db: &Option<String>) -> Vec<(&'static str, String)> {
    db.iter().map(|u| ("TETHER_DATABASE_URL", u.clone())).collect()
}

pub(crate) fn cli_db(dir: &Path, db: &Option<String>, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--data-dir").arg(dir).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("TETHER_DATABASE_URL");
    for (k, v) in db_env(db) {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn client(ca: &Path, port: u16) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder().tls_certs_only([ca]).resolve("localhost", ([127, 0, 0, 1], port).into()).build().unwrap()
}

pub(crate) fn port_of(line: &str) -> u16 {
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn serve_with_no_flags_uses_the_embedded_defaults() {
    let cwd = TempDir::new("defaults");
    let mut p = Proc::spawn(cwd.path(), &["serve"], &[]);
    let line = p.wait_for("listening on https://");
    assert_eq!(line.trim(), "listening on https://127.0.0.1:9443");
    let data = cwd.path().join("tether-data");
    for f in ["tether.db", "master.key", "tls/ca.pem", "tls/server.pem"] {
        assert!(data.join(f).exists(), "{f} created");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(data.join("master.key")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(data.join("tls/server-key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
    let c = client(&data.join("tls/ca.pem"), 9443);
    let d: Value =
        c.get("https://localhost:9443/.well-known/openid-configuration").send().await.unwrap().json().await.unwrap();
    assert_eq!(d["issuer"], "https://localhost:9443");
    assert_eq!(c.get("https://localhost:9443/healthz").send().await.unwrap().status(), 200);
    // Metrics on the metrics listener only.
    assert_eq!(c.get("https://localhost:9443/metrics").send().await.unwrap().status(), 404);
    let m = reqwest::get("http://127.0.0.1:9464/metrics").await.unwrap().text().await.unwrap();
    assert!(m.contains("tether_http_requests_total"), "{m}");
    assert!(m.contains("endpoint=\"/healthz\""));
    let st = p.term();
    assert!(st.success(), "clean exit on SIGTERM: {st}");
}

#[tokio::test]
async fn admin_cli_flags_json_and_exit_codes() {
    let d = TempDir::new("cli");
    let dir = d.path();
    let db = tether_testkit::test_database().await;
    let cli = |dir: &Path, args: &[&str], stdin: Option<&str>| cli_db(dir, &db, args, stdin);
    assert_eq!(cli(dir, &["init"], None).0, 0, "tether init");
    let (code, out, err) = cli(
        dir,
        &[
            "app",
            "create",
            "--name",
            "svc",
            "--grant-types",
            "password,client_credentials",
            "--token-type",
            "jwt",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let app: Value = serde_json::from_str(&out).unwrap();
    for k in [
        "client_id",
        "client_secret",
        "name",
        "grant_types",
        "redirect_uris",
        "public",
        "auth_method",
        "token_type",
        "binding",
        "validate_binding",
        "revoke_on_logout",
        "scopes",
        "audience",
        "allowed_origins",
        "introspect_any",
        "require_consent",
        "exchange_from",
        "id_token_alg",
        "access_token_ttl",
        "refresh_token_ttl",
    ] {
        assert!(app.get(k).is_some(), "--json has {k}: {app}");
    }
    assert_eq!(app["grant_types"], serde_json::json!(["password", "client_credentials"]));
    assert_eq!(app["auth_method"], "client_secret_basic");
    let secret = app["client_secret"].as_str().unwrap();
    assert!(secret.len() >= 43, "secret has >= 256 bits");
    let bytes = tether_testkit::database_bytes(db.as_deref(), dir).await;
    assert!(bytes.len() > 100);
    assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "secret stored only as a hash");
    let id = app["client_id"].as_str().unwrap();

    let (code, out, _) = cli(dir, &["app", "show", id, "--json"], None);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert!(shown.get("client_secret").is_none(), "the secret is shown once");
    let (code, out, _) = cli(
        dir,
        &[
            "app",
            "update",
            id,
            "--scopes",
            "a,b",
            "--grant-types",
            "password,client_credentials,authorization_code",
            "--redirect-uri",
            "https://x.example/cb",
            "--redirect-uri",
            "https://y.example/cb",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0);
    let up: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(up["scopes"], serde_json::json!(["a", "b"]));
    assert_eq!(up["redirect_uris"], serde_json::json!(["https://x.example/cb", "https://y.example/cb"]));
    let (_, out, _) = cli(dir, &["app", "update", id, "--redirect-uri", "https://z.example/cb", "--json"], None);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["redirect_uris"],
        serde_json::json!(["https://z.example/cb"]),
        "a repeated flag replaces the list"
    );
    let (code, out, _) = cli(dir, &["app", "list", "--json"], None);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len(), 1);

    // Refused combinations: exit 2 and one line.
    for bad in [
        vec![
            "app",
            "create",
            "--name",
            "x",
            "--public",
            "--auth-method",
            "client_secret_basic",
            "--grant-types",
            "password",
        ],
        vec!["app", "create", "--name", "x", "--grant-types", "password,bogus"],
        vec!["app", "create", "--name", "x", "--grant-types", "authorization_code", "--redirect-uri", "/relative/cb"],
        vec!["app", "create", "--name", "x", "--grant-types", "authorization_code"],
        vec!["app", "create", "--name", "x", "--grant-types", "client_credentials", "--public"],
        vec!["app", "create", "--name", "x", "--grant-types", "password", "--token-type", "paseto"],
        vec!["app", "create", "--name", "x", "--grant-types", "password", "--audience", "not a uri"],
        vec!["app", "create", "--name", "x", "--grant-types", "password", "--validate-binding"],
        vec!["app", "create", "--grant-types", "password"],
        vec!["app", "create", "--name", "x", "--no-such-flag"],
    ] {
        let (code, _, err) = cli(dir, &bad, None);
        assert_eq!(code, 2, "{bad:?} must exit 2: {err}");
        assert!(!err.trim().is_empty());
        if !bad.contains(&"--no-such-flag") {
            assert_eq!(err.trim().lines().count(), 1, "one-line reason: {err}");
        }
    }
    let (code, _, _) = cli(dir, &["app", "show", "nope"], None);
    assert_eq!(code, 1);

    // Users.
    let (code, _, err) =
        cli(dir, &["user", "add", "alice", "--password-stdin", "--email", "a@example.com"], Some("pw one\n"));
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = cli(dir, &["user", "add", "alice", "--password-stdin"], Some("x\n"));
    assert_eq!(code, 1, "duplicate user");
    let (code, _, _) = cli(dir, &["user", "passwd", "alice", "--password-stdin"], Some("pw two\r\n"));
    assert_eq!(code, 0);
    let (_, out, _) = cli(dir, &["user", "list", "--json"], None);
    let users: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(users[0]["username"], "alice");
    assert!(users[0].get("password_hash").is_none());
    let (code, _, _) = cli(dir, &["user", "delete", "alice"], None);
    assert_eq!(code, 0);
    let (code, _, _) = cli(dir, &["user", "delete", "alice"], None);
    assert_eq!(code, 1);

    // Keys.
    let (code, out, _) = cli(dir, &["keys", "list", "--json"], None);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len(), 2);
    let (code, _, _) = cli(dir, &["keys", "rotate"], None);
    assert_eq!(code, 0);
    let (_, out, _) = cli(dir, &["keys", "list", "--json"], None);
    let keys: Value = serde_json::from_str(&out).unwrap();
    let statuses: Vec<&str> = keys.as_array().unwrap().iter().map(|k| k["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "current").count(), 2);
    assert_eq!(statuses.iter().filter(|s| **s == "published").count(), 2);

    let (code, _, _) = cli(dir, &["app", "delete", id], None);
    assert_eq!(code, 0);
}

#[tokio::test]
async fn running_server_sees_cli_changes_within_a_second_and_logs_no_secrets() {
    let d = TempDir::new("live");
    let dir = d.path().to_path_buf();
    let db = tether_testkit::test_database().await;
    let mut env: Vec<(&str, &str)> = vec![("RUST_LOG", "debug")];
    if let Some(u) = &db {
        env.push(("TETHER_DATABASE_URL", u));
    }
    let mut p = Proc::spawn(
        &dir,
        &[
            "serve",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        &env,
    );
    let cli = |dir: &Path, args: &[&str], stdin: Option<&str>| cli_db(dir, &db, args, stdin);
    let line = p.wait_for("\"listening\"");
    let v: Value = serde_json::from_str(&line).expect("JSON log line");
    assert_eq!(v["message"], "listening");
    let addr = v["addr"].as_str().unwrap().to_string();
    assert!(addr.starts_with("https://127.0.0.1:"));
    let port = port_of(&addr);
    let c = client(&dir.join("tls/ca.pem"), port);
    let base = format!("https://localhost:{port}");

    let (_, out, _) =
        cli(&dir, &["app", "create", "--name", "live", "--grant-types", "password,client_credentials", "--json"], None);
    let app: Value = serde_json::from_str(&out).unwrap();
    let (id, secret) =
        (app["client_id"].as_str().unwrap().to_string(), app["client_secret"].as_str().unwrap().to_string());
    cli(&dir, &["user", "add", "carol", "--password-stdin"], Some("first-pass\n"));
    let token = |form: Vec<(&'static str, String)>| {
        let c = c.clone();
        let (id, secret, url) = (id.clone(), secret.clone(), format!("{base}/oauth2/token"));
        async move { c.post(url).basic_auth(id, Some(secret)).form(&form).send().await.unwrap() }
    };
    let r = token(vec![("grant_type", "client_credentials".into())]).await;
    assert_eq!(r.status(), 200, "a new app works at once");
    let t: Value = r.json().await.unwrap();
    let pw =
        token(vec![("grant_type", "password".into()), ("username", "carol".into()), ("password", "first-pass".into())])
            .await;
    assert_eq!(pw.status(), 200);
    let pw: Value = pw.json().await.unwrap();

    // Change the app: within a second the server refuses the removed grant.
    cli(&dir, &["app", "update", &id, "--grant-types", "password"], None);
    let started = Instant::now();
    loop {
        let r = token(vec![("grant_type", "client_credentials".into())]).await;
        if r.status() == 400 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "update not seen within 1 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cli(&dir, &["user", "passwd", "carol", "--password-stdin"], Some("second-pass\n"));
    let r = token(vec![
        ("grant_type", "password".into()),
        ("username", "carol".into()),
        ("password", "second-pass".into()),
    ])
    .await;
    assert_eq!(r.status(), 200);
    cli(&dir, &["keys", "rotate"], None);
    let started = Instant::now();
    loop {
        let j: Value = c.get(format!("{base}/oauth2/jwks")).send().await.unwrap().json().await.unwrap();
        if j["keys"].as_array().unwrap().len() == 4 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "key rotation not seen within 1 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Graceful shutdown: a request in flight when SIGTERM arrives still completes.
    let inflight = tokio::spawn(token(vec![
        ("grant_type", "password".into()),
        ("username", "carol".into()),
        ("password", "second-pass".into()),
    ]));
    tokio::time::sleep(Duration::from_millis(15)).await;
    let st = p.term();
    let r = inflight.await.unwrap();
    assert_eq!(r.status(), 200, "in-flight request finished");
    assert!(st.success());

    // Nothing secret in the logs, even at debug level.
    let log = p.log();
    for secret_value in [
        secret.as_str(),
        t["access_token"].as_str().unwrap(),
        pw["access_token"].as_str().unwrap(),
        "first-pass",
        "second-pass",
    ] {
        assert!(!log.contains(secret_value), "a secret leaked into the log");
    }
}

#[tokio::test]
async fn config_file_and_precedence() {
    let d = TempDir::new("cfg");
    let dir = d.path();
    std::fs::write(dir.join("bad.toml"), "listen = \"127.0.0.1:0\"\nlisten_typo = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", dir.join("bad.toml").to_str().unwrap()])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_typo"), "the unknown key is named");

    std::fs::write(
        dir.join("ok.toml"),
        format!("data_dir = \"{}\"\nlisten = \"127.0.0.1:1\"\nmetrics_listen = \"127.0.0.1:0\"\n[session]\nlifetime_seconds = 600\n", dir.join("data").display()),
    )
    .unwrap();
    // The variable beats the file; the flag beats the variable.
    let mut p = Proc::spawn(
        dir,
        &["serve", "--config", dir.join("ok.toml").to_str().unwrap(), "--issuer", "https://flag.example"],
        &[("TETHER_LISTEN", "127.0.0.1:0"), ("TETHER_ISSUER", "https://env.example")],
    );
    let line = p.wait_for("listening on https://");
    let port = port_of(&line);
    assert_ne!(port, 1);
    assert!(dir.join("data/tether.db").exists(), "data_dir from the file");
    let c = client(&dir.join("data/tls/ca.pem"), port);
    let d: Value = c
        .get(format!("https://localhost:{port}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], "https://flag.example");
    p.term();
}

/// Start `tether serve` (with `config`, a TOML text, when given) and run an interop script of
/// `interop/` against it (`SCRIPT DATA_DIR ISSUER`); every check must pass.
fn run_interop(tag: &str, script: &str, config: Option<&str>) {
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "node is required for the interop test (install nodejs)");
    let d = TempDir::new(tag);
    let dir = d.path().to_path_buf();
    let conf = dir.join("tether.toml");
    let mut args = vec!["serve".to_string()];
    if let Some(text) = config {
        std::fs::write(&conf, text).unwrap();
        args.extend(["--config".into(), conf.to_str().unwrap().into()]);
    }
    args.extend(
        ["--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--metrics-listen", "off"].map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = Proc::spawn(&dir, &args, &[]);
    let port = port_of(&p.wait_for("listening on https://"));
    let script = format!("{}/../../interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .args([script.as_str(), dir.to_str().unwrap(), &format!("https://localhost:{port}")])
        .env("TETHER_BIN", BIN)
        .output()
        .expect("run interop");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "interop failed:\n{stdout}\n{stderr}");
    assert!(stdout.lines().any(|l| l.ends_with("passed, 0 failed")), "{stdout}");
    p.term();
}

/// A standard, independent client library (panva's openid-client and jose, from npm) drives the
/// server: discovery, client credentials, password, authorization code + PKCE through the login
/// form, refresh rotation and reuse detection, userinfo, introspection, revocation, and JWT
/// verification against the JWKS. See interop/oidc-client.mjs.
#[tokio::test]
async fn openid_client_library_interop() {
    run_interop("interop", "run.sh", None);
}

/// The FAPI 2.0 profile and back-channel logout driven by openid-client, unchanged: PAR + PKCE +
/// `private_key_jwt` + DPoP, and a second client with mTLS (`self_signed_tls_client_auth`,
/// certificate-bound tokens) at the mutual-TLS listener; refresh tokens not rotated; each rule's
/// refusal; a back-channel receiver on loopback verifying the `logout_token` with the JWKS. See
/// interop/fapi2.mjs.
#[tokio::test]
async fn openid_client_fapi2_interop() {
    let config = "[tls]\nmtls_listen = \"127.0.0.1:0\"\nrequest_client_cert = false\n";
    run_interop("interop-fapi2", "fapi2.sh", Some(config));
}

/// Dynamic client registration driven by openid-client's `dynamicClientRegistration` (a
/// `private_key_jwt` client registered and used at once), RFC 7592 read/replace/delete with plain
/// HTTP, and every forbidden metadata value refused with its RFC 7591 error. See interop/dcr.mjs.
#[tokio::test]
async fn openid_client_dynamic_registration_interop() {
    run_interop("interop-dcr", "dcr.sh", None);
}

/// `tether gateway --log-format json`: every line is a JSON object; `SIGHUP` applies a changed
/// file (a new route answers) and refuses a broken one, keeping the running configuration.
#[tokio::test]
async fn gateway_json_logs_and_reload_on_hangup() {
    let d = TempDir::new("gw-bin");
    let dir = d.path().to_path_buf();
    let conf = dir.join("gw.toml");
    let upstream = echo_upstream().await;
    let base = format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nissuer = \"https://localhost:1\"\nauth_methods = [\"bearer\"]\n\n[[routes]]\npath_prefix = \"/a\"\nupstream = \"http://{upstream}\"\nanonymous = true\n",
        dir.join("data").display()
    );
    std::fs::write(&conf, &base).unwrap();
    let mut p = Proc::spawn(&dir, &["gateway", "--config", conf.to_str().unwrap(), "--log-format", "json"], &[]);
    let line = p.wait_for("listening on https://");
    let v: Value = serde_json::from_str(&line).expect("a JSON line");
    let port: u16 = v["addr"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    let ca = std::fs::read_to_string(dir.join("data/tls/ca.pem")).unwrap();
    let c = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let url = |path: &str| format!("https://localhost:{port}{path}");
    assert_eq!(c.get(url("/a/x")).send().await.unwrap().status(), 200, "anonymous route");
    assert_eq!(c.get(url("/b/x")).send().await.unwrap().status(), 404);

    let hup = |p: &Proc| {
        Command::new("kill").args(["-HUP", &p.child.id().to_string()]).status().expect("kill -HUP");
    };
    // A broken file is refused; the running configuration stays.
    std::fs::write(&conf, format!("{base}\n[[routes]]\npath_prefix = \"b\"\nupstream = \"http://{upstream}\"\n"))
        .unwrap();
    hup(&p);
    p.wait_for("configuration not reloaded");
    assert_eq!(c.get(url("/a/x")).send().await.unwrap().status(), 200);
    // A good one is applied.
    std::fs::write(
        &conf,
        format!("{base}\n[[routes]]\npath_prefix = \"/b\"\nupstream = \"http://{upstream}\"\nanonymous = true\n"),
    )
    .unwrap();
    hup(&p);
    p.wait_for("configuration reloaded");
    assert_eq!(c.get(url("/b/x")).send().await.unwrap().status(), 200, "the new route answers");
    // Its keep-alive connections would hold the graceful stop: close them (on this runtime).
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    p.term();
    let log = p.log();
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
    }
    assert!(log.contains("\"route\":\"/a\""), "the access log names the route:\n{log}");
}

// ---------------------------------------------------------------------------------------------
// Several nodes on one database (PostgreSQL in the suite's second pass; two processes on one
// SQLite WAL file in the first).

struct Node {
    _p: Proc,
    base: String,
    client: reqwest::Client,
}

struct Cluster {
    _d: TempDir,
    dir: std::path::PathBuf,
    db: Option<String>,
    nodes: Vec<Node>,
}

impl Cluster {
    /// `n` nodes on one PostgreSQL database; `None` on the SQLite pass (one `serve` per SQLite
    /// database: a second one is refused, see `only_serve_and_init_create_a_database`).
    async fn start(n: usize) -> Option<Cluster> {
        let d = TempDir::new("cluster");
        let dir = d.path().to_path_buf();
        let db = tether_testkit::test_database().await;
        if db.is_none() {
            eprintln!("several nodes need PostgreSQL (TETHER_TEST_POSTGRES_URL); skipped on SQLite");
            return None;
        }
        let mut nodes = Vec::new();
        for _ in 0..n {
            let mut env: Vec<(&str, &str)> = vec![];
            if let Some(u) = &db {
                env.push(("TETHER_DATABASE_URL", u));
            }
            // One data dir: the nodes share the master key (as a deployment must) and TLS material.
            let mut p = Proc::spawn(
                &dir,
                &["serve", "--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--metrics-listen", "off"],
                &env,
            );
            let port = port_of(&p.wait_for("listening on https://"));
            nodes.push(Node {
                _p: p,
                base: format!("https://localhost:{port}"),
                client: client(&dir.join("tls/ca.pem"), port),
            });
        }
        Some(Cluster { _d: d, dir, db, nodes })
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        cli_db(&self.dir, &self.db, args, stdin)
    }

    fn app(&self, args: &[&str]) -> (String, String) {
        // App names are unique.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!("multi-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut a = vec!["app", "create", "--name", &name, "--json", "--introspect-any"];
        a.extend_from_slice(args);
        let (code, out, err) = self.cli(&a, None);
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        (v["client_id"].as_str().unwrap().to_string(), v["client_secret"].as_str().unwrap().to_string())
    }

    async fn post(&self, node: usize, path: &str, app: &(String, String), form: &[(&str, &str)]) -> reqwest::Response {
        let n = &self.nodes[node % self.nodes.len()];
        n.client.post(format!("{}{path}", n.base)).basic_auth(&app.0, Some(&app.1)).form(form).send().await.unwrap()
    }

    async fn introspect(&self, node: usize, app: &(String, String), token: &str) -> Value {
        self.post(node, "/oauth2/introspect", app, &[("token", token)]).await.json().await.unwrap()
    }
}

#[tokio::test]
async fn nodes_share_tokens_and_revocation_is_immediate_everywhere() {
    let Some(c) = Cluster::start(2).await else { return };
    c.cli(&["user", "add", "dora", "--password-stdin"], Some("dora-pw\n"));
    let app = c.app(&["--grant-types", "password,refresh_token"]);
    let form = [("grant_type", "password"), ("username", "dora"), ("password", "dora-pw")];
    let t: Value = c.post(0, "/oauth2/token", &app, &form).await.json().await.unwrap();
    let (at, rt) = (t["access_token"].as_str().unwrap(), t["refresh_token"].as_str().unwrap());
    assert_eq!(c.introspect(1, &app, at).await["active"], true, "issued on A, active on B");
    // Refresh on B with A's refresh token, then revoke on A: B sees it at once (no cache to expire).
    let t2: Value = c
        .post(1, "/oauth2/token", &app, &[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .await
        .json()
        .await
        .unwrap();
    let at2 = t2["access_token"].as_str().unwrap();
    assert_eq!(c.introspect(0, &app, at2).await["active"], true);
    assert_eq!(c.post(0, "/oauth2/revoke", &app, &[("token", at2)]).await.status(), 200);
    assert_eq!(c.introspect(1, &app, at2).await, serde_json::json!({"active": false}));
    assert_eq!(
        c.introspect(1, &app, t2["refresh_token"].as_str().unwrap()).await,
        serde_json::json!({"active": false})
    );
    // The rotated refresh token replayed on either node revokes the family everywhere.
    let r = c.post(0, "/oauth2/token", &app, &[("grant_type", "refresh_token"), ("refresh_token", rt)]).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn single_use_holds_across_nodes_under_concurrency() {
    let Some(c) = Cluster::start(2).await else { return };
    let c = Arc::new(c);
    c.cli(&["user", "add", "erin", "--password-stdin"], Some("erin-pw\n"));
    let app = c.app(&[
        "--grant-types",
        "password,refresh_token,authorization_code",
        "--redirect-uri",
        "https://app.example/cb",
    ]);
    let form = [("grant_type", "password"), ("username", "erin"), ("password", "erin-pw")];
    let t: Value = c.post(0, "/oauth2/token", &app, &form).await.json().await.unwrap();
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (c, app, rt) = (c.clone(), app.clone(), rt.clone());
        tasks.push(tokio::spawn(async move {
            c.post(i, "/oauth2/token", &app, &[("grant_type", "refresh_token"), ("refresh_token", &rt)])
                .await
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += (t.await.unwrap() == 200) as u32;
    }
    assert_eq!(ok, 1, "one refresh succeeds across both nodes");

    // A code from node A, redeemed concurrently on both nodes: one token set.
    let (verifier, challenge) = tether_testkit::pkce();
    let n = &c.nodes[0];
    let browser = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(c.dir.join("tls/ca.pem")).unwrap()).unwrap()])
        .resolve("localhost", ([127, 0, 0, 1], port_of(&n.base)).into())
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let q = format!(
        "response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_challenge={challenge}&code_challenge_method=S256",
        app.0
    );
    let html = browser.get(format!("{}/oauth2/authorize?{q}", n.base)).send().await.unwrap().text().await.unwrap();
    let mut f = tether_testkit::hidden_inputs(&html);
    f.push(("username".into(), "erin".into()));
    f.push(("password".into(), "erin-pw".into()));
    let r = browser.post(format!("{}/oauth2/authorize", n.base)).form(&f).send().await.unwrap();
    let code = tether_testkit::query_param(&tether_testkit::location(&r), "code").unwrap();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (c, app, code, verifier) = (c.clone(), app.clone(), code.clone(), verifier.clone());
        tasks.push(tokio::spawn(async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", "https://app.example/cb"),
                ("code_verifier", verifier.as_str()),
            ];
            c.post(i, "/oauth2/token", &app, &form).await.status().as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += (t.await.unwrap() == 200) as u32;
    }
    assert_eq!(ok, 1, "one redemption succeeds across both nodes");
}

#[tokio::test]
async fn one_active_token_per_key_across_nodes() {
    let Some(c) = Cluster::start(2).await else { return };
    let c = Arc::new(c);
    for token_type in ["opaque", "jwt"] {
        let app =
            c.app(&["--grant-types", "client_credentials", "--binding", "client-request", "--token-type", token_type]);
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (c, app) = (c.clone(), app.clone());
            tasks.push(tokio::spawn(async move {
                let r = c
                    .post(i, "/oauth2/token", &app, &[("grant_type", "client_credentials"), ("tokenBindingId", "k")])
                    .await;
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
            }));
        }
        let mut tokens = std::collections::HashSet::new();
        for t in tasks {
            tokens.insert(t.await.unwrap());
        }
        let mut active = 0;
        for t in &tokens {
            active += (c.introspect(0, &app, t).await["active"] == true) as u32;
        }
        if token_type == "opaque" {
            assert_eq!(tokens.len(), 1, "one opaque token for the key on both nodes");
        }
        assert_eq!(active, 1, "{token_type}: exactly one active token for the key");
    }
}

#[tokio::test]
async fn cli_changes_and_key_rotation_reach_every_node_within_a_second() {
    let Some(c) = Cluster::start(2).await else { return };
    let app = c.app(&["--grant-types", "client_credentials"]);
    for i in 0..2 {
        assert_eq!(c.post(i, "/oauth2/token", &app, &[("grant_type", "client_credentials")]).await.status(), 200);
    }
    c.cli(&["app", "update", &app.0, "--scopes", "orders"], None);
    c.cli(&["keys", "rotate"], None);
    let started = Instant::now();
    for i in 0..2 {
        loop {
            let r: Value = c
                .post(i, "/oauth2/token", &app, &[("grant_type", "client_credentials"), ("scope", "orders")])
                .await
                .json()
                .await
                .unwrap();
            let n = &c.nodes[i];
            let jwks: Value =
                n.client.get(format!("{}/oauth2/jwks", n.base)).send().await.unwrap().json().await.unwrap();
            if r["scope"] == "orders" && jwks["keys"].as_array().unwrap().len() == 4 {
                break;
            }
            // Nodes poll every 250 ms (the 1 s guarantee is asserted strictly by the single-node
            // test); the extra second absorbs this test's own request latency when the whole
            // suite runs in parallel on a loaded 2-core machine.
            assert!(started.elapsed() < Duration::from_secs(2), "node {i} did not see the change within 2 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Both nodes sign with the same new key.
    let jwt_app = c.app(&["--grant-types", "client_credentials", "--token-type", "jwt"]);
    let mut kids = Vec::new();
    for i in 0..2 {
        let t: Value =
            c.post(i, "/oauth2/token", &jwt_app, &[("grant_type", "client_credentials")]).await.json().await.unwrap();
        kids.push(tether_testkit::jwt_header(t["access_token"].as_str().unwrap())["kid"].clone());
    }
    assert_eq!(kids[0], kids[1]);
}

/// Three nodes, concurrent clients issuing and revoking on random nodes, a node restarted mid-run;
/// then counting: every issued token is active on every node exactly unless it was revoked.
#[tokio::test]
async fn three_nodes_with_revocations_and_a_restart_agree_on_every_token() {
    let Some(mut c) = Cluster::start(3).await else { return };
    let app = c.app(&["--grant-types", "client_credentials"]);
    let shared = Arc::new(Mutex::new((Vec::<String>::new(), Vec::<String>::new())));
    let bases: Vec<(String, reqwest::Client)> = c.nodes.iter().map(|n| (n.base.clone(), n.client.clone())).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..6usize {
        let (bases, app, shared, stop) = (bases.clone(), app.clone(), shared.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                // Nodes 0 and 1 carry the load; node 2 is restarted meanwhile.
                let (base, client) = &bases[i % 2];
                let r = client
                    .post(format!("{base}/oauth2/token"))
                    .basic_auth(&app.0, Some(&app.1))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let t = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
                if i % 4 == 0 {
                    let (base, client) = &bases[(i + 1) % 2];
                    let r = client
                        .post(format!("{base}/oauth2/revoke"))
                        .basic_auth(&app.0, Some(&app.1))
                        .form(&[("token", t.as_str())])
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    shared.lock().unwrap().1.push(t);
                } else {
                    shared.lock().unwrap().0.push(t);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Restart node 2 (graceful stop, then a new process on the same database).
    let old = c.nodes.remove(2);
    drop(old);
    let mut env: Vec<(&str, &str)> = vec![];
    if let Some(u) = &c.db {
        env.push(("TETHER_DATABASE_URL", u));
    }
    let mut p = Proc::spawn(
        &c.dir,
        &["serve", "--data-dir", c.dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--metrics-listen", "off"],
        &env,
    );
    let port = port_of(&p.wait_for("listening on https://"));
    c.nodes.push(Node {
        _p: p,
        base: format!("https://localhost:{port}"),
        client: client(&c.dir.join("tls/ca.pem"), port),
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (live, revoked) = shared.lock().unwrap().clone();
    assert!(live.len() > 30 && revoked.len() > 10, "load ran: {} live, {} revoked", live.len(), revoked.len());
    for node in 0..3 {
        for t in &live {
            assert_eq!(c.introspect(node, &app, t).await["active"], true, "live token inactive on node {node}");
        }
        for t in &revoked {
            assert_eq!(
                c.introspect(node, &app, t).await,
                serde_json::json!({"active": false}),
                "revoked token active on node {node}"
            );
        }
    }
}

/// The peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_burst_of_sign_ins_stays_within_bounded_memory() {
    let d = TempDir::new("burst");
    let dir = d.path().to_path_buf();
    let db = tether_testkit::test_database().await;
    let env: Vec<(&str, &str)> = db.iter().map(|u| ("TETHER_DATABASE_URL", u.as_str())).collect();
    let mut p = Proc::spawn(
        &dir,
        &["serve", "--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
        &env,
    );
    let port = port_of(&p.wait_for("listening on https://"));
    let (_, out, _) = cli_db(&dir, &db, &["app", "create", "--name", "b", "--grant-types", "password", "--json"], None);
    let app: Value = serde_json::from_str(&out).unwrap();
    let (id, secret) =
        (app["client_id"].as_str().unwrap().to_string(), app["client_secret"].as_str().unwrap().to_string());
    let c = client(&dir.join("tls/ca.pem"), port);
    let url = format!("https://localhost:{port}/oauth2/token");
    // 100 password grants at once, each for a different (unknown) user: no throttle applies, so
    // each one asks for an argon2id check of ≈19 MiB.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (c, url, id, secret) = (c.clone(), url.clone(), id.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let user = format!("nobody{i}");
            let form = [("grant_type", "password"), ("username", user.as_str()), ("password", "x")];
            let r = c.post(url).basic_auth(id, Some(secret)).form(&form).send().await.unwrap();
            let (status, retry) = (r.status().as_u16(), r.headers().contains_key("retry-after"));
            (status, retry)
        }));
    }
    let mut busy = 0;
    for t in tasks {
        match t.await.unwrap() {
            (400, _) => {}
            (503, true) => busy += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let peak_mib = peak_rss_kib(p.child.id()) / 1024;
    eprintln!("100 concurrent sign-ins: peak RSS {peak_mib} MiB, {busy} answered 503");
    assert!(peak_mib < 256, "peak RSS {peak_mib} MiB");
    assert!(p.term().success());
}

/// Run a command to completion within 30 s.
fn run_bin(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("TETHER_DATABASE_URL").env_remove("RUST_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn");
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    });
    let out = child.wait_with_output().expect("output");
    drop(watchdog);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn only_serve_and_init_create_a_database() {
    let d = TempDir::new("init");
    let dir = d.path().join("data");
    let ds = dir.to_str().unwrap();
    let cwd = d.path();
    // Admin commands refuse a missing database, and create nothing.
    let (code, _, err) = run_bin(cwd, &["app", "list", "--data-dir", ds], &[]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("no Tether database at {ds}/tether.db (run `tether init`")), "{err}");
    assert!(!dir.exists(), "nothing was created");
    let (code, _, err) = run_bin(cwd, &["user", "list", "--database-url", "mysql://u@h/db"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("unsupported database URL scheme mysql://"), "{err}");
    let started = Instant::now();
    let (code, _, err) = run_bin(cwd, &["app", "list", "--database-url", "postgres://u@127.0.0.1:1/db"], &[]);
    assert_eq!(code, 1);
    assert!(err.to_lowercase().contains("connection refused"), "the real cause: {err}");
    assert!(started.elapsed() < Duration::from_secs(5), "not a pool timeout");

    // `tether init` creates everything, then the admin commands work and say what they use.
    let (code, out, err) = run_bin(cwd, &["init", "--data-dir", ds], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tether.db") && out.contains("master.key") && out.contains("ca.pem"), "{out}");
    let (code, _, err) = run_bin(cwd, &["app", "list", "--data-dir", ds, "--verbose"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("database: {ds}/tether.db")), "{err}");

    // The public CA, anywhere, readable by all.
    let out_ca = d.path().join("ca-copy.pem");
    let (code, _, err) = run_bin(cwd, &["tls", "ca", "--data-dir", ds, "--out", out_ca.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out_ca).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(std::fs::read(&out_ca).unwrap(), std::fs::read(dir.join("tls/ca.pem")).unwrap());

    // A missing master key next to a database with sealed keys: refused before writing anything.
    let key = std::fs::read(dir.join("master.key")).unwrap();
    std::fs::remove_file(dir.join("master.key")).unwrap();
    for cmd in [&["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "off"][..], &["init"][..]] {
        let (code, _, err) = run_bin(cwd, &[cmd, &["--data-dir", ds]].concat(), &[]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!("the database holds sealed keys but no master key was found at {ds}/master.key")),
            "{err}"
        );
        assert!(!dir.join("master.key").exists(), "no useless new key");
    }
    std::fs::write(dir.join("master.key"), key).unwrap();
    std::fs::set_permissions(dir.join("master.key"), std::fs::Permissions::from_mode(0o600)).unwrap();

    // One `serve` per SQLite database.
    let mut first =
        Proc::spawn(cwd, &["serve", "--data-dir", ds, "--listen", "127.0.0.1:0", "--metrics-listen", "off"], &[]);
    first.wait_for("listening on https://");
    let (code, _, err) =
        run_bin(cwd, &["serve", "--data-dir", ds, "--listen", "127.0.0.1:0", "--metrics-listen", "off"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("another `tether serve` is using the SQLite database"), "{err}");
    assert!(first.term().success());

    // Config errors name the line, column and key.
    let cfg = d.path().join("bad.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\n[session]\nlifetime_seconds = \"8h\"\n").unwrap();
    let (code, _, err) = run_bin(cwd, &["serve", "--config", cfg.to_str().unwrap(), "--data-dir", ds], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("line 3, column 20, key [session] lifetime_seconds: invalid type"), "{err}");
}
