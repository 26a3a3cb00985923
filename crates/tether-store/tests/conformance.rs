//! Store conformance: the same cases against every backend. SQLite always runs (a fresh file in a
//! temporary directory per case); PostgreSQL runs when `TETHER_TEST_POSTGRES_URL` names an admin
//! URL of a test cluster (`scripts/pg-start` prints one), each case on a database of its own that
//! is dropped afterwards. Without it the `postgres::` cases pass without running.
//!
//! The cases check what the protocol relies on: codes and refresh tokens redeemed once with
//! revocation on replay, the B-3 reuse policies (also under concurrency), the revocation cascades,
//! the B-6 logout filters, the purge, the DPoP replay cache, that a corrupt row is an error, and
//! what the admin API stores: user roles and the disabled flag, previous client secrets, session
//! origins, key retirement, token metadata and revocation by public id, audit events.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use tether_core::error::StoreError;
use tether_core::keys::{Alg, KeyRecord};
use tether_core::model::{App, AppRecord, AuthMethod, BindingType, GrantType, IdTokenAlg, TokenType, User, UserRecord};
use tether_core::store::*;
use tether_store::{PostgresStore, SqliteStore};

/// The time every case runs at.
const NOW: i64 = 1_800_000_000;
const HOUR: i64 = 3600;

// ---------------------------------------------------------------------------------------------
// Backends

struct Backend {
    store: Arc<dyn Store>,
    raw: Raw,
}

/// Direct access to the database under the store, for what the trait cannot do (write a bad row,
/// count rows).
enum Raw {
    Sqlite { _dir: TempDir, file: PathBuf },
    Postgres { admin: String, url: String, name: String },
}

impl Raw {
    async fn exec(&self, sql: &str) {
        match self {
            Raw::Sqlite { file, .. } => {
                let c = rusqlite::Connection::open(file).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                c.execute_batch(sql).unwrap();
            }
            Raw::Postgres { url, .. } => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
            }
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        match self {
            Raw::Sqlite { file, .. } => {
                let c = rusqlite::Connection::open(file).unwrap();
                c.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Raw::Postgres { url, .. } => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
            }
        }
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn random_name() -> String {
    tether_core::secret::hex(&tether_core::secret::random_bytes::<6>())
}

async fn sqlite() -> Backend {
    let dir = std::env::temp_dir().join(format!("tether-conformance-{}", random_name()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tether.db");
    let store = SqliteStore::open(file.to_str().unwrap()).await.unwrap();
    Backend { store: Arc::new(store), raw: Raw::Sqlite { _dir: TempDir(dir), file } }
}

/// A fresh database on the test cluster, as tether-testkit's `test_database` makes one (copied:
/// tether-testkit depends on this crate).
async fn postgres() -> Option<Backend> {
    use sqlx::Connection;
    let admin = std::env::var("TETHER_TEST_POSTGRES_URL").ok().filter(|s| !s.is_empty())?;
    let name = format!("tether_c_{}", random_name());
    let mut c = sqlx::PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL cluster");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await.expect("create test database");
    let mut u = url::Url::parse(&admin).expect("admin URL");
    u.set_path(&format!("/{name}"));
    let url = u.to_string();
    let store = PostgresStore::open(&url, 24).await.unwrap();
    Some(Backend { store: Arc::new(store), raw: Raw::Postgres { admin, url, name } })
}

impl Backend {
    /// Drop the PostgreSQL database of a case that passed.
    async fn finish(self) {
        let Backend { store, raw } = self;
        drop(store);
        if let Raw::Postgres { admin, name, .. } = raw {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
        }
    }
}

/// Each case runs once per backend: `sqlite::case` and `postgres::case`.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let b = super::sqlite().await;
                    super::$case(&b).await;
                    b.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(b) = super::postgres().await else {
                        eprintln!("TETHER_TEST_POSTGRES_URL is not set: skipped");
                        return;
                    };
                    super::$case(&b).await;
                    b.finish().await;
                }
            )*
        }
    };
}

conformance!(
    records_round_trip,
    code_replay_revokes_the_grant,
    refresh_rotation_and_reuse_detection,
    reuse_active_returns_the_active_token,
    revoke_previous_without_refresh,
    revoke_previous_with_refresh,
    an_expired_token_is_not_the_active_one,
    concurrent_issuance_reuse_active,
    concurrent_issuance_revoke_previous,
    device_code_is_consumed_once,
    revoke_access_revokes_its_refresh_families,
    revoke_family_revokes_its_access_tokens,
    revoke_grant_revokes_its_tokens,
    logout_filters,
    purge_removes_dead_rows_and_keeps_used_live_refresh_tokens,
    dpop_jti_is_fresh_once,
    corrupt_rows_are_errors,
    user_roles_disabled_and_update,
    previous_secret_round_trips,
    sessions_listed_and_ended_per_user,
    user_update_ends_sessions_and_tokens_with_it,
    pushed_requests_live_until_first_use_then_until_consumed,
    kept_refresh_token_stays_active_and_follows_the_new_access_token,
    registration_tokens_are_kept_hashed_and_go_with_their_app,
    ended_sessions_queue_one_logout_per_app_and_deliveries_are_claimed_once,
    retire_key_leaves_the_jwks_now,
    list_tokens_filters_and_pages,
    revoke_by_public_id_revokes_the_pair,
    events_insert_list_and_purge,
);

// ---------------------------------------------------------------------------------------------
// Records

fn access(hash: &str) -> AccessTokenRecord {
    AccessTokenRecord {
        id: format!("id-{hash}"),
        token_hash: hash.into(),
        jti: format!("jti-{hash}"),
        client_id: "app".into(),
        user_id: Some("u1".into()),
        username: Some("alice".into()),
        scope: "openid read".into(),
        audience: vec!["https://api.example".into()],
        token_type: TokenType::Opaque,
        binding: None,
        reuse_key: None,
        grant_id: None,
        session_id: None,
        auth_time: Some(NOW - 10),
        issued_at: NOW,
        expires_at: NOW + HOUR,
        revoked_at: None,
        act: None,
    }
}

fn refresh(hash: &str, family: &str, access_id: &str) -> RefreshTokenRecord {
    RefreshTokenRecord {
        id: format!("id-{hash}"),
        token_hash: hash.into(),
        family_id: family.into(),
        access_id: access_id.into(),
        client_id: "app".into(),
        user_id: Some("u1".into()),
        username: Some("alice".into()),
        scope: "openid read".into(),
        audience: vec!["https://api.example".into()],
        binding: None,
        grant_id: None,
        session_id: None,
        auth_time: Some(NOW - 10),
        issued_at: NOW,
        expires_at: NOW + 24 * HOUR,
        used_at: None,
        revoked_at: None,
    }
}

fn keyed(hash: &str, key: &str) -> AccessTokenRecord {
    AccessTokenRecord { reuse_key: Some(key.into()), ..access(hash) }
}

fn with_grant(mut a: AccessTokenRecord, grant: &str) -> AccessTokenRecord {
    a.grant_id = Some(grant.into());
    a
}

fn bound(kind: BindingType, reference: &str) -> Option<BindingRecord> {
    Some(BindingRecord { kind, reference: reference.into(), value_hash: format!("hash-{reference}"), cnf: None })
}

fn request(
    access: AccessTokenRecord,
    refresh: Option<RefreshTokenRecord>,
    policy: ReusePolicy,
    precondition: Precondition,
) -> IssueRequest {
    IssueRequest { access, refresh, policy, precondition, now: NOW }
}

/// Issue with no precondition and no reuse policy.
async fn issue_plain(s: &dyn Store, a: AccessTokenRecord, r: Option<RefreshTokenRecord>) {
    let out = s.issue(&request(a, r, ReusePolicy::Independent, Precondition::None)).await.unwrap();
    assert!(matches!(out, IssueOutcome::Issued), "{out:?}");
}

fn code(hash: &str, grant: &str) -> CodeRecord {
    CodeRecord {
        code_hash: hash.into(),
        client_id: "app".into(),
        user_id: "u1".into(),
        redirect_uri: "https://app.example/cb".into(),
        scope: "openid read".into(),
        audience: vec!["https://api.example".into()],
        nonce: Some("n".into()),
        code_challenge: Some("challenge".into()),
        code_challenge_method: Some("S256".into()),
        session_id: "sess".into(),
        auth_time: NOW - 10,
        grant_id: grant.into(),
        binding: bound(BindingType::Cookie, "atbv-ref"),
        expires_at: NOW + 60,
        used_at: None,
    }
}

fn device(hash: &str) -> DeviceRecord {
    DeviceRecord {
        device_hash: hash.into(),
        user_code_hash: format!("user-{hash}"),
        client_id: "tv".into(),
        scope: "read".into(),
        audience: vec![],
        expires_at: NOW + 600,
        interval: 5,
        last_polled: None,
        status: DeviceStatus::Pending,
        user_id: None,
        session_id: None,
        auth_time: None,
    }
}

