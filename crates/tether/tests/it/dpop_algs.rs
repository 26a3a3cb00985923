//! Every DPoP algorithm the live discovery document advertises, over real HTTPS, with keys, proofs
//! and RFC 7638 thumbprints made by an independent implementation (panva's jose, from npm; see
//! interop/dpop-proofs.mjs): a DPoP-bound client-credentials token whose `cnf.jkt` (in the JWT and
//! at introspection) is jose's thumbprint, and a password-grant token used at userinfo with a
//! second proof from the same key.
//!
//! Needs `node` and `interop/node_modules` (`cd interop && npm ci`). Without them the test is
//! skipped with a note, except under `CI=true`, where it fails.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Response;
use serde_json::{Value, json};
use tether_core::clock::Clock;
use tether_testkit::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// interop/dpop-proofs.mjs, or `None` (after a note) when node or jose is missing outside CI.
fn oracle_script(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop"));
    let node = std::process::Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let problem = if !node {
        "node is not installed"
    } else if !dir.join("node_modules/jose").is_dir() {
        "interop/node_modules is missing (run `cd interop && npm ci`)"
    } else {
        return Some(dir.join("dpop-proofs.mjs"));
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "{test}: the jose DPoP oracle is required under CI: {problem}");
    eprintln!("SKIPPED {test}: the jose DPoP oracle is unavailable: {problem}");
    None
}

/// One node process for the whole test; keys live in it between batches.
struct Jose {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Jose {
    fn spawn(script: &PathBuf) -> Self {
        let mut child = Command::new("node")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Jose { child, stdin, lines }
    }

    /// Send one batch of requests; the results in the same order.
    async fn batch(&mut self, requests: Vec<Value>) -> Vec<Value> {
        let n = requests.len();
        self.stdin.write_all(format!("{}\n", Value::Array(requests)).as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("jose answers within 60 s")
            .unwrap()
            .unwrap_or_default();
        let report: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if report["ok"] != true {
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = tokio::time::timeout(Duration::from_secs(5), e.read_to_string(&mut err)).await;
            }
            panic!("interop/dpop-proofs.mjs failed:\n{line}\n{err}");
        }
        let results = report["results"].as_array().unwrap().clone();
        assert_eq!(results.len(), n, "one result per request");
        results
    }
}

async fn token_with(srv: &TestServer, a: &AppCreds, form: &[(&str, &str)], proof: &str) -> Response {
    let r = srv.client().post(srv.url("/oauth2/token"));
    r.basic_auth(&a.client_id, a.client_secret.as_deref()).header("dpop", proof).form(form).send().await.unwrap()
}

/// A 200 DPoP token response whose JWT access token is bound (`cnf.jkt`) to `jkt`.
async fn bound_token(r: Response, jkt: &str, what: &str) -> Result<String, String> {
    let status = r.status();
    let t: Value = r.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err(format!("{what}: status {status}: {t}"));
    }
    if t["token_type"] != "DPoP" {
        return Err(format!("{what}: token_type {}", t["token_type"]));
    }
    let at = t["access_token"].as_str().ok_or(format!("{what}: no access_token: {t}"))?.to_string();
    let cnf = &jwt_claims(&at)["cnf"];
    if cnf != &json!({"jkt": jkt}) {
        return Err(format!("{what}: the JWT's cnf is {cnf}, jose's thumbprint is {jkt}"));
    }
    Ok(at)
}

/// For every advertised algorithm, over HTTPS: client credentials and password grants with jose
/// proofs bind the tokens to jose's thumbprint (JWT `cnf.jkt` and introspection), and userinfo
/// accepts the password-grant token with a second jose proof (same key, `ath`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_dpop_alg_with_jose_proofs() {
    let Some(script) = oracle_script("every_advertised_dpop_alg_with_jose_proofs") else { return };
    let srv = TestServer::start().await;
    let user = srv.add_user("alice", "pw").await;
    let mut ch = app(&["password", "client_credentials"]);
    ch.binding = Some("dpop".into());
    ch.token_type = Some("jwt".into());
    let a = srv.create_app(ch).await;

    let d: Value =
        srv.client().get(srv.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    let algs: Vec<String> = d["dpop_signing_alg_values_supported"]
        .as_array()
        .expect("dpop_signing_alg_values_supported")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!algs.is_empty(), "no DPoP algorithms advertised");
    let issuer = d["issuer"].as_str().unwrap();
    let token_endpoint = d["token_endpoint"].as_str().unwrap();
    let userinfo = format!("{issuer}/oauth2/userinfo");
    let now = srv.clock.now();

    let mut jose = Jose::spawn(&script);
    // Two token-endpoint proofs per key (client credentials, password): one node batch for all.
    let reqs = algs.iter().map(|alg| json!({"alg": alg, "htm": "POST", "htu": token_endpoint, "iat": now, "count": 2}));
    let made = jose.batch(reqs.collect()).await;

    let mut failures = Vec::new();
    let mut user_tokens = Vec::new();
    for (alg, m) in algs.iter().zip(&made) {
        assert_eq!(m["alg"], alg.as_str());
        let jkt = m["jkt"].as_str().unwrap();
        let proofs: Vec<&str> = m["proofs"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();

        let r = token_with(&srv, &a, &[("grant_type", "client_credentials")], proofs[0]).await;
        match bound_token(r, jkt, "client_credentials").await {
            Ok(at) => {
                let i = srv.introspect(&a, &at).await;
                if i["active"] != true || i["cnf"] != json!({"jkt": jkt}) {
                    failures.push(format!("{alg}: introspection {i} (jose's thumbprint {jkt})"));
                }
            }
            Err(e) => failures.push(format!("{alg}: {e}")),
        }

        let pw = [("grant_type", "password"), ("username", "alice"), ("password", "pw"), ("scope", "openid")];
        match bound_token(token_with(&srv, &a, &pw, proofs[1]).await, jkt, "password").await {
            Ok(at) => user_tokens.push((alg.as_str(), jkt, at)),
            Err(e) => failures.push(format!("{alg}: {e}")),
        }
    }

    // Userinfo: a second proof from each same key, with the token's ath.
    let reqs = user_tokens
        .iter()
        .map(|(alg, _, at)| json!({"alg": alg, "htm": "GET", "htu": userinfo, "iat": now, "access_token": at}));
    let made = jose.batch(reqs.collect()).await;
    for ((alg, jkt, at), m) in user_tokens.iter().zip(&made) {
        assert_eq!(m["jkt"], *jkt, "{alg}: jose kept the key between batches");
        let r = srv
            .client()
            .get(&userinfo)
            .header("authorization", format!("DPoP {at}"))
            .header("dpop", m["proof"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status != 200 || body["sub"] != user.as_str() {
            failures.push(format!("{alg}: userinfo {status}: {body}"));
        } else {
            eprintln!("{alg}: token endpoint, introspection and userinfo accepted jose's proofs (jkt {jkt})");
        }
    }
    assert!(failures.is_empty(), "advertised DPoP algorithms that fail with jose's proofs:\n{}", failures.join("\n"));
}
