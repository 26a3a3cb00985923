//! `tether`: the one binary, the only crate that depends on all the others (it only parses
//! commands and wires crates together). `serve` runs the authorization server; `init` creates
//! what it needs and exits; `app`, `user`, `keys` and `events` act on an existing database
//! directly (no server needed, and they never create one), through the same admin operations as
//! the admin REST API; `tls ca` hands out the public local CA; `gateway` is the PoP reverse proxy.
//!
//! Exit status: 0 success, 1 a runtime failure (database, file system), 2 a usage error (bad flags
//! or a configuration that cannot work), each with a one-line reason on stderr.

mod admin;
mod cli;
mod logbuf;

/// jemalloc. Measured with bench/gateway (the gateway in front of a trivial API, CPU µs per
/// request): glibc malloc 62.9, mimalloc 54.0 (but 38 MB resident), jemalloc 43.7 (23 MB).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cli::{Global, runtime_error, settings, usage_error};
use tether_server::Overrides;

#[derive(Parser)]
#[command(
    name = "tether",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TETHER_GIT_COMMIT"), ")"),
    about = "OAuth 2.0 / OpenID Connect server whose tokens are bound to their holder"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

// Parsed once per process; its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run the authorization server (creating the database, master key and keys on first start)
    ///
    /// Example: tether serve --listen 0.0.0.0:9443 --issuer https://id.example.com
    Serve(ServeArgs),
    /// Create the data directory, database (or PostgreSQL schema), master key, signing keys and
    /// local CA, then exit
    ///
    /// Example: tether init --data-dir /var/lib/tether
    Init,
    /// Run the proof-of-possession gateway (SIGHUP reloads its configuration)
    ///
    /// Example: tether gateway --config gateway.toml
    Gateway(GatewayArgs),
    /// Manage applications (OAuth clients)
    #[command(subcommand)]
    App(admin::AppCmd),
    /// Manage users
    #[command(subcommand)]
    User(admin::UserCmd),
    /// Manage signing keys
    #[command(subcommand)]
    Keys(admin::KeysCmd),
    /// Show audit events, newest first
    ///
    /// Example: tether events --type binding.mismatch --since 2026-11-30T08:00:00Z
    Events(admin::EventsArgs),
    /// The local CA clients and gateways trust
    #[command(subcommand)]
    Tls(TlsCmd),
    /// Check that a running server (or gateway) answers its health check; exit 0 when it does.
    /// For container HEALTHCHECKs and readiness probes (the image has no curl).
    ///
    /// Example: tether health --url http://127.0.0.1:9465/healthz
    Health(HealthArgs),
    /// Write the apps and users (roles included) as one TOML document, for `tether apply`
    ///
    /// Example: tether export --out tether.toml
    Export {
        /// Also write client-secret hashes and argon2 password hashes (the file is then mode 0600);
        /// without them, apps and users come back without working credentials
        #[arg(long)]
        include_secrets: bool,
        /// The file to write (standard output when absent)
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Make the database match a document written by `tether export` (creating the database if
    /// there is none); idempotent
    ///
    /// Example: tether apply -f tether.toml --prune --dry-run
    Apply {
        /// The document (TOML)
        #[arg(short = 'f', long = "file")]
        file: std::path::PathBuf,
        /// Also delete the apps and users the document does not name
        #[arg(long)]
        prune: bool,
        /// Print the changes (+ create, ~ change, - delete) without making them
        #[arg(long)]
        dry_run: bool,
    },
    /// Take a consistent copy of the SQLite database while the server runs (never the master key)
    ///
    /// Example: tether backup --out /backups/tether-$(date +%F).db
    Backup {
        /// The file to write (must not exist; written with mode 0600)
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Restore a backup into an empty data directory (then put the master key beside it)
    ///
    /// Example: tether restore --data-dir /var/lib/tether /backups/tether-2026-11-30.db
    Restore {
        /// The backup file written by `tether backup`
        file: std::path::PathBuf,
    },
    /// Print a shell completion script
    ///
    /// Example: tether completions bash > /etc/bash_completion.d/tether
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (tether.1, tether-serve.1, …) into a directory
    ///
    /// Example: tether man --out /usr/local/share/man/man1
    Man {
        /// The directory (created when missing)
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Args)]
struct HealthArgs {
    /// The health URL (default: this configuration's `http_listen` /healthz, else
    /// https://localhost:PORT/healthz of `listen`, trusting the local CA)
    #[arg(long)]
    url: Option<String>,
    /// A CA certificate (PEM) to trust for an https URL (default: the data directory's local CA)
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Seconds to wait for the answer
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

#[derive(Subcommand)]
enum TlsCmd {
    /// Write the local CA certificate (public) to a file, or print it
    ///
    /// Example: tether tls ca --out ca.pem
    Ca {
        /// Where to write it (mode 0644); standard output when absent
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Args)]
struct GatewayArgs {
    /// Log format
    #[arg(long, env = "TETHER_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Args)]
struct ServeArgs {
    /// HTTPS listen address
    #[arg(long, env = "TETHER_LISTEN")]
    listen: Option<String>,
    /// Also serve plain HTTP here (behind a TLS-terminating proxy)
    #[arg(long, env = "TETHER_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// Prometheus /metrics listen address ("off" to disable)
    #[arg(long, env = "TETHER_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// Issuer URL (default https://localhost:PORT)
    #[arg(long, env = "TETHER_ISSUER")]
    issuer: Option<String>,
    /// Serve the admin API on this HTTPS address only ("off": on the main listener)
    #[arg(long, env = "TETHER_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Log format
    #[arg(long, env = "TETHER_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn init_logging(format: LogFormat, default: &str) {
    install_logging(format, default, std::io::stderr);
}

/// The logging of the long-running commands (`serve`, `gateway`): buffered ([`logbuf`]). Keep
/// the guard until the end: dropping it writes what is left.
fn init_background_logging(format: LogFormat, default: &str) -> logbuf::FlushGuard {
    let (writer, guard) = logbuf::buffered_stderr();
    // The access log's lines skip tracing's formatter (tether_tls::access's module docs say why).
    let layout = match format {
        LogFormat::Json => tether_tls::access::Layout::Json,
        LogFormat::Text => tether_tls::access::Layout::Text,
    };
    let access = writer.clone();
    tether_tls::access::set_writer(move |record| {
        thread_local!(static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        LINE.with_borrow_mut(|line| {
            line.clear();
            record.write(layout, log_time(), line);
            access.append(line);
        });
    });
    // So do the audit log's: `{"timestamp", "level", "event": "<the event as JSON text>"}` as
    // tracing's JSON formatter wrote them, or `<time>  INFO event=<JSON>` in text.
    let audit = writer.clone();
    tether_core::audit::set_log_writer(move |event| {
        thread_local!(static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) });
        LINE.with_borrow_mut(|line| {
            use tether_tls::access::{json_str, rfc3339_micros};
            line.clear();
            let now = log_time();
            if layout == tether_tls::access::Layout::Json {
                line.extend_from_slice(b"{\"timestamp\":\"");
                rfc3339_micros(now, line);
                line.extend_from_slice(b"\",\"level\":\"INFO\",\"event\":");
                json_str(event, line);
                line.extend_from_slice(b"}\n");
            } else {
                rfc3339_micros(now, line);
                line.extend_from_slice(b"  INFO event=");
                line.extend_from_slice(event.as_bytes());
                line.push(b'\n');
            }
            audit.append(line);
        });
    });
    install_logging(format, default, writer);
    guard
}

/// A log line's timestamp: wall-clock time, as tracing's formatter writes on every other line
/// (never a protocol decision, so not the injectable clock).
#[allow(clippy::disallowed_methods)]
fn log_time() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

fn install_logging<W>(format: LogFormat, default: &str, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // rustls warns once per connection about clients that send an IP address as SNI; not news.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},rustls=error")));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if format == LogFormat::Json {
        b.json().flatten_event(true).init();
    } else {
        b.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return runtime_error(format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Serve(a) => serve(&cli.global, a).await,
            Cmd::Gateway(a) => gateway(&cli.global, a).await,
            Cmd::App(c) => {
                init_logging(LogFormat::Text, "warn");
                admin::app(&cli.global, c).await
            }
            Cmd::User(c) => {
                init_logging(LogFormat::Text, "warn");
                admin::user(&cli.global, c).await
            }
            Cmd::Keys(c) => {
                init_logging(LogFormat::Text, "warn");
                admin::keys(&cli.global, c).await
            }
            Cmd::Events(a) => {
                init_logging(LogFormat::Text, "warn");
                admin::events(&cli.global, a).await
            }
            Cmd::Init => {
                init_logging(LogFormat::Text, "warn");
                init(&cli.global).await
            }
            Cmd::Tls(TlsCmd::Ca { out }) => tls_ca(&cli.global, out.as_deref()),
            Cmd::Health(a) => health(&cli.global, a).await,
            Cmd::Completions { shell } => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut cmd, "tether", &mut script);
                // A closed pipe (`| head`) is not an error worth a panic.
                let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
                ExitCode::SUCCESS
            }
            Cmd::Man { out } => man_pages(&out),
            Cmd::Backup { out } => backup(&cli.global, &out).await,
            Cmd::Export { include_secrets, out } => admin::export(&cli.global, include_secrets, out.as_deref()).await,
            Cmd::Apply { file, prune, dry_run } => admin::apply(&cli.global, &file, prune, dry_run).await,
            Cmd::Restore { file } => restore(&cli.global, &file).await,
        }
    })
}

