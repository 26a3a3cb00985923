//! The admin CLI's acts (`user add --role`, `user update`, `user logout`, `user unlock`, `app
//! secret`, `keys retire`, `events`): the real binary on a database made by `tether init`, the same
//! admin operations as the REST API, against a running server where it matters.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_testkit::{TempDir, test_database};

use crate::binary::{Proc, client, port_of};

const BIN: &str = env!("CARGO_BIN_EXE_tether");
/// `$USER` of the CLI processes: the actor's username in their audit events.
const OPERATOR: &str = "op-test";

/// Run the CLI on `dir`'s database (and the suite's PostgreSQL database when there is one).
fn cli(dir: &Path, db: &Option<String>, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(dir).args(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("TETHER_DATABASE_URL").env_remove("TETHER_MASTER_KEY").env("USER", OPERATOR);
    if let Some(u) = db {
        cmd.env("TETHER_DATABASE_URL", u);
    }
    let mut child = cmd.spawn().expect("spawn tether");
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

fn users(run: &impl Fn(&[&str], Option<&str>) -> (i32, String, String)) -> Value {
    let (code, out, err) = run(&["user", "list", "--json"], None);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn user<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|u| u["username"] == name).unwrap_or_else(|| panic!("{name} in {list}"))
}

#[tokio::test]
async fn roles_keys_and_events_from_the_cli() {
    let d = TempDir::new("admin-cli");
    let db = test_database().await;
    let run = |args: &[&str], stdin: Option<&str>| cli(d.path(), &db, args, stdin);
    assert_eq!(run(&["init"], None).0, 0, "tether init");

    // Roles: stored at creation, replaced by --role, cleared by --no-roles; unknown ones refused.
    let (code, out, err) = run(&["user", "add", "root", "--password-stdin", "--role", "admin"], Some("pw\n"));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("added user root (sub "), "{out}");
    assert_eq!(user(&users(&run), "root")["roles"], serde_json::json!(["admin"]));
    let (code, _, err) = run(&["user", "add", "mallory", "--password-stdin", "--role", "root"], Some("pw\n"));
    assert_eq!(code, 2, "unknown role: {err}");
    assert!(err.contains("root"), "{err}");
    assert!(users(&run).as_array().unwrap().iter().all(|u| u["username"] != "mallory"), "nothing added");
    let (code, _, err) = run(&["user", "add", "root", "--password-stdin"], Some("pw\n"));
    assert_eq!(code, 1, "duplicate: {err}");

    let (code, out, err) = run(&["user", "update", "root", "--role", "viewer", "--role", "admin", "--json"], None);
    assert_eq!(code, 0, "{err}");
    let u: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(u["roles"], serde_json::json!(["viewer", "admin"]), "{u}");
    assert!(u.get("password_hash").is_none());
    let (code, _, err) =
        run(&["user", "update", "root", "--role", "viewer", "--email", "root@example.com", "--name", "Root"], None);
    assert_eq!(code, 0, "{err}");
    let listed = users(&run);
    let r = user(&listed, "root");
    assert_eq!(
        (&r["roles"], &r["email"], &r["name"]),
        (&serde_json::json!(["viewer"]), &"root@example.com".into(), &"Root".into())
    );
    assert_eq!(run(&["user", "update", "root", "--no-roles", "--email", ""], None).0, 0);
    let listed = users(&run);
    let r = user(&listed, "root");
    assert_eq!(r["roles"], serde_json::json!([]));
    assert!(r.get("email").is_none(), "--email \"\" removes it: {r}");
    for bad in [
        &["user", "update", "root", "--role", "admin", "--no-roles"][..],
        &["user", "update", "root", "--disabled", "--enabled"],
        &["user", "update", "root", "--role", "owner"],
        &["user", "update", "root"],
    ] {
        let (code, _, err) = run(bad, None);
        assert_eq!(code, 2, "{bad:?}: {err}");
    }
    let (code, _, err) = run(&["user", "update", "nobody", "--disabled"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no user named \"nobody\""), "{err}");

    // Unlock: recorded for the running servers (none here); an unknown user is refused.
    let (code, out, err) = run(&["user", "unlock", "root"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("unlocked root"), "{out}");
    assert_eq!(run(&["user", "unlock", "nobody"], None).0, 1);

    // Keys: the only current key of an algorithm stays; after a rotation the old one retires.
    let keys = || -> Vec<Value> {
        let (code, out, err) = run(&["keys", "list", "--json"], None);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
    };
    let es256 = keys().into_iter().find(|k| k["alg"] == "ES256").unwrap();
    let kid = es256["kid"].as_str().unwrap().to_string();
    let (code, _, err) = run(&["keys", "retire", "--", &kid], None);
    assert_eq!(code, 1, "the only current ES256 key: {err}");
    assert!(err.contains("only active ES256 key") && err.contains("tether keys rotate"), "{err}");
    assert_eq!(run(&["keys", "rotate"], None).0, 0);
    let (code, out, err) = run(&["keys", "retire", "--", &kid], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("retired key {kid}")), "{out}");
    let after = keys();
    assert_eq!(after.iter().find(|k| k["kid"] == kid.as_str()).unwrap()["status"], "retired");
    assert_eq!(after.iter().filter(|k| k["status"] == "current").count(), 2);
    assert_eq!(run(&["keys", "retire", "no-such-kid"], None).0, 1);

    // Every act above is an admin.change event, newest first, naming the CLI as the actor.
    let (code, out, err) = run(&["events", "--json", "--type", "admin.change"], None);
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    for e in &events {
        assert_eq!(e["type"], "admin.change");
        assert_eq!(e["client_id"], "tether-cli", "{e}");
        assert_eq!(e["username"], OPERATOR, "{e}");
        assert!(e["time"].as_str().unwrap().ends_with('Z'), "RFC 3339: {e}");
    }
    let actions: Vec<&str> = events.iter().map(|e| e["detail"]["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["key.retire", "key.rotate", "user.unlock", "user.update", "user.update", "user.update", "user.create"],
        "refused acts record nothing; newest first"
    );
    assert_eq!(events[0]["detail"]["target"], kid.as_str());
    assert_eq!(events[5]["detail"]["changes"]["roles"]["after"], serde_json::json!(["viewer", "admin"]));

    // Filters and text mode.
    let (_, out, _) = run(&["events", "--type", "admin.change,login.failure", "--limit", "2"], None);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("admin.change") && lines[0].contains(&format!("{OPERATOR}@tether-cli")), "{out}");
    assert!(lines[0].contains(&format!("key.retire {kid}")), "{out}");
    let (_, out, _) = run(&["events", "--json", "--username", "someone-else"], None);
    assert_eq!(out.trim(), "");
    let (_, out, _) = run(&["events", "--json", "--client-id", "tether-cli", "--since", "2000-01-01T00:00:00Z"], None);
    assert_eq!(out.lines().count(), events.len());
    let (_, out, _) = run(&["events", "--json", "--until", "946684800"], None);
    assert_eq!(out.trim(), "", "nothing before 2000");
    for bad in
        [&["events", "--type", "admin.changed"][..], &["events", "--since", "yesterday"], &["events", "--limit", "0"]]
    {
        let (code, _, err) = run(bad, None);
        assert_eq!(code, 2, "{bad:?}: {err}");
    }
}