fn app_record(client_id: &str) -> AppRecord {
    AppRecord {
        app: App {
            client_id: client_id.into(),
            name: "An app".into(),
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            redirect_uris: vec!["https://app.example/cb".into()],
            public: false,
            auth_method: AuthMethod::ClientSecretBasic,
            token_type: TokenType::Jwt,
            binding: BindingType::Dpop,
            validate_binding: true,
            revoke_on_logout: true,
            scopes: vec!["openid".into(), "read".into()],
            audience: vec!["https://api.example".into()],
            allowed_origins: vec![],
            introspect_any: false,
            require_consent: true,
            exchange_from: vec![],
            id_token_alg: IdTokenAlg::ES256,
            access_token_ttl: 600,
            refresh_token_ttl: 86_400,
            tls_subject_dn: None,
            tls_client_certificates: vec![],
            jwks: Some(serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]})),
            jwks_uri: None,
            require_par: true,
            profile: tether_core::model::Profile::Fapi2,
            backchannel_logout_uri: Some("https://app.example/logout".into()),
            backchannel_logout_session_required: true,
            registered: true,
        },
        secret_hash: Some("secret-hash".into()),
        previous_secret: None,
        sealed_secret: None,
    }
}

async fn revoked(s: &dyn Store, access_hash: &str) -> bool {
    s.find_access(access_hash).await.unwrap().unwrap().revoked_at.is_some()
}

async fn refresh_revoked(s: &dyn Store, hash: &str) -> bool {
    s.find_refresh(hash).await.unwrap().unwrap().revoked_at.is_some()
}

// ---------------------------------------------------------------------------------------------
// Cases

/// Every record reads back as written (the row mappers read columns by position).
async fn records_round_trip(b: &Backend) {
    let s = &*b.store;
    let app = app_record("app");
    s.create_app(&app).await.unwrap();
    let got = s.get_app("app").await.unwrap().unwrap();
    assert_eq!((got.app, got.secret_hash), (app.app.clone(), app.secret_hash.clone()));
    assert_eq!(s.list_apps().await.unwrap().len(), 1);

    let user = UserRecord {
        user: User {
            id: "u1".into(),
            username: "alice".into(),
            email: Some("a@example".into()),
            name: None,
            created_at: NOW,
            roles: vec!["admin".into(), "viewer".into()],
            disabled: true,
        },
        password_hash: "ph".into(),
    };
    s.create_user(&user).await.unwrap();
    let got = s.get_user_by_name("alice").await.unwrap().unwrap();
    assert_eq!((&got.user, got.password_hash.as_str()), (&user.user, "ph"));
    assert_eq!(s.get_user("u1").await.unwrap().unwrap().user, user.user);

    let key = KeyRecord {
        kid: "k1".into(),
        alg: Alg::RS256,
        private_sealed: vec![0, 1, 2, 255],
        public_jwk: "{}".into(),
        created_at: NOW,
        rotated_at: None,
        publish_until: None,
    };
    s.add_keys(std::slice::from_ref(&key), NOW, NOW + HOUR).await.unwrap();
    let keys = s.list_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].kid.as_str(), keys[0].alg, &keys[0].private_sealed), ("k1", Alg::RS256, &key.private_sealed));

    let session = SessionRecord {
        id: "sid".into(),
        cookie_hash: "ch".into(),
        user_id: "u1".into(),
        auth_time: NOW - 5,
        expires_at: NOW + HOUR,
        last_seen: NOW,
        ended_at: None,
        ip: Some("192.0.2.7".into()),
        user_agent: Some("Mozilla/5.0 (Test)".into()),
    };
    s.create_session(&session).await.unwrap();
    let got = s.find_session("ch").await.unwrap().unwrap();
    assert_eq!(
        (got.id.as_str(), got.user_id.as_str(), got.auth_time, got.expires_at),
        ("sid", "u1", NOW - 5, NOW + HOUR)
    );
    assert_eq!((got.ip, got.user_agent), (session.ip.clone(), session.user_agent.clone()));
    assert!(s.find_session_by_id("sid").await.unwrap().is_some());

    let c = code("C", "G");
    s.insert_code(&c).await.unwrap();
    let got = s.find_code("C").await.unwrap().unwrap();
    assert_eq!(
        (got.redirect_uri.as_str(), got.audience, got.nonce, got.code_challenge_method, got.binding, got.used_at),
        (
            c.redirect_uri.as_str(),
            c.audience.clone(),
            c.nonce.clone(),
            c.code_challenge_method.clone(),
            c.binding.clone(),
            None
        )
    );

    let mut a = access("A");
    a.token_type = TokenType::Jwt;
    a.binding = Some(BindingRecord {
        kind: BindingType::Dpop,
        reference: "ref".into(),
        value_hash: "vh".into(),
        cnf: Some("jkt".into()),
    });
    a.reuse_key = Some("K".into());
    a.grant_id = Some("G".into());
    a.session_id = Some("sid".into());
    a.act = Some(r#"{"sub":"actor"}"#.into());
    let mut r = refresh("R", "F", "A");
    r.binding = a.binding.clone();
    r.grant_id = Some("G".into());
    issue_plain(s, a.clone(), Some(r.clone())).await;
    let got = s.find_access("A").await.unwrap().unwrap();
    assert_eq!(format!("{got:?}"), format!("{a:?}"));
    let got = s.find_refresh("R").await.unwrap().unwrap();
    assert_eq!(format!("{got:?}"), format!("{r:?}"));

    let d = device("D");
    s.insert_device(&d).await.unwrap();
    assert_eq!(format!("{:?}", s.find_device("D").await.unwrap().unwrap()), format!("{d:?}"));
    assert_eq!(format!("{:?}", s.find_device_by_user_code("user-D", NOW).await.unwrap().unwrap()), format!("{d:?}"));
    assert!(s.find_device_by_user_code("user-D", NOW + 600).await.unwrap().is_none(), "expired");
    assert!(s.binding_in_use(BindingType::Dpop, "ref").await.unwrap());
    assert!(!s.binding_in_use(BindingType::Cookie, "ref").await.unwrap());
}

async fn code_replay_revokes_the_grant(b: &Backend) {
    let s = &*b.store;
    s.insert_code(&code("C", "G")).await.unwrap();
    let mut r1 = refresh("R1", "F1", "A1");
    r1.grant_id = Some("G".into());
    let first = request(
        with_grant(access("A1"), "G"),
        Some(r1),
        ReusePolicy::Independent,
        Precondition::ConsumeCode("C".into()),
    );
    assert!(matches!(s.issue(&first).await.unwrap(), IssueOutcome::Issued));
    assert_eq!(s.find_code("C").await.unwrap().unwrap().used_at, Some(NOW));
    assert!(!revoked(s, "A1").await);
    // Another token of another grant, untouched by the replay.
    issue_plain(s, with_grant(access("B"), "OTHER"), None).await;

    let replay = request(
        with_grant(access("A2"), "G"),
        Some(refresh("R2", "F2", "A2")),
        ReusePolicy::Independent,
        Precondition::ConsumeCode("C".into()),
    );
    assert!(matches!(s.issue(&replay).await.unwrap(), IssueOutcome::Replayed));
    assert!(revoked(s, "A1").await, "the grant's access token is revoked");
    assert!(refresh_revoked(s, "R1").await, "the grant's refresh token is revoked");
    assert!(s.find_access("A2").await.unwrap().is_none(), "nothing issued");
    assert!(s.find_refresh("R2").await.unwrap().is_none(), "nothing issued");
    assert!(!revoked(s, "B").await);

    // An unknown code: nothing to revoke, nothing issued.
    let unknown = request(access("A3"), None, ReusePolicy::Independent, Precondition::ConsumeCode("nope".into()));
    assert!(matches!(s.issue(&unknown).await.unwrap(), IssueOutcome::Replayed));
    assert!(s.find_access("A3").await.unwrap().is_none());
}

