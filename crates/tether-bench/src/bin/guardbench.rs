//! A micro-benchmark of the gateway's checks as a library (`tether_gateway::Guard`, what
//! `GuardLayer` runs for each request), without sockets, TLS or an upstream: so the library path
//! is measured on its own and does not get slower unnoticed.
//!
//! An in-process issuer (discovery and JWKS over plain HTTP on loopback) signs an ES256 access
//! token; the guard is built as `tether gateway` builds it (`auth_methods = ["bearer"]`). Each
//! scenario runs a warm-up, then `--iterations` requests one after another on one thread:
//!
//! - `bearer JWT`: a valid token (its verification is cached after the first request, as in the
//!   gateway);
//! - `bearer JWT, scope required`: the same with `required_scopes` checked;
//! - `no token`: the refusal path (401 with its challenge);
//! - `forged signature`: a token whose signature does not verify (never cached).
//!
//! Output: a Markdown table (scenario, iterations, ns per request, requests/s on one core).

use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::body::Body;
use clap::Parser;
use http::Request;
use serde_json::json;
use tether_gateway::{Config, FileConfig, Guard};

#[derive(Parser)]
struct Args {
    /// Requests per scenario (after a warm-up of a tenth as many)
    #[arg(long, default_value_t = 200_000)]
    iterations: u32,
}

fn b64(b: &[u8]) -> String {
    tether_core::secret::b64url(b)
}

fn sign(pair: &EcdsaKeyPair, header: &serde_json::Value, claims: &serde_json::Value) -> anyhow::Result<String> {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = pair
        .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
        .map_err(|_| anyhow::anyhow!("cannot sign"))?;
    Ok(format!("{input}.{}", b64(sig.as_ref())))
}

/// Discovery and JWKS on loopback; returns the issuer URL.
async fn issuer(jwk: serde_json::Value) -> anyhow::Result<String> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let iss = format!("http://127.0.0.1:{}", l.local_addr()?.port());
    let discovery = json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")});
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", axum::routing::get(move || async move { axum::Json(discovery) }))
        .route("/jwks", axum::routing::get(move || async move { axum::Json(json!({"keys": [jwk]})) }));
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    Ok(iss)
}

async fn run(guard: &Guard, label: &str, token: Option<&str>, n: u32, ok: bool) -> anyhow::Result<String> {
    let one = || {
        let mut r = Request::builder().method("GET").uri("/orders?id=1");
        if let Some(t) = token {
            r = r.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        r.body(Body::empty())
    };
    for _ in 0..(n / 10).max(1) {
        let passed = guard.handle(one()?).await.is_ok();
        anyhow::ensure!(passed == ok, "{label}: the guard answered {passed}, expected {ok}");
    }
    let started = Instant::now();
    for _ in 0..n {
        let _ = std::hint::black_box(guard.handle(one()?).await);
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(n);
    Ok(format!("| {label} | {n} | {ns:.0} | {:.0} |", 1e9 / ns))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("cannot make a key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("cannot read the key"))?;
    let p = pair.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65]), "kid": "k1", "alg": "ES256", "use": "sig"});
    let iss = issuer(jwk).await?;
    #[allow(clippy::disallowed_methods)] // a benchmark's token lives in wall-clock time
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let claims = json!({"iss": iss, "sub": "alice", "aud": "https://api.example", "client_id": "bench",
        "scope": "orders:read", "iat": now, "exp": now + 3600, "jti": "bench-1"});
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"});
    let token = sign(&pair, &header, &claims)?;
    let forged = format!("{}.{}", token.rsplit_once('.').map_or("", |(h, _)| h), b64(&[7u8; 64]));
    let guard = |scopes: Option<Vec<String>>| -> anyhow::Result<Guard> {
        let cfg = Config::from_file(FileConfig {
            upstream: Some("http://127.0.0.1:1".into()),
            issuer: Some(iss.clone()),
            auth_methods: Some(vec!["bearer".into()]),
            metrics_listen: Some("off".into()),
            required_scopes: scopes,
            ..Default::default()
        })
        .map_err(anyhow::Error::msg)?;
        Guard::new(cfg, Arc::new(tether_core::clock::SystemClock)).map_err(anyhow::Error::msg)
    };
    let plain = guard(None)?;
    let scoped = guard(Some(vec!["orders:read".into()]))?;
    let n = args.iterations;
    let rows = vec![
        run(&plain, "bearer JWT", Some(&token), n, true).await?,
        run(&scoped, "bearer JWT, scope required", Some(&token), n, true).await?,
        run(&plain, "no token (401)", None, n, false).await?,
        run(&plain, "forged signature (401, never cached)", Some(&forged), (n / 20).max(1), false).await?,
    ];
    println!("| scenario | iterations | ns/request | requests/s (one core) |");
    println!("| --- | ---: | ---: | ---: |");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
