//! TLS material of `tether serve`: on first start a local CA (`DATA_DIR/tls/ca.pem`) and a server
//! certificate for `localhost` and `127.0.0.1` signed by it; or the operator's `[tls] cert_file`.
//! Private keys are written with mode 0600.

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

pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Load the local CA and server certificate from `DATA_DIR/tls`, creating them if absent.
pub fn ensure_local(data_dir: &Path) -> Result<TlsMaterial, String> {
    let dir = data_dir.join("tls");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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
        fs::write(p("ca.pem"), cert.pem()).map_err(|e| e.to_string())?;
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
        fs::write(p("server.pem"), cert.pem()).map_err(|e| e.to_string())?;
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
