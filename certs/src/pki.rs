//! Dev CA and node certificates.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::Error;

/// File names inside the PKI directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
/// Name of the certificate made for loopback use.
pub const LOCALHOST: &str = "localhost";
/// Default directory, relative to the repository root.
pub const DEFAULT_DIR: &str = "certs/dev";

const CA_NAME: &str = "Segue dev CA";
const VALID_DAYS: i64 = 825;

/// What [`init`] wrote or reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub ca_cert: PathBuf,
    pub ca_created: bool,
    /// `(name, cert path, key path)` for each leaf written.
    pub leaves: Vec<(String, PathBuf, PathBuf)>,
}

/// Paths of a node's certificate and key in `dir`.
pub fn leaf_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// The CA's parameters. Its name carries a fingerprint of its public key, so two dev CAs never
/// share a name (a verifier would otherwise try the wrong one) and reuse can rebuild it exactly.
fn ca_params(key: &KeyPair) -> CertificateParams {
    // FNV-1a over the public key: a label, not a security property.
    let fp = key
        .public_key_raw()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{CA_NAME} {fp:016x}"));
    dn.push(DnType::OrganizationName, "Segue development");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
    p
}

fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::NodeName(name.to_owned()))
    }
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// Creates `dir` with a dev CA (unless `ca.pem` and `ca.key` exist, which are reused) and a
/// certificate for `localhost` plus one per entry of `nodes`. Leaf certificates are valid for
/// their name and for `localhost`, `127.0.0.1` and `::1`, for both server and client
/// authentication (so the same files serve mTLS between nodes).
pub fn init(dir: &Path, nodes: &[String]) -> Result<Issued, Error> {
    let nodes: Vec<(String, Vec<String>)> = nodes.iter().map(|n| (n.clone(), Vec::new())).collect();
    init_with_aliases(dir, &nodes)
}

/// [`init`] for nodes known by more than one name: each `(name, aliases)` gets one
/// certificate, in `name`'s files, valid for `name` and every alias too (e.g. an address
/// players dial and the helper name its peers check).
pub fn init_with_aliases(dir: &Path, nodes: &[(String, Vec<String>)]) -> Result<Issued, Error> {
    for (n, aliases) in nodes {
        validate_name(n)?;
        for a in aliases {
            validate_name(a)?;
        }
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    let ca_cert = dir.join(CA_CERT);
    let ca_key_path = dir.join(CA_KEY);
    let ca_created = !(ca_cert.exists() && ca_key_path.exists());
    let ca_key = if ca_created {
        let key = KeyPair::generate()?;
        let cert = ca_params(&key).self_signed(&key)?;
        write_file(&ca_key_path, &key.serialize_pem(), true)?;
        write_file(&ca_cert, &cert.pem(), false)?;
        key
    } else {
        let pem = fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        KeyPair::from_pem(&pem).map_err(|e| Error::Pem {
            path: ca_key_path.clone(),
            reason: e.to_string(),
        })?
    };
    // Signing needs only the issuer's name and key; both are the same as when it was made.
    let issuer = Issuer::new(ca_params(&ca_key), ca_key);

    let mut names = vec![(LOCALHOST.to_owned(), Vec::new())];
    names.extend(nodes.iter().filter(|(n, _)| n != LOCALHOST).cloned());
    let mut leaves = Vec::new();
    for (name, aliases) in names {
        let mut sans = vec![name.clone()];
        for extra in aliases
            .iter()
            .map(String::as_str)
            .chain([LOCALHOST, "127.0.0.1", "::1"])
        {
            if !sans.iter().any(|s| s == extra) {
                sans.push(extra.to_owned());
            }
        }
        let mut p = CertificateParams::new(sans)?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, name.as_str());
        // No BasicConstraints extension at all: DER forbids encoding the default CA:FALSE,
        // and strict parsers (Python's cryptography, so aioquic) refuse a leaf that does.
        p.is_ca = IsCa::NoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = std::time::SystemTime::now();
        p.not_before = (now - std::time::Duration::from_secs(3600)).into();
        p.not_after = (now + std::time::Duration::from_secs(VALID_DAYS as u64 * 86_400)).into();
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        let (cert_path, key_path) = leaf_paths(dir, &name);
        write_file(&key_path, &key.serialize_pem(), true)?;
        write_file(&cert_path, &cert.pem(), false)?;
        leaves.push((name, cert_path, key_path));
    }
    Ok(Issued {
        ca_cert,
        ca_created,
        leaves,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_ca_and_leaves_and_reuses_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = init(dir.path(), &["edge-1".into()]).unwrap();
        assert!(first.ca_created);
        let names: Vec<_> = first.leaves.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(names, ["localhost", "edge-1"]);
        let ca_before = fs::read(dir.path().join(CA_CERT)).unwrap();
        let second = init(dir.path(), &["origin".into()]).unwrap();
        assert!(!second.ca_created);
        assert_eq!(fs::read(dir.path().join(CA_CERT)).unwrap(), ca_before);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(CA_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn leaves_carry_no_basic_constraints() {
        // DER must not encode the default CA:FALSE; strict parsers (Python's cryptography,
        // hence aioquic) refuse such a certificate. A leaf simply has no BasicConstraints.
        let dir = tempfile::tempdir().unwrap();
        let issued = init(dir.path(), &[]).unwrap();
        let oid = [0x06, 0x03, 0x55, 0x1d, 0x13]; // 2.5.29.19
        let der = |p: &Path| crate::tls::load_certs(p).unwrap()[0].as_ref().to_vec();
        let has = |d: &[u8]| d.windows(oid.len()).any(|w| w == oid);
        assert!(!has(&der(&issued.leaves[0].1)), "leaf");
        assert!(has(&der(&issued.ca_cert)), "the CA keeps its CA:TRUE");
    }

    #[test]
    fn an_aliased_leaf_is_valid_for_each_of_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = [("10.200.0.3".to_owned(), vec!["h-a1".to_owned()])];
        let issued = init_with_aliases(dir.path(), &nodes).unwrap();
        let (_, cert, _) = &issued.leaves[1];
        let der = crate::tls::load_certs(cert).unwrap().remove(0);
        for name in ["10.200.0.3", "h-a1", "localhost"] {
            assert!(crate::tls::certifies_name(&der, name), "{name}");
        }
        assert!(!crate::tls::certifies_name(&der, "h-a2"));
        let bad = [("10.200.0.3".to_owned(), vec!["a b".to_owned()])];
        assert!(matches!(
            init_with_aliases(dir.path(), &bad),
            Err(Error::NodeName(_))
        ));
    }

    #[test]
    fn rejects_bad_node_names() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "../x", "a/b", "-x", "a b"] {
            assert!(
                matches!(init(dir.path(), &[bad.into()]), Err(Error::NodeName(_))),
                "{bad}"
            );
        }
    }
}