async fn refresh_rotation_and_reuse_detection(b: &Backend) {
    let s = &*b.store;
    issue_plain(s, access("A1"), Some(refresh("R1", "F", "A1"))).await;
    issue_plain(s, access("OTHER"), Some(refresh("ROTHER", "G", "OTHER"))).await;
    let rotate = |a: &str, r: &str, from: &str| {
        request(
            access(a),
            Some(refresh(r, "F", a)),
            ReusePolicy::RevokePrevious { with_refresh: false },
            Precondition::RotateRefresh(from.into()),
        )
    };
    assert!(matches!(s.issue(&rotate("A2", "R2", "R1")).await.unwrap(), IssueOutcome::Issued));
    let r1 = s.find_refresh("R1").await.unwrap().unwrap();
    assert_eq!((r1.used_at, r1.revoked_at), (Some(NOW), None), "rotated: used, not revoked");
    assert!(s.find_refresh("R2").await.unwrap().unwrap().active(NOW));

    // Reuse of the rotated token: the whole family goes, with its access tokens.
    assert!(matches!(s.issue(&rotate("A3", "R3", "R1")).await.unwrap(), IssueOutcome::Replayed));
    for r in ["R1", "R2"] {
        assert!(refresh_revoked(s, r).await, "{r}");
    }
    for a in ["A1", "A2"] {
        assert!(revoked(s, a).await, "{a}");
    }
    assert!(s.find_access("A3").await.unwrap().is_none());
    assert!(!revoked(s, "OTHER").await && !refresh_revoked(s, "ROTHER").await, "another family is untouched");
    // A revoked (not used) refresh token is refused the same way.
    assert!(matches!(s.issue(&rotate("A4", "R4", "R2")).await.unwrap(), IssueOutcome::Replayed));
    // An unknown one too.
    assert!(matches!(s.issue(&rotate("A5", "R5", "nope")).await.unwrap(), IssueOutcome::Replayed));
    assert!(s.find_access("A5").await.unwrap().is_none());
}

async fn reuse_active_returns_the_active_token(b: &Backend) {
    let s = &*b.store;
    let reuse = |a: &str, r: Option<RefreshTokenRecord>| {
        request(keyed(a, "K"), r, ReusePolicy::ReuseActive, Precondition::None)
    };
    assert!(matches!(s.issue(&reuse("A1", Some(refresh("R1", "F1", "A1")))).await.unwrap(), IssueOutcome::Issued));
    match s.issue(&reuse("A2", Some(refresh("R2", "F2", "A2")))).await.unwrap() {
        IssueOutcome::Reused(t) => assert_eq!((t.token_hash.as_str(), t.id.as_str()), ("A1", "id-A1")),
        other => panic!("{other:?}"),
    }
    assert!(s.find_access("A2").await.unwrap().is_none(), "the new access token is not stored");
    let r2 = s.find_refresh("R2").await.unwrap().unwrap();
    assert_eq!(r2.access_id, "A1", "the new refresh token is linked to the reused access token");
    // Without a refresh token: reused, nothing stored.
    assert!(matches!(s.issue(&reuse("A3", None)).await.unwrap(), IssueOutcome::Reused(t) if t.token_hash == "A1"));
    assert!(s.find_access("A3").await.unwrap().is_none());
    // Another key is independent.
    let other = request(keyed("B1", "K2"), None, ReusePolicy::ReuseActive, Precondition::None);
    assert!(matches!(s.issue(&other).await.unwrap(), IssueOutcome::Issued));
    // Once revoked, the key has no active token: a new one is issued.
    s.revoke_access("A1", NOW).await.unwrap();
    assert!(matches!(s.issue(&reuse("A4", None)).await.unwrap(), IssueOutcome::Issued));
}

async fn revoke_previous_without_refresh(b: &Backend) {
    let s = &*b.store;
    let policy = ReusePolicy::RevokePrevious { with_refresh: false };
    let req = |a: &str, r: &str, f: &str| request(keyed(a, "K"), Some(refresh(r, f, a)), policy, Precondition::None);
    assert!(matches!(s.issue(&req("A1", "R1", "F1")).await.unwrap(), IssueOutcome::Issued));
    assert!(matches!(s.issue(&req("A2", "R2", "F2")).await.unwrap(), IssueOutcome::Issued));
    assert!(revoked(s, "A1").await, "the previous access token is revoked");
    assert!(!refresh_revoked(s, "R1").await, "its refresh token is not");
    assert!(!revoked(s, "A2").await && !refresh_revoked(s, "R2").await);
}

async fn revoke_previous_with_refresh(b: &Backend) {
    let s = &*b.store;
    let policy = ReusePolicy::RevokePrevious { with_refresh: true };
    let req = |a: &str, r: &str, f: &str| request(keyed(a, "K"), Some(refresh(r, f, a)), policy, Precondition::None);
    assert!(matches!(s.issue(&req("A1", "R1", "F1")).await.unwrap(), IssueOutcome::Issued));
    // A second member of F1, paired with another access token of the family.
    issue_plain(s, access("A1b"), Some(refresh("R1b", "F1", "A1b"))).await;
    assert!(matches!(s.issue(&req("A2", "R2", "F2")).await.unwrap(), IssueOutcome::Issued));
    assert!(revoked(s, "A1").await);
    assert!(refresh_revoked(s, "R1").await && refresh_revoked(s, "R1b").await, "the family of the previous token");
    assert!(revoked(s, "A1b").await, "and the family's access tokens");
    assert!(!revoked(s, "A2").await && !refresh_revoked(s, "R2").await);
}

async fn an_expired_token_is_not_the_active_one(b: &Backend) {
    let s = &*b.store;
    let mut old = keyed("A1", "K");
    old.issued_at = NOW - 2 * HOUR;
    old.expires_at = NOW - 1;
    issue_plain(s, old, None).await;
    let req = request(keyed("A2", "K"), None, ReusePolicy::ReuseActive, Precondition::None);
    assert!(matches!(s.issue(&req).await.unwrap(), IssueOutcome::Issued), "an expired token is not reused");
    assert_eq!(s.find_access("A1").await.unwrap().unwrap().revoked_at, Some(NOW - 1), "retired at its expiry");
    assert!(s.find_access("A2").await.unwrap().unwrap().active(NOW));
}

