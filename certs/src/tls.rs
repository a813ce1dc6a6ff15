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
    server_with(Arc::new(rustls::server::NoClientAuth), cert, key, alpn)
}

/// [`server_config`] that also asks clients for a certificate chaining to the CA in `ca`
/// (nodes authenticating to each other: mTLS). A client without one is let in
/// unauthenticated (players have none); one presenting a certificate that does not verify is
/// refused in the handshake. The application decides what an unauthenticated peer may do.
pub fn server_config_with_client_ca(
    cert: &Path,
    key: &Path,
    ca: &Path,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, Error> {
    // The server's own files first: their errors are the likelier ones.
    load_certs(cert)?;
    load_key(key)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(load_roots(ca)?),
        provider(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| Error::Pem {
        path: ca.to_owned(),
        reason: format!("cannot verify clients with this CA: {e}"),
    })?;
    server_with(verifier, cert, key, alpn)
}

fn server_with(
    clients: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(clients)
        .with_single_cert(load_certs(cert)?, load_key(key)?)?;
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    // TLS secrets go to the file SSLKEYLOGFILE names, if set (to decrypt captures).
    cfg.key_log = Arc::new(rustls::KeyLogFile::new());
    Ok(cfg)
}

/// A client configuration like [`client_config`] that presents `cert`/`key` when the server
/// asks (a node connecting to another node).
pub fn client_config_presenting(
    ca: &Path,
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, Error> {
    client_with(provider(), ca, alpn, Some((cert, key)))
}

/// Whether `cert` (already verified, e.g. a peer's certificate after the handshake) is valid
/// for the DNS name `name`, as a server certificate would be: how a node's name is bound to
/// its certificate.
pub fn certifies_name(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(server_name) = rustls_pki_types::ServerName::try_from(name) else {
        return false;
    };
    rustls::server::ParsedCertificate::try_from(cert)
        .and_then(|c| rustls::client::verify_server_name(&c, &server_name))
        .is_ok()
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
    client_with(provider, ca, alpn, None)
}

fn client_with(
    provider: Arc<CryptoProvider>,
    ca: &Path,
    alpn: &[&[u8]],
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(load_roots(ca)?);
    let mut cfg = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?,
        None => builder.with_no_client_auth(),
    };
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

    #[test]
    fn node_certificates_carry_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let issued = crate::init(dir.path(), &["edge-a".into()]).unwrap();
        let (name, cert, key) = &issued.leaves[1];
        assert_eq!(name, "edge-a");
        let der = &load_certs(cert).unwrap()[0];
        assert!(certifies_name(der, "edge-a"));
        assert!(certifies_name(der, "localhost"));
        assert!(!certifies_name(der, "edge-b"));
        assert!(!certifies_name(der, "not a name"));
        server_config_with_client_ca(cert, key, &issued.ca_cert, &[b"segue/1"]).unwrap();
        client_config_presenting(&issued.ca_cert, cert, key, &[b"segue/1"]).unwrap();
        // The CA's key is not a certificate chain.
        assert!(client_config_presenting(&issued.ca_cert, key, key, &[]).is_err());
    }
}
