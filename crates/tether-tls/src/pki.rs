//! TLS material of `tether serve`: on first start a local CA (`DATA_DIR/tls/ca.pem`) and a server
//! certificate for `localhost` and `127.0.0.1` signed by it; or the operator's `[tls] cert_file`.
//!
//! Everything Tether keeps in a data directory is private to its user, whatever the umask: the
//! directories are created 0700 ([`create_private_dir`]) and every file 0600 ([`write_private`]),
//! the public `ca.pem` included (it may stay so inside a 0700 directory). [`wider_than_private`]
//! finds what an operator (or an older version) left readable by others, for the start-up warning.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

pub struct TlsMaterial {
    /// Leaf first, then the CA.
    pub chain_pem: String,
    pub key_pem: String,
}

/// Write a file readable and writable by its owner only (0600), whatever the umask and whatever
/// mode an existing file had; the mode is set before any byte is written.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(data)?;
    f.sync_all()
}

/// Create a directory (and its missing parents) accessible by its owner only (0700), whatever the
/// umask. A directory that already exists is left as it is (see [`wider_than_private`]).
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        b.mode(0o700).create(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    b.create(path)
}

/// `dir` and what lies up to two levels below it (Tether's files and `tls/`; symbolic links are
/// not followed) whose mode gives the group or others any access, with that mode (`& 0o7777`).
/// Empty on platforms without Unix modes.
pub fn wider_than_private(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut todo = vec![(dir.to_path_buf(), 0)];
        while let Some((p, depth)) = todo.pop() {
            let Ok(meta) = fs::symlink_metadata(&p) else { continue };
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                out.push((p.clone(), mode));
            }
            if meta.is_dir()
                && depth < 2
                && let Ok(entries) = fs::read_dir(&p)
            {
                todo.extend(entries.filter_map(Result::ok).map(|e| (e.path(), depth + 1)));
            }
        }
        out.sort();
    }
    #[cfg(not(unix))]
    let _ = dir;
    out
}

/// Load the local CA and server certificate from `DATA_DIR/tls`, creating them if absent.
pub fn ensure_local(data_dir: &Path) -> Result<TlsMaterial, String> {
    let dir = data_dir.join("tls");
    create_private_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let p = |n: &str| -> PathBuf { dir.join(n) };
    let (ca_pem, ca_key_pem) = if p("ca.pem").exists() && p("ca-key.pem").exists() {
        (read(&p("ca.pem"))?, read(&p("ca-key.pem"))?)
    } else {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        // A unique name: two Tether CAs (a server's and a gateway's) trusted side by side must
        // not share a subject, or chain building picks the wrong one.
        let tag = tether_core::secret::hex(&tether_core::secret::random_bytes::<4>());
        params.distinguished_name.push(DnType::CommonName, format!("Tether local CA {tag}"));
        params.distinguished_name.push(DnType::OrganizationName, "Tether");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        write_private(&p("ca-key.pem"), key.serialize_pem().as_bytes()).map_err(|e| e.to_string())?;
        write_private(&p("ca.pem"), cert.pem().as_bytes()).map_err(|e| e.to_string())?;
        // A new CA invalidates any server certificate signed by an old one.
        let _ = fs::remove_file(p("server.pem"));
        (cert.pem(), key.serialize_pem())
    };
    if !(p("server.pem").exists() && p("server-key.pem").exists()) {
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| e.to_string())?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| e.to_string())?;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| e.to_string())?;
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        write_private(&p("server-key.pem"), key.serialize_pem().as_bytes()).map_err(|e| e.to_string())?;
        write_private(&p("server.pem"), cert.pem().as_bytes()).map_err(|e| e.to_string())?;
    }
    let leaf = read(&p("server.pem"))?;
    Ok(TlsMaterial { chain_pem: format!("{leaf}{ca_pem}"), key_pem: read(&p("server-key.pem"))? })
}

pub fn from_files(cert: &Path, key: &Path) -> Result<TlsMaterial, String> {
    Ok(TlsMaterial { chain_pem: read(cert)?, key_pem: read(key)? })
}

fn read(p: &Path) -> Result<String, String> {
    fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}