/// Issue A0..A15 (with R0..R15, families F0..F15) for one reuse key, all at once.
async fn issue_concurrently(b: &Backend, policy: ReusePolicy) -> Vec<IssueOutcome> {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = b.store.clone();
            tokio::spawn(async move {
                let a = format!("A{i}");
                let r = refresh(&format!("R{i}"), &format!("F{i}"), &a);
                s.issue(&request(keyed(&a, "K"), Some(r), policy, Precondition::None)).await.unwrap()
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn concurrent_issuance_reuse_active(b: &Backend) {
    let mut issued = Vec::new();
    let mut reused = Vec::new();
    for (i, out) in issue_concurrently(b, ReusePolicy::ReuseActive).await.into_iter().enumerate() {
        match out {
            IssueOutcome::Issued => issued.push(format!("A{i}")),
            IssueOutcome::Reused(t) => reused.push(t.token_hash),
            IssueOutcome::Replayed => panic!("replayed"),
        }
    }
    assert_eq!(issued.len(), 1, "exactly one issued: {issued:?}");
    assert_eq!(reused.len(), 15);
    assert!(reused.iter().all(|h| *h == issued[0]), "all reuse the one issued: {reused:?}");
    for i in 0..16 {
        assert_eq!(b.store.find_refresh(&format!("R{i}")).await.unwrap().unwrap().access_id, issued[0]);
    }
}

async fn concurrent_issuance_revoke_previous(b: &Backend) {
    let outcomes = issue_concurrently(b, ReusePolicy::RevokePrevious { with_refresh: true }).await;
    assert!(outcomes.iter().all(|o| matches!(o, IssueOutcome::Issued)), "{outcomes:?}");
    let mut active = Vec::new();
    for i in 0..16 {
        let a = format!("A{i}");
        if b.store.find_access(&a).await.unwrap().unwrap().active(NOW) {
            active.push(a);
        }
    }
    assert_eq!(active.len(), 1, "exactly one active token of the key: {active:?}");
    let live_refresh = b.raw.count("SELECT COUNT(*) FROM refresh_tokens WHERE revoked_at IS NULL").await;
    assert_eq!(live_refresh, 1, "only the last token's refresh family survives");
}

async fn device_code_is_consumed_once(b: &Backend) {
    let s = &*b.store;
    s.insert_device(&device("D")).await.unwrap();
    s.insert_device(&device("PENDING")).await.unwrap();
    let consume =
        |a: &str, d: &str| request(access(a), None, ReusePolicy::Independent, Precondition::ConsumeDevice(d.into()));
    // Not approved yet: nothing.
    assert!(matches!(s.issue(&consume("A0", "D")).await.unwrap(), IssueOutcome::Replayed));
    assert!(s.decide_device("D", true, "u1", "sid", NOW - 5).await.unwrap());
    assert!(!s.decide_device("D", false, "u1", "sid", NOW - 5).await.unwrap(), "decided once");
    let d = s.find_device("D").await.unwrap().unwrap();
    assert_eq!(
        (d.status, d.user_id.as_deref(), d.session_id.as_deref(), d.auth_time),
        (DeviceStatus::Approved, Some("u1"), Some("sid"), Some(NOW - 5))
    );
    s.poll_device("D", NOW, 10).await.unwrap();
    let d = s.find_device("D").await.unwrap().unwrap();
    assert_eq!((d.last_polled, d.interval), (Some(NOW), 10));

    assert!(matches!(s.issue(&consume("A1", "D")).await.unwrap(), IssueOutcome::Issued));
    assert_eq!(s.find_device("D").await.unwrap().unwrap().status, DeviceStatus::Used);
    assert!(matches!(s.issue(&consume("A2", "D")).await.unwrap(), IssueOutcome::Replayed));
    assert!(s.find_access("A2").await.unwrap().is_none());
    assert!(!revoked(s, "A1").await, "a second poll revokes nothing");
    assert!(matches!(s.issue(&consume("A3", "PENDING")).await.unwrap(), IssueOutcome::Replayed));
}

async fn revoke_access_revokes_its_refresh_families(b: &Backend) {
    let s = &*b.store;
    issue_plain(s, access("A1"), Some(refresh("R1", "F", "A1"))).await;
    let rotate = request(
        access("A2"),
        Some(refresh("R2", "F", "A2")),
        ReusePolicy::Independent,
        Precondition::RotateRefresh("R1".into()),
    );
    assert!(matches!(s.issue(&rotate).await.unwrap(), IssueOutcome::Issued));
    issue_plain(s, access("B"), Some(refresh("RB", "FB", "B"))).await;
    s.revoke_access("A1", NOW).await.unwrap();
    assert!(revoked(s, "A1").await);
    assert!(refresh_revoked(s, "R1").await && refresh_revoked(s, "R2").await, "the family issued with it");
    assert!(revoked(s, "A2").await, "and the family's other access tokens");
    assert!(!revoked(s, "B").await && !refresh_revoked(s, "RB").await);
    // Revoking again changes nothing (the first revocation time stays).
    s.revoke_access("A1", NOW + 5).await.unwrap();
    assert_eq!(s.find_access("A1").await.unwrap().unwrap().revoked_at, Some(NOW));
}

async fn revoke_family_revokes_its_access_tokens(b: &Backend) {
    let s = &*b.store;
    issue_plain(s, access("A1"), Some(refresh("R1", "F", "A1"))).await;
    issue_plain(s, access("A2"), Some(refresh("R2", "F", "A2"))).await;
    issue_plain(s, access("B"), Some(refresh("RB", "FB", "B"))).await;
    s.revoke_family("F", NOW).await.unwrap();
    for a in ["A1", "A2"] {
        assert!(revoked(s, a).await, "{a}");
    }
    for r in ["R1", "R2"] {
        assert!(refresh_revoked(s, r).await, "{r}");
    }
    assert!(!revoked(s, "B").await && !refresh_revoked(s, "RB").await);
}

async fn revoke_grant_revokes_its_tokens(b: &Backend) {
    let s = &*b.store;
    let mut r1 = refresh("R1", "F1", "A1");
    r1.grant_id = Some("G".into());
    issue_plain(s, with_grant(access("A1"), "G"), Some(r1)).await;
    let mut rh = refresh("RH", "FH", "AH");
    rh.grant_id = Some("H".into());
    issue_plain(s, with_grant(access("AH"), "H"), Some(rh)).await;
    s.revoke_grant("G", NOW).await.unwrap();
    assert!(revoked(s, "A1").await && refresh_revoked(s, "R1").await);
    assert!(!revoked(s, "AH").await && !refresh_revoked(s, "RH").await);
}

async fn logout_filters(b: &Backend) {
    let s = &*b.store;
    let token = |hash: &str, client: &str, session: &str, binding: Option<BindingRecord>| {
        let mut a = access(hash);
        a.client_id = client.into();
        a.session_id = Some(session.into());
        a.binding = binding.clone();
        let mut r = refresh(&format!("R{hash}"), &format!("F{hash}"), hash);
        r.client_id = client.into();
        r.session_id = Some(session.into());
        r.binding = binding;
        (a, r)
    };
    let tokens = [
        token("plain", "app", "S", None),
        token("cookie", "app", "S", bound(BindingType::Cookie, "atbv")),
        token("request", "app", "S", bound(BindingType::ClientRequest, "cr")),
        token("device", "app", "S", bound(BindingType::DeviceFlow, "df")),
        token("elsewhere", "app", "S2", None),
        token("other-app", "other", "S", None),
    ];
    for (a, r) in tokens {
        issue_plain(s, a, Some(r)).await;
    }

    assert!(
        matches!(s.revoke_matching(&RevokeFilter::default(), NOW).await, Err(StoreError::Other(_))),
        "no condition"
    );
    let spare_only = RevokeFilter { spare_binding_kinds: vec![BindingType::ClientRequest], ..Default::default() };
    assert!(s.revoke_matching(&spare_only, NOW).await.is_err(), "sparing alone is no condition");
    let no_clients = RevokeFilter { session_id: Some("S".into()), client_ids: Some(vec![]), ..Default::default() };
    assert_eq!(s.revoke_matching(&no_clients, NOW).await.unwrap(), 0, "an empty client list matches nothing");
    assert!(!revoked(s, "plain").await);

    let logout = RevokeFilter {
        session_id: Some("S".into()),
        client_ids: Some(vec!["app".into(), "unknown".into()]),
        spare_binding_kinds: vec![BindingType::ClientRequest, BindingType::DeviceFlow],
        ..Default::default()
    };
    assert_eq!(s.revoke_matching(&logout, NOW).await.unwrap(), 4, "two access and two refresh tokens");
    for (hash, gone) in [
        ("plain", true),
        ("cookie", true),
        ("request", false),
        ("device", false),
        ("elsewhere", false),
        ("other-app", false),
    ] {
        assert_eq!(revoked(s, hash).await, gone, "access {hash}");
        assert_eq!(refresh_revoked(s, &format!("R{hash}")).await, gone, "refresh {hash}");
    }

    // The browser's binding: by type and reference (the `atbv` case of logout).
    issue_plain(s, token("cookie2", "app", "S3", bound(BindingType::Cookie, "atbv2")).0, None).await;
    let by_binding = RevokeFilter {
        user_id: Some("u1".into()),
        binding_kind: Some(BindingType::Cookie),
        binding_ref: Some("atbv2".into()),
        client_ids: Some(vec!["app".into()]),
        ..Default::default()
    };
    assert_eq!(s.revoke_matching(&by_binding, NOW).await.unwrap(), 1);
    assert!(revoked(s, "cookie2").await);
    // Without sparing, the request-bound tokens of the session go too.
    let all = RevokeFilter { session_id: Some("S".into()), ..Default::default() };
    assert_eq!(s.revoke_matching(&all, NOW).await.unwrap(), 6, "request, device and other-app pairs");
}

async fn purge_removes_dead_rows_and_keeps_used_live_refresh_tokens(b: &Backend) {
    let s = &*b.store;
    let grace = 100;
    // Dead past the grace period.
    let mut expired = access("expired");
    expired.expires_at = NOW - grace - 1;
    issue_plain(s, expired, None).await;
    issue_plain(s, access("revoked"), Some(refresh("Rrevoked", "Frevoked", "revoked"))).await;
    s.revoke_access("revoked", NOW - grace - 1).await.unwrap();
    let mut r_expired = refresh("Rexpired", "Fexpired", "live");
    r_expired.expires_at = NOW - grace - 1;
    let mut old_code = code("Cold", "G");
    old_code.expires_at = NOW - grace - 1;
    s.insert_code(&old_code).await.unwrap();
    let mut old_device = device("Dold");
    old_device.expires_at = NOW - grace - 1;
    s.insert_device(&old_device).await.unwrap();
    let session = |id: &str, expires_at: i64| SessionRecord {
        id: id.into(),
        cookie_hash: format!("c-{id}"),
        user_id: "u1".into(),
        auth_time: NOW - HOUR,
        expires_at,
        last_seen: NOW - HOUR,
        ended_at: None,
        ip: None,
        user_agent: None,
    };
    s.create_session(&session("expired", NOW - grace - 1)).await.unwrap();
    s.create_session(&session("ended", NOW + HOUR)).await.unwrap();
    s.end_session("ended", NOW - grace - 1).await.unwrap();
    assert!(s.dpop_jti_fresh("old-jti", NOW - grace - 1).await.unwrap());
    // Alive, or dead within the grace period.
    issue_plain(s, access("live"), Some(r_expired)).await;
    let mut recent = access("recent");
    recent.expires_at = NOW - grace + 1;
    issue_plain(s, recent, None).await;
    issue_plain(s, access("A1"), Some(refresh("Rused", "F", "A1"))).await;
    let rotate = request(
        access("A2"),
        Some(refresh("R2", "F", "A2")),
        ReusePolicy::Independent,
        Precondition::RotateRefresh("Rused".into()),
    );
    assert!(matches!(s.issue(&rotate).await.unwrap(), IssueOutcome::Issued));
    s.insert_code(&code("Cnew", "G2")).await.unwrap();
    s.insert_device(&device("Dnew")).await.unwrap();
    s.create_session(&session("live", NOW + HOUR)).await.unwrap();
    assert!(s.dpop_jti_fresh("new-jti", NOW + 60).await.unwrap());

    // expired + revoked access, expired + revoked refresh, a code, two sessions, a device, a jti.
    assert_eq!(s.purge(NOW, grace, 1000).await.unwrap(), 9);
    for gone in ["expired", "revoked"] {
        assert!(s.find_access(gone).await.unwrap().is_none(), "{gone}");
    }
    for gone in ["Rexpired", "Rrevoked"] {
        assert!(s.find_refresh(gone).await.unwrap().is_none(), "{gone}");
    }
    assert!(s.find_code("Cold").await.unwrap().is_none());
    assert!(s.find_device("Dold").await.unwrap().is_none());
    assert!(s.find_session_by_id("expired").await.unwrap().is_none());
    assert!(s.find_session_by_id("ended").await.unwrap().is_none());
    for kept in ["live", "recent", "A1", "A2"] {
        assert!(s.find_access(kept).await.unwrap().is_some(), "{kept}");
    }
    let used = s.find_refresh("Rused").await.unwrap().expect("a used but live refresh token stays (reuse detection)");
    assert!(used.used_at.is_some());
    assert!(s.find_code("Cnew").await.unwrap().is_some());
    assert!(s.find_device("Dnew").await.unwrap().is_some());
    assert!(s.find_session_by_id("live").await.unwrap().is_some());
    assert!(!s.dpop_jti_fresh("new-jti", NOW + 60).await.unwrap(), "a live jti stays");
    assert!(s.dpop_jti_fresh("old-jti", NOW + 60).await.unwrap(), "the purged jti is gone");
    // Bounded by `limit` per table.
    let mut bulk = Vec::new();
    for i in 0..5 {
        let mut a = access(&format!("bulk{i}"));
        a.expires_at = NOW - grace - 1;
        bulk.push(a);
    }
    for a in bulk {
        issue_plain(s, a, None).await;
    }
    assert_eq!(s.purge(NOW, grace, 2).await.unwrap(), 2);
    assert_eq!(s.purge(NOW, grace, 1000).await.unwrap(), 3);
    assert_eq!(s.purge(NOW, grace, 1000).await.unwrap(), 0);
}

async fn dpop_jti_is_fresh_once(b: &Backend) {
    let s = &*b.store;
    assert!(s.dpop_jti_fresh("jkt:jti", NOW + 60).await.unwrap(), "first use");
    assert!(!s.dpop_jti_fresh("jkt:jti", NOW + 60).await.unwrap(), "replayed");
    assert!(!s.dpop_jti_fresh("jkt:jti", NOW + 600).await.unwrap(), "replayed, whatever the expiry");
    assert!(s.dpop_jti_fresh("jkt:other", NOW + 60).await.unwrap(), "another jti");
    // The row outlives its expiry until the purge removes it; only then is the key new again.
    assert!(!s.dpop_jti_fresh("jkt:jti", NOW + 60).await.unwrap());
    s.purge(NOW + 61, 0, 100).await.unwrap();
    assert!(s.dpop_jti_fresh("jkt:jti", NOW + 200).await.unwrap(), "fresh again once purged");
}

fn assert_corrupt<T: std::fmt::Debug>(r: StoreResult<T>, table: &str, column: &str) {
    match r {
        Err(StoreError::Corrupt { table: t, column: c, .. }) if t == table && c == column => {}
        other => panic!("expected a corrupt {table}.{column}, got {other:?}"),
    }
}

async fn corrupt_rows_are_errors(b: &Backend) {
    let s = &*b.store;
    issue_plain(s, keyed("A", "K"), Some(refresh("R", "F", "A"))).await;
    b.raw.exec("UPDATE access_tokens SET token_type = 'bogus' WHERE token_hash = 'A'").await;
    assert_corrupt(s.find_access("A").await, "access_tokens", "token_type");
    // Issuance reads the key's active token: it fails rather than use a default.
    let req = request(keyed("A2", "K"), None, ReusePolicy::ReuseActive, Precondition::None);
    assert_corrupt(s.issue(&req).await, "access_tokens", "token_type");
    assert!(s.find_access("A2").await.unwrap().is_none());

    b.raw.exec("UPDATE refresh_tokens SET binding_type = 'telepathy', binding_ref = 'r', binding_hash = 'h' WHERE token_hash = 'R'").await;
    assert_corrupt(s.find_refresh("R").await, "refresh_tokens", "binding_type");
    b.raw.exec("UPDATE refresh_tokens SET binding_type = NULL, audience = 'not json' WHERE token_hash = 'R'").await;
    assert_corrupt(s.find_refresh("R").await, "refresh_tokens", "audience");

    s.insert_device(&device("D")).await.unwrap();
    b.raw.exec("UPDATE device_codes SET status = 'maybe' WHERE device_hash = 'D'").await;
    assert_corrupt(s.find_device("D").await, "device_codes", "status");

    let key = KeyRecord {
        kid: "k".into(),
        alg: Alg::ES256,
        private_sealed: vec![1],
        public_jwk: "{}".into(),
        created_at: NOW,
        rotated_at: None,
        publish_until: None,
    };
    s.add_keys(&[key], NOW, NOW).await.unwrap();
    b.raw.exec("UPDATE signing_keys SET alg = 'HS256'").await;
    assert_corrupt(s.list_keys().await, "signing_keys", "alg");

    s.create_app(&app_record("app")).await.unwrap();
    b.raw.exec("UPDATE apps SET settings = '{\"client_id\": 1}'").await;
    assert_corrupt(s.get_app("app").await, "apps", "settings");
}

// ---------------------------------------------------------------------------------------------
// Admin API

fn user(id: &str, username: &str, roles: &[&str], disabled: bool) -> UserRecord {
    UserRecord {
        user: User {
            id: id.into(),
            username: username.into(),
            email: Some(format!("{username}@example")),
            name: Some(format!("User {username}")),
            created_at: NOW,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            disabled,
        },
        password_hash: format!("ph-{username}"),
    }
}

async fn user_roles_disabled_and_update(b: &Backend) {
    let s = &*b.store;
    let admin = user("u1", "alice", &["admin", "viewer"], false);
    let plain = user("u2", "bob", &[], true);
    s.create_user(&admin).await.unwrap();
    s.create_user(&plain).await.unwrap();
    assert_eq!(s.get_user("u1").await.unwrap().unwrap().user, admin.user);
    let got = s.get_user_by_name("bob").await.unwrap().unwrap();
    assert_eq!((got.user.roles.len(), got.user.disabled), (0, true));
    assert_eq!(b.raw.count("SELECT COUNT(*) FROM users WHERE roles = ''").await, 1, "no roles: the empty string");
    // A row written by a node that predates the columns reads as no roles, enabled.
    b.raw
        .exec("INSERT INTO users (id, username, password_hash, created_at) VALUES ('u3', 'carol', 'ph', 1800000000)")
        .await;
    let old = s.get_user("u3").await.unwrap().unwrap().user;
    assert_eq!((old.roles.len(), old.disabled), (0, false));
    let names: Vec<_> = s.list_users().await.unwrap().into_iter().map(|u| (u.user.username, u.user.roles)).collect();
    assert_eq!(
        names,
        [
            ("alice".to_string(), vec!["admin".to_string(), "viewer".to_string()]),
            ("bob".into(), vec![]),
            ("carol".into(), vec![])
        ]
    );

    let gen0 = s.generation().await.unwrap();
    let mut changed = plain.clone();
    changed.user.username = "mallory".into();
    changed.user.email = None;
    changed.user.name = Some("Robert".into());
    changed.user.roles = vec!["viewer".into()];
    changed.user.disabled = false;
    changed.password_hash = "ph-new".into();
    assert_eq!(s.update_user(&changed, UserCascade::Nothing, NOW).await.unwrap(), Some(Ended::default()));
    assert!(s.generation().await.unwrap() > gen0, "caches reload");
    let got = s.get_user("u2").await.unwrap().unwrap();
    assert_eq!(got.user.username, "bob", "the username never changes");
    assert_eq!(
        (got.user.email, got.user.name.as_deref(), got.user.roles, got.user.disabled, got.password_hash.as_str()),
        (None, Some("Robert"), vec!["viewer".to_string()], false, "ph-new")
    );
    assert!(s.get_user_by_name("mallory").await.unwrap().is_none());
    assert_eq!(s.get_user("u1").await.unwrap().unwrap().user, admin.user, "others unchanged");
    let gen1 = s.generation().await.unwrap();
    assert_eq!(
        s.update_user(&user("nobody", "nobody", &[], false), UserCascade::SessionsAndTokens, NOW).await.unwrap(),
        None,
        "no such id"
    );
    assert_eq!(s.generation().await.unwrap(), gen1);
    assert!(s.get_user_by_name("nobody").await.unwrap().is_none(), "nothing created");
}

async fn previous_secret_round_trips(b: &Backend) {
    let s = &*b.store;
    let mut app = app_record("app");
    app.previous_secret = Some(tether_core::model::PreviousSecret { hash: "old-hash".into(), until: NOW + HOUR });
    s.create_app(&app).await.unwrap();
    s.create_app(&app_record("other")).await.unwrap();
    assert_eq!(s.get_app("app").await.unwrap().unwrap().previous_secret, app.previous_secret);
    assert_eq!(s.get_app("other").await.unwrap().unwrap().previous_secret, None);

    // Regenerated again: the secret that was current becomes the previous one.
    let mut regenerated = app.clone();
    regenerated.secret_hash = Some("new-hash".into());
    regenerated.previous_secret =
        Some(tether_core::model::PreviousSecret { hash: "secret-hash".into(), until: NOW + 2 * HOUR });
    s.update_app(&regenerated).await.unwrap();
    let got = s.get_app("app").await.unwrap().unwrap();
    assert_eq!(
        (got.secret_hash, got.previous_secret),
        (regenerated.secret_hash.clone(), regenerated.previous_secret.clone())
    );
    let listed = s.list_apps().await.unwrap();
    assert_eq!(listed.iter().filter(|a| a.previous_secret.is_some()).count(), 1);

    // A client_secret_jwt app's sealed secret round-trips, and an update without it removes it.
    let mut sealed = regenerated.clone();
    sealed.sealed_secret = Some("c2VhbGVk".into());
    s.update_app(&sealed).await.unwrap();
    let got = s.get_app("app").await.unwrap().unwrap();
    assert_eq!((got.sealed_secret.as_deref(), got.app.jwks), (Some("c2VhbGVk"), sealed.app.jwks.clone()));
    assert_eq!(s.get_app("other").await.unwrap().unwrap().sealed_secret, None);

    let mut cleared = app_record("app");
    cleared.secret_hash = Some("new-hash".into());
    s.update_app(&cleared).await.unwrap();
    assert_eq!(s.get_app("app").await.unwrap().unwrap().previous_secret, None);
    assert_eq!(b.raw.count("SELECT COUNT(*) FROM apps WHERE sealed_secret IS NOT NULL").await, 0);
    assert_eq!(b.raw.count("SELECT COUNT(*) FROM apps WHERE previous_secret_hash IS NOT NULL").await, 0);
    assert_eq!(b.raw.count("SELECT COUNT(*) FROM apps WHERE previous_secret_until IS NOT NULL").await, 0);
    // A hash without its time is no previous secret.
    b.raw.exec("UPDATE apps SET previous_secret_hash = 'h' WHERE client_id = 'app'").await;
    assert_eq!(s.get_app("app").await.unwrap().unwrap().previous_secret, None);
    assert!(matches!(s.update_app(&app_record("missing")).await, Err(StoreError::NotFound)));
}

fn session(id: &str, user_id: &str, auth_time: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        cookie_hash: format!("c-{id}"),
        user_id: user_id.into(),
        auth_time,
        expires_at: auth_time + HOUR,
        last_seen: auth_time,
        ended_at: None,
        ip: None,
        user_agent: None,
    }
}

async fn sessions_listed_and_ended_per_user(b: &Backend) {
    let s = &*b.store;
    let mut newest = session("new", "u1", NOW);
    newest.ip = Some("2001:db8::1".into());
    newest.user_agent = Some("curl/8.0".into());
    s.create_session(&newest).await.unwrap();
    s.create_session(&session("old", "u1", NOW - 3 * HOUR)).await.unwrap(); // expired, not ended: listed
    s.create_session(&session("mid", "u1", NOW - 60)).await.unwrap();
    s.create_session(&session("ended", "u1", NOW - 30)).await.unwrap();
    s.end_session("ended", NOW - 10).await.unwrap();
    s.create_session(&session("bobs", "u2", NOW)).await.unwrap();

    let listed = s.list_sessions("u1").await.unwrap();
    let ids: Vec<_> = listed.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["new", "mid", "old"], "not ended, newest first");
    assert_eq!((listed[0].ip.as_deref(), listed[0].user_agent.as_deref()), (Some("2001:db8::1"), Some("curl/8.0")));
    assert_eq!((listed[1].ip.as_deref(), listed[1].user_agent.as_deref()), (None, None));
    assert!(s.list_sessions("nobody").await.unwrap().is_empty());

    issue_plain(s, access("T1"), Some(refresh("RT1", "F1", "T1"))).await;
    let mut bobs = access("T2");
    bobs.user_id = Some("u2".into());
    issue_plain(s, bobs, None).await;
    let ended = s.end_user("u1", UserCascade::SessionsAndTokens, NOW + 5).await.unwrap();
    assert_eq!((ended.sessions, ended.tokens), (3, 2), "three sessions, an access and a refresh token");
    assert!(revoked(s, "T1").await && refresh_revoked(s, "RT1").await);
    assert!(!revoked(s, "T2").await, "another user's token stays");
    assert!(s.list_sessions("u1").await.unwrap().is_empty());
    assert_eq!(s.find_session_by_id("new").await.unwrap().unwrap().ended_at, Some(NOW + 5));
    assert_eq!(s.find_session_by_id("ended").await.unwrap().unwrap().ended_at, Some(NOW - 10), "ended once");
    assert_eq!(s.list_sessions("u2").await.unwrap().len(), 1, "another user's session stays");
    assert_eq!(s.end_user("u1", UserCascade::SessionsAndTokens, NOW + 6).await.unwrap(), Ended::default());
}

/// A user change and what ends with it are one transaction: tokens only, or sessions and tokens.
async fn user_update_ends_sessions_and_tokens_with_it(b: &Backend) {
    let s = &*b.store;
    s.create_user(&user("u1", "alice", &["admin"], false)).await.unwrap();
    s.create_session(&session("S1", "u1", NOW)).await.unwrap();
    issue_plain(s, access("T1"), Some(refresh("RT1", "F1", "T1"))).await;

    let mut no_role = user("u1", "alice", &[], false);
    let ended = s.update_user(&no_role, UserCascade::Tokens, NOW + 1).await.unwrap().unwrap();
    assert_eq!(ended, Ended { sessions: 0, tokens: 2 });
    assert!(revoked(s, "T1").await && refresh_revoked(s, "RT1").await);
    assert_eq!(s.list_sessions("u1").await.unwrap().len(), 1, "the session stays");

    issue_plain(s, access("T2"), None).await;
    no_role.user.disabled = true;
    let ended = s.update_user(&no_role, UserCascade::SessionsAndTokens, NOW + 2).await.unwrap().unwrap();
    assert_eq!(ended, Ended { sessions: 1, tokens: 1 });
    assert!(s.get_user("u1").await.unwrap().unwrap().user.disabled);
    assert!(s.list_sessions("u1").await.unwrap().is_empty() && revoked(s, "T2").await);
}

fn key(kid: &str, alg: Alg) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        alg,
        private_sealed: vec![1, 2, 3],
        public_jwk: "{}".into(),
        created_at: NOW - HOUR,
        rotated_at: None,
        publish_until: None,
    }
}