#[tokio::test]
async fn cli_acts_take_effect_on_a_running_server() {
    let d = TempDir::new("admin-cli-live");
    let dir = d.path().to_path_buf();
    let db = test_database().await;
    let run = |args: &[&str], stdin: Option<&str>| cli(&dir, &db, args, stdin);
    assert_eq!(run(&["init"], None).0, 0, "tether init");
    let mut env: Vec<(&str, &str)> = vec![];
    if let Some(u) = &db {
        env.push(("TETHER_DATABASE_URL", u));
    }
    let ds = dir.to_str().unwrap();
    let mut p =
        Proc::spawn(&dir, &["serve", "--data-dir", ds, "--listen", "127.0.0.1:0", "--metrics-listen", "off"], &env);
    let port = port_of(&p.wait_for("listening on https://"));
    let c = client(&dir.join("tls/ca.pem"), port);
    let base = format!("https://localhost:{port}");

    let (code, out, err) = run(
        &[
            "app",
            "create",
            "--name",
            "console-like",
            "--grant-types",
            "password,client_credentials",
            "--scopes",
            "openid,admin:read,admin:write",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let app: Value = serde_json::from_str(&out).unwrap();
    let id = app["client_id"].as_str().unwrap().to_string();
    let s0 = app["client_secret"].as_str().unwrap().to_string();
    assert_eq!(run(&["user", "add", "alice", "--password-stdin", "--role", "admin"], Some("alice-pw\n")).0, 0);
    assert_eq!(run(&["user", "add", "bob", "--password-stdin", "--role", "viewer"], Some("bob-pw\n")).0, 0);

    let token = |secret: String, form: Vec<(&'static str, String)>| {
        let (c, id, url) = (c.clone(), id.clone(), format!("{base}/oauth2/token"));
        async move { c.post(url).basic_auth(id, Some(secret)).form(&form).send().await.unwrap() }
    };
    let password = |user: &str, pw: &str| {
        vec![
            ("grant_type", "password".to_string()),
            ("username", user.to_string()),
            ("password", pw.to_string()),
            ("scope", "openid admin:read admin:write".to_string()),
        ]
    };

    // Roles set by the CLI bound the admin scopes the server grants.
    let r = token(s0.clone(), password("alice", "alice-pw")).await;
    assert_eq!(r.status(), 200);
    let alice: Value = r.json().await.unwrap();
    assert_eq!(alice["scope"], "admin:read admin:write openid", "{alice}");
    let alice_at = alice["access_token"].as_str().unwrap().to_string();
    let r = c.get(format!("{base}/api/admin/v1/users/bob")).bearer_auth(&alice_at).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["roles"],
        serde_json::json!(["viewer"]),
        "the API sees the CLI's roles"
    );
    let r = token(s0.clone(), password("bob", "bob-pw")).await;
    let bob: Value = r.json().await.unwrap();
    assert_eq!(bob["scope"], "admin:read openid", "{bob}");
    let bob_at = bob["access_token"].as_str().unwrap().to_string();

    // Disabling ends what the user holds and refuses the password grant; enabling lets them back.
    let (code, out, err) = run(&["user", "update", "bob", "--disabled"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("disabled"), "{out}");
    let r = c.get(format!("{base}/api/admin/v1/users")).bearer_auth(&bob_at).send().await.unwrap();
    assert_eq!(r.status(), 401, "bob's admin token is revoked");
    let r = token(s0.clone(), password("bob", "bob-pw")).await;
    assert_eq!(r.status(), 400, "a disabled user's password grant");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(run(&["user", "update", "bob", "--enabled"], None).0, 0);
    assert_eq!(token(s0.clone(), password("bob", "bob-pw")).await.status(), 200);

    // Logout: every token of the user revoked, counted.
    let (code, out, err) = run(&["user", "logout", "alice", "--json"], None);
    assert_eq!(code, 0, "{err}");
    let counts: Value = serde_json::from_str(&out).unwrap();
    assert!(counts["tokens_revoked"].as_u64().unwrap() >= 1, "{counts}");
    assert_eq!(counts["sessions_ended"], 0, "the password grant opens no session");
    let r = c.get(format!("{base}/api/admin/v1/users")).bearer_auth(&alice_at).send().await.unwrap();
    assert_eq!(r.status(), 401, "alice's token is revoked");
    let (_, out, _) = run(&["user", "logout", "alice"], None);
    assert_eq!(out.trim(), "logged out alice: 0 sessions ended, 0 tokens revoked");

    // A new secret with a grace period: both work; then another without: only the newest works.
    let cc = || vec![("grant_type", "client_credentials".to_string())];
    let (code, out, err) = run(&["app", "secret", "--grace", "600", "--json", "--", &id], None);
    assert_eq!(code, 0, "{err}");
    let s1 = serde_json::from_str::<Value>(&out).unwrap()["client_secret"].as_str().unwrap().to_string();
    assert_ne!(s1, s0);
    wait_until("the new secret is accepted", || token(s1.clone(), cc()), 200).await;
    assert_eq!(token(s0.clone(), cc()).await.status(), 200, "the old secret works during the grace period");
    let (code, out, err) = run(&["app", "secret", &id], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(shown once: store it now)") && out.contains("the old secret no longer works"), "{out}");
    let s2 = out.lines().find_map(|l| l.strip_prefix("client_secret:")).unwrap().split_whitespace().next().unwrap();
    let s2 = s2.to_string();
    wait_until("the newest secret is accepted", || token(s2.clone(), cc()), 200).await;
    assert_eq!(token(s1.clone(), cc()).await.status(), 401, "no grace: the previous secret is refused");
    assert_eq!(token(s0.clone(), cc()).await.status(), 401, "the first secret is refused");
    let (code, _, err) = run(&["app", "secret", "--grace", "-1", &id], None);
    assert_eq!(code, 2, "{err}");

    // The server's own events and the CLI's, in one list.
    let (_, out, _) = run(&["events", "--json", "--type", "admin.change", "--client-id", "tether-cli"], None);
    let actions: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["detail"]["action"].as_str().unwrap().to_string())
        .collect();
    for a in ["app.create", "user.create", "user.update", "user.logout", "app.secret"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    let started = Instant::now();
    loop {
        let (_, out, _) =
            run(&["events", "--json", "--type", "login.success,token.issued", "--username", "alice"], None);
        if out.lines().count() > 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the server's events are stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = p.log();
    for secret in [s0.as_str(), s1.as_str(), s2.as_str(), "alice-pw", "bob-pw"] {
        assert!(!log.contains(secret), "a secret leaked into the log");
    }
}

/// Poll `req` until it answers `status` (a running server sees a CLI change within a second).
async fn wait_until<F, Fut>(what: &str, req: F, status: u16)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let started = Instant::now();
    loop {
        if req().await.status() == status {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{what}: not within 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
