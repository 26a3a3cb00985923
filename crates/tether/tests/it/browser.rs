//! The pages in a real browser: headless Debian Chromium driven by playwright-core
//! (interop/browser.mjs) against a real server — login (wrong then right password), the cookies the
//! browser actually holds (`atbv` flags per B-7), SSO, the cookie and sso-session bindings,
//! consent, logout with its confirmation page and what it revokes (B-6), and the device page
//! approving a device that only polls. The script asserts each step and reports facts, which are
//! checked again here.

use serde_json::{Value, json};
use tether_testkit::*;

const CB: &str = "https://rp.example/cb";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_in_headless_chromium() {
    let chromium = std::env::var("TETHER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is required for the page tests (apt-get install chromium, or set TETHER_CHROMIUM)"
    );
    let srv = TestServer::start().await;
    srv.add_user("alice", "pw").await;
    let mk = |name: &str, f: &dyn Fn(&mut tether_core::admin::AppChanges)| {
        let mut ch = app(&["authorization_code", "refresh_token"]);
        ch.name = Some(name.into());
        ch.redirect_uris = Some(vec![CB.into()]);
        f(&mut ch);
        ch
    };
    let cookie = srv
        .create_app(mk("Cookie App", &|c| {
            c.binding = Some("cookie".into());
            c.token_type = Some("jwt".into());
            c.revoke_on_logout = Some(true);
        }))
        .await;
    let sso = srv
        .create_app(mk("SSO App", &|c| {
            c.binding = Some("sso-session".into());
            c.token_type = Some("opaque".into());
        }))
        .await;
    let consent = srv.create_app(mk("Consent App", &|c| c.require_consent = Some(true))).await;
    let mut ch = app(&["device_code", "refresh_token"]);
    ch.name = Some("TV App".into());
    ch.public = Some(true);
    ch.binding = Some("device-flow".into());
    let device = srv.create_app(ch).await;

    let d = TempDir::new("chromium");
    let ca_file = d.path().join("ca.pem");
    std::fs::write(&ca_file, &srv.ca_pem).unwrap();
    let shots = d.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let creds = |a: &AppCreds| json!({"client_id": a.client_id, "client_secret": a.client_secret, "redirect_uri": CB});
    let config = json!({
        "base": srv.base,
        "now": tether_core::clock::Clock::now(&srv.clock),
        "ca_file": ca_file,
        "chromium": chromium,
        "shots": shots,
        "user": {"username": "alice", "password": "pw"},
        "apps": {"cookie": creds(&cookie), "sso": creds(&sso), "consent": creds(&consent), "device": {"client_id": device.client_id}},
    });
    let config_file = d.path().join("config.json");
    std::fs::write(&config_file, config.to_string()).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/browser.mjs");
    let run = tokio::process::Command::new("node").arg(script).arg(&config_file).kill_on_drop(true).output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(240), run)
        .await
        .expect("the browser test finishes within 4 minutes")
        .expect("node runs (install nodejs and `npm ci` in interop/)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    let report: Value = serde_json::from_str(last).unwrap_or(Value::Null);
    assert!(out.status.success() && report["ok"] == true, "browser test failed:\n{stdout}\n{stderr}");
    let facts = &report["facts"];
    assert!(facts.is_object(), "{report}");
    eprintln!("browser facts: {facts}");
    // B-7, as the browser holds it.
    let atbv = &facts["atbv"];
    assert_eq!(
        (&atbv["secure"], &atbv["httpOnly"], &atbv["path"], &atbv["sameSite"], &atbv["expires"], &atbv["domain"]),
        (&json!(true), &json!(true), &json!("/"), &json!("None"), &json!(-1), &json!("localhost")),
        "{atbv}"
    );
    assert_eq!(facts["session_cookie"]["sameSite"], "Lax");
    assert_eq!(facts["session_cookie"]["httpOnly"], true);
    for fact in [
        "binding_ref_is_md5_of_atbv",
        "atbv_unchanged_after_sso",
        "binding_ref_same_after_sso",
        "atbv_differs_between_browsers",
        "previous_jwt_inactive",
    ] {
        assert_eq!(facts[fact], true, "{fact}");
    }
    assert_eq!(facts["sso"]["token_reused"], true);
    assert_eq!(facts["sso"]["binding_ref_is_md5_of_isk"], true);
    assert_eq!(facts["consent"]["deny_error"], "access_denied");
    let logout = &facts["logout"];
    assert_eq!(logout["confirmation_page"], true);
    assert_eq!(logout["sso_token_after"], json!({"active": false}));
    assert_eq!(logout["cookie_jwt_after"], json!({"active": false}));
    assert_eq!(logout["other_browser_token_active"], true);
    assert_eq!(logout["atbv_kept"], true);
    assert_eq!(facts["device"]["tokens_issued"], true);
    assert_eq!(facts["device"]["reuse_error"], "invalid_grant");
    // What the server itself says about the device Chromium approved: nothing else is pending.
    assert!(facts["device_wrong_code_error"].as_str().unwrap_or("").contains("not valid"));
}