async fn retire_key_leaves_the_jwks_now(b: &Backend) {
    let s = &*b.store;
    s.add_keys(&[key("rsa1", Alg::RS256), key("ec1", Alg::ES256)], NOW - HOUR, NOW - HOUR).await.unwrap();
    // rsa1 rotated out by rsa2, still published for a while.
    s.add_keys(&[key("rsa2", Alg::RS256)], NOW - 50, NOW + HOUR).await.unwrap();
    let gen0 = s.generation().await.unwrap();

    assert!(s.retire_key("ec1", NOW).await.unwrap());
    assert!(s.generation().await.unwrap() > gen0, "every node reloads its keys");
    assert!(s.retire_key("rsa1", NOW).await.unwrap());
    assert!(!s.retire_key("unknown", NOW).await.unwrap());
    let keys: Vec<_> =
        s.list_keys().await.unwrap().into_iter().map(|k| (k.kid, k.rotated_at, k.publish_until)).collect();
    let find = |kid: &str| keys.iter().find(|k| k.0 == kid).cloned().unwrap();
    assert_eq!(find("ec1"), ("ec1".into(), Some(NOW), Some(NOW)), "stops signing, leaves the JWKS now");
    assert_eq!(find("rsa1"), ("rsa1".into(), Some(NOW - 50), Some(NOW)), "rotation time kept, JWKS left now");
    assert_eq!(find("rsa2"), ("rsa2".into(), None, None), "the current key is untouched");
}

