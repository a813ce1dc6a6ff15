//! rustls configurations from PEM files, always with the ring provider and TLS 1.3.
//! Servers present a certificate; clients verify it against a CA file. There is no option to
//! skip verification.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// The one crypto provider of the tree.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(path: &Path) -> impl FnOnce(rustls_pki_types::pem::Error) -> Error + '_ {
    move |e| Error::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Reads every certificate in a PEM file (leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(path))?;
    if certs.is_empty() {
        return Err(Error::Pem {
            path: path.to_owned(),
            reason: "no certificate in file".into(),
        });
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(pem_err(path))
}

/// Trust anchors from a CA file.
pub fn load_roots(ca: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// A TLS 1.3 server configuration presenting `cert`/`key` and offering `alpn`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert)?, load_key(key)?)?;
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    // TLS secrets go to the file SSLKEYLOGFILE names, if set (to decrypt captures).
    cfg.key_log = Arc::new(rustls::KeyLogFile::new());
    Ok(cfg)
}

/// A TLS 1.3 client configuration trusting only the CA in `ca` and offering `alpn`.
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, Error> {
    client_config_with(provider(), ca, alpn)
}

/// [`client_config`] over another provider (e.g. [`provider`] with fewer cipher suites).
pub fn client_config_with(
    provider: Arc<CryptoProvider>,
    ca: &Path,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, Error> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(load_roots(ca)?)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    cfg.key_log = Arc::new(rustls::KeyLogFile::new());
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_from_generated_files() {
        let dir = tempfile::tempdir().unwrap();
        let issued = crate::init(dir.path(), &[]).unwrap();
        let (_, cert, key) = &issued.leaves[0];
        let s = server_config(cert, key, &[b"segue/1"]).unwrap();
        assert_eq!(s.alpn_protocols, vec![b"segue/1".to_vec()]);
        client_config(&issued.ca_cert, &[b"segue/1"]).unwrap();
        // A key file is not a certificate file.
        assert!(client_config(key, &[]).is_err());
        assert!(server_config(&dir.path().join("missing.pem"), key, &[]).is_err());
    }
}
