//! TLS material named in the config, read and checked at load time so a bad file is a config
//! error (file, line, key) rather than a failure of every request: the extra CA roots of an
//! `https://` backend (`ca_file`), its server name (`tls_server_name`), and a mock's certificate
//! and key (`tls_cert`, `tls_key`). All files are PEM; relative paths are relative to the working
//! directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::types::MockTls;

/// Check that `name` can be sent as SNI and matched against a certificate (a DNS name or an IP).
///
/// # Errors
/// A human message naming the value.
pub(crate) fn check_server_name(name: &str) -> Result<(), String> {
    ServerName::try_from(name).map(|_| ()).map_err(|_| {
        format!("\"{name}\" is not a valid TLS server name (expected a DNS name or an IP address)")
    })
}

/// The certificates of `ca_file`, each checked to be usable as a trust anchor.
///
/// # Errors
/// The file cannot be read, is not PEM, holds no certificate or a certificate that does not parse.
pub(crate) fn ca_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = read_certs(path)?;
    for (i, c) in certs.iter().enumerate() {
        webpki::anchor_from_trusted_cert(c).map_err(|e| {
            format!(
                "certificate #{} in \"{}\" cannot be used as a root: {e}",
                i + 1,
                path.display()
            )
        })?;
    }
    Ok(certs)
}

/// The certificate chain of a mock (`tls_cert`): leaf first, the leaf checked to parse.
///
/// # Errors
/// As [`ca_roots`].
pub(crate) fn cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = read_certs(path)?;
    if let Some(leaf) = certs.first() {
        webpki::EndEntityCert::try_from(leaf).map_err(|e| {
            format!(
                "the first certificate in \"{}\" does not parse: {e}",
                path.display()
            )
        })?;
    }
    Ok(certs)
}

/// The private key of a mock (`tls_key`): the first PKCS#8, PKCS#1 or SEC1 key in the file.
///
/// # Errors
/// The file cannot be read, is not PEM or holds no private key.
pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!(
            "\"{}\" holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)",
            path.display()
        ),
        e => format!("\"{}\" is not valid PEM: {e}", path.display()),
    })
}

impl MockTls {
    /// Read and check a certificate chain and its key (as `aigw mock --tls-cert --tls-key` does).
    ///
    /// # Errors
    /// A message naming the file that is unreadable or wrong.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<MockTls, String> {
        Ok(MockTls {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            cert_chain: cert_chain(cert_file)?,
            key: Arc::new(private_key(key_file)?),
        })
    }
}

/// A path as written in the config: trimmed, not empty.
pub(crate) fn path_value(v: &str) -> Result<PathBuf, String> {
    match v.trim() {
        "" => Err("must not be empty (a path to a PEM file)".into()),
        p => Ok(PathBuf::from(p)),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read \"{}\": {e}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("\"{}\" is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "\"{}\" holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}