/// A token pair with distinct secret-looking values, so a listing that leaked one would show.
fn pair(
    n: u32,
    client: &str,
    user: Option<&str>,
    binding: Option<BindingRecord>,
) -> (AccessTokenRecord, RefreshTokenRecord) {
    let mut a = access(&format!("secret-ahash-{n}"));
    a.id = format!("derive-{n}");
    a.jti = format!("t{n:02}-a");
    a.client_id = client.into();
    a.user_id = user.map(str::to_string);
    a.username = user.map(|u| format!("name-{u}"));
    a.binding = binding.clone();
    a.token_type = if n.is_multiple_of(2) { TokenType::Jwt } else { TokenType::Opaque };
    let mut r = refresh(&format!("secret-rhash-{n}"), &format!("family-{n}"), &a.token_hash);
    r.id = format!("t{n:02}-r");
    r.client_id = client.into();
    r.user_id = a.user_id.clone();
    r.username = a.username.clone();
    r.binding = binding;
    (a, r)
}

async fn list_tokens_filters_and_pages(b: &Backend) {
    let s = &*b.store;
    let pairs = [
        pair(1, "app", Some("u1"), None),
        pair(2, "app", Some("u1"), bound(BindingType::Dpop, "jkt")),
        pair(3, "other", Some("u2"), bound(BindingType::Cookie, "atbv")),
        pair(4, "other", None, None),
    ];
    for (i, (a, r)) in pairs.iter().enumerate() {
        // Pair 4 is a client-credentials token: no refresh token.
        issue_plain(s, a.clone(), (i < 3).then(|| r.clone())).await;
    }
    s.revoke_access("secret-ahash-1", NOW + 1).await.unwrap();
    let q = |f: fn(&mut TokenQuery)| {
        let mut q = TokenQuery { limit: 100, ..Default::default() };
        f(&mut q);
        q
    };
    let ids = |v: &[TokenMeta]| v.iter().map(|t| t.id.clone()).collect::<Vec<_>>();

    let all = s.list_tokens(&q(|_| {})).await.unwrap();
    assert_eq!(ids(&all), ["t01-a", "t01-r", "t02-a", "t02-r", "t03-a", "t03-r", "t04-a"], "by public id");
    let shown = format!("{all:?}");
    assert!(!shown.contains("secret") && !shown.contains("derive"), "no hash or derivation id: {shown}");
    assert_eq!(
        all[0],
        TokenMeta {
            id: "t01-a".into(),
            refresh: false,
            format: TokenType::Opaque,
            client_id: "app".into(),
            username: Some("name-u1".into()),
            binding_type: None,
            issued_at: NOW,
            expires_at: NOW + HOUR,
            revoked_at: Some(NOW + 1),
        }
    );
    assert_eq!(all[1].revoked_at, Some(NOW + 1), "the pair was revoked with it");
    assert_eq!((all[1].refresh, all[1].format, all[1].expires_at), (true, TokenType::Opaque, NOW + 24 * HOUR));
    assert_eq!((all[2].format, all[2].binding_type), (TokenType::Jwt, Some(BindingType::Dpop)));
    assert_eq!(
        (all[3].refresh, all[3].format, all[3].binding_type),
        (true, TokenType::Opaque, Some(BindingType::Dpop))
    );

    let by_client = s.list_tokens(&q(|q| q.client_id = Some("other".into()))).await.unwrap();
    assert_eq!(ids(&by_client), ["t03-a", "t03-r", "t04-a"]);
    let by_user = s.list_tokens(&q(|q| q.user_id = Some("u1".into()))).await.unwrap();
    assert_eq!(ids(&by_user), ["t01-a", "t01-r", "t02-a", "t02-r"]);
    let cookie = s.list_tokens(&q(|q| q.binding = Some(BindingType::Cookie))).await.unwrap();
    assert_eq!(ids(&cookie), ["t03-a", "t03-r"]);
    let unbound = s.list_tokens(&q(|q| q.binding = Some(BindingType::None))).await.unwrap();
    assert_eq!(ids(&unbound), ["t01-a", "t01-r", "t04-a"]);
    let both = s.list_tokens(&q(|q| (q.client_id, q.user_id) = (Some("app".into()), Some("u2".into())))).await.unwrap();
    assert!(both.is_empty(), "every condition holds");

    // Pages of 3, each after the last id of the one before.
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page =
            s.list_tokens(&TokenQuery { after_id: after.clone(), limit: 3, ..Default::default() }).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|t| t.id.clone());
        pages.push(ids(&page));
    }
    assert_eq!(
        pages,
        [vec!["t01-a", "t01-r", "t02-a"], vec!["t02-r", "t03-a", "t03-r"], vec!["t04-a"]],
        "access and refresh tokens interleaved in one order"
    );
    let after_filtered = s
        .list_tokens(&TokenQuery {
            user_id: Some("u1".into()),
            after_id: Some("t01-r".into()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&after_filtered), ["t02-a"]);
}

