//! Which backend a database URL names ([`Backend`]), and what a look at it without creating
//! anything finds ([`Probe`]).

/// Which backend a database URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH`, `sqlite:PATH` or a bare path.
    Sqlite(std::path::PathBuf),
    /// `postgres://…` / `postgresql://…`.
    Postgres(String),
}

impl Backend {
    /// Parse a database URL. Any other scheme (`mysql://…`) is refused, never taken for a file
    /// name.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Backend::Postgres(url.to_string()));
        }
        if let Some(p) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            return Ok(Backend::Sqlite(p.into()));
        }
        if let Some((scheme, _)) = url.split_once("://")
            && !scheme.is_empty()
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return Err(format!(
                "unsupported database URL scheme {scheme}:// (use sqlite://PATH or postgres://USER@HOST/DB)"
            ));
        }
        if url.trim().is_empty() {
            return Err("the database URL is empty".into());
        }
        Ok(Backend::Sqlite(url.into()))
    }

    /// For messages: the SQLite path, or the PostgreSQL URL without its password.
    pub fn display(&self) -> String {
        match self {
            Backend::Sqlite(p) => p.display().to_string(),
            Backend::Postgres(u) => match url::Url::parse(u) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("***"));
                    }
                    parsed.to_string()
                }
                Err(_) => "the PostgreSQL database".to_string(),
            },
        }
    }
}

/// What is at a database URL, found without creating or changing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// A Tether database (SQLite: the file; PostgreSQL: Tether's tables).
    pub exists: bool,
    /// It holds secrets sealed under a master key.
    pub sealed_keys: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(Backend::parse("sqlite://a/b.db"), Ok(Backend::Sqlite("a/b.db".into())));
        assert_eq!(Backend::parse("data/t.db"), Ok(Backend::Sqlite("data/t.db".into())));
        assert!(matches!(Backend::parse("postgresql://u@h/d"), Ok(Backend::Postgres(_))));
        let e = Backend::parse("mysql://u@h/d").unwrap_err();
        assert!(e.contains("mysql://"), "{e}");
        let shown = Backend::parse("postgres://u:secret@h/d").unwrap().display();
        assert!(!shown.contains("secret"), "{shown}");
    }
}
