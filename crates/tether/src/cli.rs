//! What every command shares: the global options and how they become settings, and the exit
//! codes of errors (2: usage, 1: runtime).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tether_server::{FileConfig, Overrides, Settings};

#[derive(Args, Clone)]
pub(crate) struct Global {
    /// TOML config file
    #[arg(long, env = "TETHER_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (SQLite database, master key, TLS material)
    #[arg(long, env = "TETHER_DATA_DIR", global = true)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH (default DATA_DIR/tether.db)
    #[arg(long, env = "TETHER_DATABASE_URL", global = true)]
    pub(crate) database_url: Option<String>,
    /// Say which database (and master key) a command uses
    #[arg(long, short, global = true)]
    pub(crate) verbose: bool,
}

pub(crate) fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

pub(crate) fn runtime_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

pub(crate) fn settings(g: &Global, extra: Overrides) -> Result<Settings, String> {
    let file = match &g.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let o = Overrides { data_dir: g.data_dir.clone(), database_url: g.database_url.clone(), ..extra };
    Settings::resolve(&o, file)
}