async fn revoke_by_public_id_revokes_the_pair(b: &Backend) {
    let s = &*b.store;
    let (a1, r1) = pair(1, "app", Some("u1"), None);
    let (a2, r2) = pair(2, "app", Some("u1"), None);
    let (a3, r3) = pair(3, "app", Some("u1"), None);
    for (a, r) in [(&a1, &r1), (&a2, &r2), (&a3, &r3)] {
        issue_plain(s, a.clone(), Some(r.clone())).await;
    }
    // By an access token's jti: it and its refresh token.
    assert!(s.revoke_by_public_id("t01-a", NOW).await.unwrap());
    assert!(revoked(s, &a1.token_hash).await && refresh_revoked(s, &r1.token_hash).await);
    assert!(!s.revoke_by_public_id("t01-a", NOW + 5).await.unwrap(), "already revoked");
    assert!(!s.revoke_by_public_id("t01-r", NOW + 5).await.unwrap(), "its pair too");
    assert_eq!(s.find_access(&a1.token_hash).await.unwrap().unwrap().revoked_at, Some(NOW));
    // By a refresh token's id: it and its access token.
    assert!(s.revoke_by_public_id("t02-r", NOW).await.unwrap());
    assert!(refresh_revoked(s, &r2.token_hash).await && revoked(s, &a2.token_hash).await);
    assert!(!s.revoke_by_public_id("t02-a", NOW).await.unwrap());
    // Nothing else, and nothing for an unknown id or a value that is not a public id.
    for unknown in ["nope", a3.token_hash.as_str(), a3.id.as_str(), r3.token_hash.as_str()] {
        assert!(!s.revoke_by_public_id(unknown, NOW).await.unwrap(), "{unknown}");
    }
    assert!(!revoked(s, &a3.token_hash).await && !refresh_revoked(s, &r3.token_hash).await);
}

fn event(time: i64, seq: u32, kind: &str, client: Option<&str>, username: Option<&str>) -> EventRecord {
    EventRecord {
        // As `audit::event_us` makes them: the second first (time ranges select through it).
        id: format!("{}{:05x}{seq:08x}", tether_core::audit::id_floor(time), 0),
        time,
        kind: kind.into(),
        client_id: client.map(str::to_string),
        username: username.map(str::to_string),
        ip: Some("192.0.2.1".into()),
        user_agent: None,
        detail: serde_json::json!({"target": {"user": "bob"}, "n": seq, "ok": true}),
    }
}

async fn events_insert_list_and_purge(b: &Backend) {
    let s = &*b.store;
    let events = vec![
        event(NOW - 300, 1, "login", None, Some("alice")),
        event(NOW - 200, 2, "token", Some("app"), Some("alice")),
        event(NOW - 200, 3, "login_failed", None, Some("bob")),
        event(NOW - 100, 4, "token", Some("other"), None),
        event(NOW, 5, "app.update", Some("admin-cli"), Some("alice")),
    ];
    s.insert_events(&events).await.unwrap();
    s.insert_events(&[]).await.unwrap();
    let list = |f: fn(&mut EventQuery)| {
        let mut q = EventQuery { limit: 100, ..Default::default() };
        f(&mut q);
        async move { s.list_events(&q).await.unwrap() }
    };
    let seqs = |v: &[EventRecord]| v.iter().map(|e| e.detail["n"].as_u64().unwrap()).collect::<Vec<_>>();

    let all = list(|_| {}).await;
    assert_eq!(seqs(&all), [5, 4, 3, 2, 1], "newest first");
    assert_eq!(all[4], events[0], "read back as written, detail as JSON");
    assert_eq!(seqs(&list(|q| q.types = vec!["token".into(), "login".into()]).await), [4, 2, 1]);
    assert_eq!(seqs(&list(|q| q.since = Some(NOW - 200)).await), [5, 4, 3, 2]);
    assert_eq!(seqs(&list(|q| q.until = Some(NOW - 100)).await), [3, 2, 1]);
    assert_eq!(seqs(&list(|q| (q.since, q.until) = (Some(NOW - 200), Some(NOW - 199))).await), [3, 2]);
    assert_eq!(seqs(&list(|q| q.client_id = Some("app".into())).await), [2]);
    assert_eq!(seqs(&list(|q| q.username = Some("alice".into())).await), [5, 2, 1]);
    assert_eq!(
        seqs(&list(|q| (q.types, q.username) = (vec!["token".into()], Some("alice".into()))).await),
        [2],
        "every condition holds"
    );
    assert!(list(|q| q.types = vec!["unknown".into()]).await.is_empty());

    // Pages of 2 by cursor.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page =
            s.list_events(&EventQuery { before_id: before.clone(), limit: 2, ..Default::default() }).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id.clone());
        pages.push(seqs(&page));
    }
    assert_eq!(pages, [vec![5, 4], vec![3, 2], vec![1]]);

    // One transaction: a batch with a duplicate id stores nothing.
    let batch = [event(NOW + 10, 6, "login", None, None), events[0].clone()];
    assert!(matches!(s.insert_events(&batch).await, Err(StoreError::Conflict(_))));
    assert_eq!(list(|_| {}).await.len(), 5);

    // Purged oldest first by time, at most `limit` at once.
    assert_eq!(s.purge_events(NOW - 100, 2).await.unwrap(), 2);
    assert_eq!(s.purge_events(NOW - 100, 100).await.unwrap(), 1);
    assert_eq!(s.purge_events(NOW - 100, 100).await.unwrap(), 0);
    assert_eq!(seqs(&list(|_| {}).await), [5, 4]);
}