const PG_BACKUP: &str = "this database is PostgreSQL: back it up with its own tools, e.g. \
    `pg_dump --format=custom --file tether.dump DATABASE_URL`, and restore with \
    `pg_restore --dbname NEW_DATABASE_URL tether.dump` (see docs/operations.md); keep the master key apart";

/// The SQLite database file of these settings, or the refusal for PostgreSQL.
fn sqlite_path(g: &Global) -> Result<(tether_server::Settings, std::path::PathBuf), ExitCode> {
    let s = settings(g, Overrides::default()).map_err(usage_error)?;
    match tether_store::Backend::parse(&s.database_url) {
        Ok(tether_store::Backend::Sqlite(p)) => Ok((s, p)),
        Ok(tether_store::Backend::Postgres(_)) => Err(usage_error(PG_BACKUP.to_string())),
        Err(e) => Err(usage_error(e)),
    }
}

/// `tether backup --out FILE`.
async fn backup(g: &Global, out: &std::path::Path) -> ExitCode {
    let (_, db) = match sqlite_path(g) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let (db2, out2) = (db.clone(), out.to_path_buf());
    match tokio::task::spawn_blocking(move || tether_store::backup_sqlite(&db2, &out2)).await {
        Ok(Ok(c)) => {
            println!(
                "backed up {} to {} ({} bytes, schema version {}); the master key is not in it: keep a copy of it apart",
                db.display(),
                out.display(),
                c.bytes,
                c.schema_version
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => runtime_error(e),
        Err(e) => runtime_error(e.to_string()),
    }
}

/// `tether restore FILE`.
async fn restore(g: &Global, file: &std::path::Path) -> ExitCode {
    let (s, db) = match sqlite_path(g) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Some(dir) = db.parent().filter(|d| !d.exists()) {
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
            return runtime_error(format!("cannot create {}: {e}", dir.display()));
        }
    }
    let (file2, db2) = (file.to_path_buf(), db.clone());
    match tokio::task::spawn_blocking(move || tether_store::restore_sqlite(&file2, &db2)).await {
        Ok(Ok(c)) => {
            println!("restored {} into {} (schema version {})", file.display(), db.display(), c.schema_version);
            if std::env::var_os("TETHER_MASTER_KEY").is_none() && !s.master_key_file.exists() {
                println!(
                    "next: put the backed-up installation's master key at {} (mode 0600) or set TETHER_MASTER_KEY: \
                     its keys are sealed under it, and `tether serve` refuses to start without it",
                    s.master_key_file.display()
                );
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => runtime_error(e),
        Err(e) => runtime_error(e.to_string()),
    }
}

/// `tether man --out DIR`: one page per command and subcommand (`tether-app-create.1`).
fn man_pages(out: &std::path::Path) -> ExitCode {
    fn write(cmd: &clap::Command, name: &str, out: &std::path::Path, n: &mut usize) -> std::io::Result<()> {
        // A one-shot command: the few names leaked here live until the process ends anyway.
        let cmd = cmd.clone().name(&*Box::leak(name.to_string().into_boxed_str()));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
        std::fs::write(out.join(format!("{name}.1")), buf)?;
        *n += 1;
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            write(sub, &format!("{name}-{}", sub.get_name()), out, n)?;
        }
        Ok(())
    }
    if let Err(e) = std::fs::create_dir_all(out) {
        return runtime_error(format!("cannot create {}: {e}", out.display()));
    }
    let mut cmd = <Cli as clap::CommandFactory>::command();
    cmd.build();
    let mut n = 0;
    match write(&cmd, "tether", out, &mut n) {
        Ok(()) => {
            println!("wrote {n} manual pages to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => runtime_error(format!("cannot write the manual pages to {}: {e}", out.display())),
    }
}

/// `tether health`: 0 when the URL answers 200, 1 otherwise (with the reason).
async fn health(g: &Global, a: HealthArgs) -> ExitCode {
    let (url, ca) = match a.url {
        Some(u) => (u, a.ca_file),
        None => {
            let s = match settings(g, Overrides::default()) {
                Ok(s) => s,
                Err(e) => return usage_error(e),
            };
            let local = |addr: std::net::SocketAddr| {
                if addr.ip().is_unspecified() {
                    std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
                } else {
                    addr
                }
            };
            match s.http_listen {
                Some(h) => (format!("http://{}/healthz", local(h)), a.ca_file),
                None => {
                    let ca = a.ca_file.or_else(|| Some(s.data_dir.join("tls/ca.pem")).filter(|p| p.exists()));
                    (format!("https://localhost:{}/healthz", s.listen.port()), ca)
                }
            }
        }
    };
    match tether_gateway::proxy::probe(&url, ca.as_deref(), std::time::Duration::from_secs(a.timeout.max(1))).await {
        Ok(200) => {
            println!("healthy: {url} answered 200");
            ExitCode::SUCCESS
        }
        Ok(code) => {
            eprintln!("unhealthy: {url} answered {code}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::from(1)
        }
    }
}

/// `tether init`.
async fn init(g: &Global) -> ExitCode {
    let s = match settings(g, Overrides::default()) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    match tether_server::init(&s).await {
        Ok(made) => {
            for line in made {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => runtime_error(e),
    }
}

/// `tether tls ca [--out FILE]`: the local CA certificate is public; gateways and clients need it,
/// and should not read the (private) data directory for it.
fn tls_ca(g: &Global, out: Option<&std::path::Path>) -> ExitCode {
    let s = match settings(g, Overrides::default()) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let path = s.data_dir.join("tls/ca.pem");
    let pem = match std::fs::read_to_string(&path) {
        Ok(p) => p,
        Err(e) => {
            return runtime_error(format!("no local CA at {} ({e}); run `tether init` first", path.display()));
        }
    };
    match out {
        None => {
            print!("{pem}");
            ExitCode::SUCCESS
        }
        Some(o) => {
            use std::os::unix::fs::PermissionsExt;
            let written = std::fs::write(o, &pem)
                .and_then(|_| std::fs::set_permissions(o, std::fs::Permissions::from_mode(0o644)));
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => runtime_error(format!("cannot write {}: {e}", o.display())),
            }
        }
    }
}

async fn serve(g: &Global, a: ServeArgs) -> ExitCode {
    let _log = init_background_logging(a.log_format, "info");
    let extra = Overrides {
        listen: a.listen,
        http_listen: a.http_listen,
        metrics_listen: a.metrics_listen,
        issuer: a.issuer,
        admin_listen: a.admin_listen,
        ..Default::default()
    };
    let settings = match settings(g, extra) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let settings_ca = settings.data_dir.join("tls/ca.pem");
    let running = match tether_server::start(settings, Arc::new(tether_core::clock::SystemClock)).await {
        Ok(r) => r,
        Err(e) => return runtime_error(e),
    };
    let announce = |scheme: &str, addr: std::net::SocketAddr| {
        if a.log_format == LogFormat::Json {
            tracing::info!(addr = %format!("{scheme}://{addr}"), "listening");
        } else {
            eprintln!("listening on {scheme}://{addr}");
        }
    };
    tracing::info!(issuer = %running.issuer, "tether serve ready");
    if settings_ca.exists() {
        tracing::info!(
            path = %settings_ca.display(),
            "local CA certificate (public: give clients and gateways a copy, e.g. `tether tls ca --out ca.pem`)"
        );
    }
    if let Some(m) = running.metrics_addr {
        tracing::info!(addr = %format!("http://{m}/metrics"), "metrics");
    }
    if let Some(m) = running.admin_addr {
        tracing::info!(addr = %format!("https://{m}/api/admin/v1"), "admin API listener");
    }
    if let Some(m) = running.mtls_addr {
        tracing::info!(addr = %format!("https://{m}"), "mutual-TLS listener (mtls_endpoint_aliases)");
    }
    announce("https", running.addr);
    if let Some(h) = running.http_addr {
        announce("http", h);
    }
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// `tether gateway --config FILE` (interface.md §3, gateway.md).
async fn gateway(g: &Global, a: GatewayArgs) -> ExitCode {
    let _log = init_background_logging(a.log_format, "info");
    let Some(path) = &g.config else {
        return usage_error("tether gateway needs --config FILE (or TETHER_CONFIG)");
    };
    let cfg = match tether_gateway::Config::load(path) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let running = match tether_gateway::server::start(cfg, Arc::new(tether_core::clock::SystemClock)).await {
        Ok(r) => r,
        Err(e) => return runtime_error(e),
    };
    if a.log_format == LogFormat::Json {
        tracing::info!(addr = %running.addr, "listening on https://{}", running.addr);
    } else {
        eprintln!("listening on https://{}", running.addr);
    }
    if let Some(m) = running.metrics_addr {
        tracing::info!(addr = %m, "health and metrics on http://{m}/ (healthz, readyz, metrics)");
    }
    let running = Arc::new(running);
    let reloader = tokio::spawn(reload_on_hangup(path.clone(), running.clone()));
    wait_for_signal().await;
    reloader.abort();
    let _ = reloader.await;
    match Arc::try_unwrap(running) {
        Ok(r) => r.shutdown().await,
        Err(_) => tracing::warn!("stopping without draining: the gateway is still referenced"),
    }
    ExitCode::SUCCESS
}

/// `SIGHUP`: read the configuration file again and apply what can change while running
/// (`tether_gateway::server::Running::reload`); a file that does not validate is refused, logged,
/// and the running configuration kept.
async fn reload_on_hangup(path: std::path::PathBuf, running: Arc<tether_gateway::server::Running>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            let applied = tether_gateway::Config::load(&path).and_then(|cfg| running.reload(&cfg));
            if let Err(e) = applied {
                tracing::error!(error = %e, "configuration not reloaded; the running one is kept");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, running);
        std::future::pending::<()>().await;
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