/// RFC 9126: a pushed request is usable until `expires_at` before its first use, then within
/// its use window until consumed, once.
async fn pushed_requests_live_until_first_use_then_until_consumed(b: &Backend) {
    let s = &*b.store;
    let params = vec![("client_id".to_string(), "app".to_string()), ("scope".into(), "openid \u{e9}".into())];
    let rec =
        ParRecord { uri_hash: "h1".into(), client_id: "app".into(), params: params.clone(), expires_at: NOW + 60 };
    s.insert_par(&rec).await.unwrap();
    s.insert_par(&ParRecord { uri_hash: "h2".into(), ..rec.clone() }).await.unwrap();
    assert!(s.use_par("nope", "app", NOW, 600).await.unwrap().is_none());
    assert!(s.use_par("h2", "other", NOW, 600).await.unwrap().is_none(), "another client's");
    assert!(s.use_par("h2", "app", NOW + 60, 600).await.unwrap().is_none(), "unused past expires_at");
    assert_eq!(s.use_par("h1", "app", NOW + 59, 600).await.unwrap(), Some(rec.clone()), "first use, params in order");
    assert_eq!(
        s.use_par("h1", "app", NOW + 600, 600).await.unwrap().map(|r| r.params),
        Some(params),
        "within the window"
    );
    assert!(s.use_par("h1", "app", NOW + 59 + 600, 600).await.unwrap().is_none(), "the window is from the first use");
    assert!(s.consume_par("h1", NOW + 100).await.unwrap());
    assert!(!s.consume_par("h1", NOW + 101).await.unwrap(), "once");
    s.insert_par(&ParRecord { uri_hash: "h3".into(), ..rec.clone() }).await.unwrap();
    assert!(s.use_par("h3", "app", NOW, 600).await.unwrap().is_some());
    assert!(s.consume_par("h3", NOW + 1).await.unwrap());
    assert!(s.use_par("h3", "app", NOW + 2, 600).await.unwrap().is_none(), "consumed");
    // Purged once every window is over.
    s.purge(NOW + 2000, 0, 100).await.unwrap();
    assert_eq!(b.raw.count("SELECT COUNT(*) FROM par_requests").await, 0);
}

/// FAPI 2.0 refresh: the refresh token is not rotated; it moves to the new access token and stays
/// active. Once revoked, nothing is issued from it (and nothing else is revoked).
async fn kept_refresh_token_stays_active_and_follows_the_new_access_token(b: &Backend) {
    let s = &*b.store;
    issue_plain(s, access("A1"), Some(refresh("R1", "F", "A1"))).await;
    let keep = |a: &str| {
        request(
            access(a),
            None,
            ReusePolicy::RevokePrevious { with_refresh: false },
            Precondition::KeepRefresh("R1".into()),
        )
    };
    for a in ["A2", "A3"] {
        assert!(matches!(s.issue(&keep(a)).await.unwrap(), IssueOutcome::Issued), "{a}");
        let r1 = s.find_refresh("R1").await.unwrap().unwrap();
        assert_eq!((r1.used_at, r1.revoked_at, r1.access_id.as_str()), (None, None, a), "kept, linked to {a}");
    }
    // Revoking the access token it is linked to takes the family with it, as for any refresh token.
    s.revoke_family("F", NOW).await.unwrap();
    assert!(revoked(s, "A3").await && refresh_revoked(s, "R1").await);
    assert!(matches!(s.issue(&keep("A4")).await.unwrap(), IssueOutcome::Replayed));
    assert!(s.find_access("A4").await.unwrap().is_none(), "nothing issued");
}

/// Back-channel logout queue: a session that ended (explicitly, by lifetime, by idle timeout)
/// queues one delivery per target app holding its tokens, once; a live session queues nothing; a
/// due delivery is claimed by one caller at a time; retry and finish.
async fn ended_sessions_queue_one_logout_per_app_and_deliveries_are_claimed_once(b: &Backend) {
    let s = &*b.store;
    for id in ["ended", "expired", "idle", "live"] {
        let mut x = session(id, "u1", NOW - 60);
        if id == "expired" {
            x.expires_at = NOW - 1;
        }
        s.create_session(&x).await.unwrap();
    }
    s.end_session("ended", NOW - 5).await.unwrap();
    let tok = |hash: &str, client: &str, sid: &str| {
        let mut a = access(hash);
        a.client_id = client.into();
        a.session_id = Some(sid.into());
        a
    };
    for (h, client, sid) in [
        ("E1", "app", "ended"),
        ("E2", "other", "ended"),
        ("E3", "silent", "ended"),
        ("X1", "app", "expired"),
        ("I1", "app", "idle"),
        ("L1", "app", "live"),
    ] {
        issue_plain(s, tok(h, client, sid), None).await;
    }
    let targets = vec![
        ("app".to_string(), "https://app.example/logout".to_string()),
        ("other".to_string(), "https://other.example/logout".to_string()),
    ];
    // "idle": last seen 60 s ago; idle_before = NOW - 30 makes it idle, "live" too (same age)
    // unless it was touched.
    s.touch_session("live", NOW).await.unwrap();
    let queued = s.queue_logouts(NOW, NOW - 30, &targets, 100).await.unwrap();
    assert_eq!(queued, 4, "ended: app + other; expired: app; idle: app; silent has no URI; live: none");
    assert_eq!(s.queue_logouts(NOW, NOW - 30, &targets, 100).await.unwrap(), 0, "each session once");

    let claimed = s.claim_logouts(NOW, NOW + 30, 100).await.unwrap();
    assert_eq!(claimed.len(), 4);
    assert!(s.claim_logouts(NOW, NOW + 30, 100).await.unwrap().is_empty(), "claimed: nobody else gets them");
    let d = claimed.iter().find(|d| d.client_id == "other").unwrap();
    assert_eq!(
        (d.uri.as_str(), d.sub.as_deref(), d.sid.as_deref(), d.created_at, d.attempts),
        ("https://other.example/logout", Some("u1"), Some("ended"), NOW, 0)
    );
    assert_eq!(d.id, tether_core::store::logout_delivery_id("ended", "other"));
    // One is retried later, the others finish.
    s.retry_logout(&d.id, NOW + 2, "HTTP 503").await.unwrap();
    for other in claimed.iter().filter(|x| x.id != d.id) {
        s.finish_logout(&other.id).await.unwrap();
    }
    assert!(s.claim_logouts(NOW + 1, NOW + 31, 100).await.unwrap().is_empty(), "not due yet");
    let again = s.claim_logouts(NOW + 2, NOW + 32, 100).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.as_str(), again[0].attempts), (d.id.as_str(), 1));
    // A claim that lapsed (the node died) is taken again.
    let lapsed = s.claim_logouts(NOW + 33, NOW + 63, 100).await.unwrap();
    assert_eq!(lapsed.len(), 1);
    s.finish_logout(&d.id).await.unwrap();
    assert!(s.claim_logouts(NOW + 100, NOW + 130, 100).await.unwrap().is_empty());
    assert_eq!(b.raw.count("SELECT COUNT(*) FROM logout_deliveries").await, 0);
}

async fn registration_tokens_are_kept_hashed_and_go_with_their_app(b: &Backend) {
    let s = &*b.store;
    s.create_app(&app_record("reg")).await.unwrap();
    assert_eq!(s.registration_token("reg").await.unwrap(), None);
    s.set_registration_token("reg", "h1").await.unwrap();
    s.set_registration_token("reg", "h2").await.unwrap();
    assert_eq!(s.registration_token("reg").await.unwrap().as_deref(), Some("h2"), "replaced");
    assert!(s.delete_app("reg", NOW).await.unwrap());
    assert_eq!(s.registration_token("reg").await.unwrap(), None, "deleted with the app");
}
