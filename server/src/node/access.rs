//! Signed URLs (docs/SECURITY.md, "Signed URLs"): a token grants one object until a time,
//! optionally to one client address. The edge and the service that hands out URLs share a
//! secret key (as with nginx's `secure_link`); two keys may be active at once, so a key is
//! rotated by adding the new one, moving the signer to it, and removing the old one once its
//! URLs have expired.
//!
//! ```text
//! token = base64url(HMAC-SHA256(key, "segue-token-1\n" object "\n" expires "\n" ip))
//! ```
//!
//! `object` is the object name (`movies/demo`, or a file object `movies/demo.mp4`), `expires`
//! Unix seconds in decimal, `ip` the client's address (IPv4 dotted, IPv6 as RFC 5952) or empty
//! for a URL any client may use. The grant travels as `expires=E&token=T` in the URL's query,
//! a `Segue-Token` header (control, HTTP/3) or a TOKEN parameter (segment protocol).

use std::net::IpAddr;
use std::path::Path;

use ring::hmac;
use segue_wire::token::Grant;

/// Keys at most active at once (the current one and the one being retired).
pub const MAX_KEYS: usize = 2;
/// Shortest key, in bytes.
pub const MIN_KEY: usize = 16;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No grant at all: 401.
    #[error("this node requires a signed URL (expires=...&token=...)")]
    Missing,
    /// A grant that is malformed, expired, for another object or address, or not signed by a
    /// key of ours: 403.
    #[error("signed URL refused: {0}")]
    Refused(&'static str),
}

impl Denied {
    /// The RTSP / HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Denied::Missing => 401,
            Denied::Refused(_) => 403,
        }
    }
}

/// The verification keys of a node.
pub struct Keys {
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} active)", self.keys.len())
    }
}

fn message(object: &str, expires: u64, ip: Option<IpAddr>) -> String {
    let ip = ip.map(|a| a.to_canonical().to_string()).unwrap_or_default();
    format!("segue-token-1\n{object}\n{expires}\n{ip}")
}

/// The query string of a signed URL for `object` until `expires`, bound to `ip` if given:
/// `expires=E&token=T`.
pub fn grant(key: &[u8], object: &str, expires: u64, ip: Option<IpAddr>) -> String {
    let sig = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        message(object, expires, ip).as_bytes(),
    );
    let mut tag = [0u8; 32];
    tag.copy_from_slice(sig.as_ref());
    Grant { expires, tag }.to_query()
}

/// The grant a request carries: in its URL's query, else in a `Segue-Token` header.
pub fn grant_of(query: Option<&str>, header: Option<&str>) -> Option<Result<Grant, ()>> {
    query
        .and_then(Grant::from_query)
        .or_else(|| header.and_then(Grant::from_query))
        .map(|r| r.map_err(|_| ()))
}

/// Why a key file or a set of secrets is unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read token keys {}: {error}", path.display())]
    Read {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error("1 to {MAX_KEYS} keys, got {0}")]
    Count(usize),
    #[error("a key of {0} bytes: at least {MIN_KEY} are needed")]
    Short(usize),
    #[error("token keys {}: {error}", path.display())]
    In {
        path: std::path::PathBuf,
        error: Box<KeyError>,
    },
}

impl Keys {
    /// Keys from secrets (1 or 2, each at least [`MIN_KEY`] bytes).
    pub fn new(secrets: &[Vec<u8>]) -> Result<Self, KeyError> {
        if secrets.is_empty() || secrets.len() > MAX_KEYS {
            return Err(KeyError::Count(secrets.len()));
        }
        if let Some(s) = secrets.iter().find(|s| s.len() < MIN_KEY) {
            return Err(KeyError::Short(s.len()));
        }
        Ok(Self {
            keys: secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s))
                .collect(),
        })
    }

    /// Keys from a file (see [`secrets_from_file`]).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        Self::new(&secrets_from_file(path)?).map_err(|e| KeyError::In {
            path: path.to_owned(),
            error: Box::new(e),
        })
    }

    /// Whether `grant` (`None`: the request has none; `Err`: a malformed one) lets `peer`
    /// have `object` at `now` (Unix seconds).
    pub fn check(
        &self,
        object: &str,
        grant: Option<Result<Grant, ()>>,
        peer: IpAddr,
        now: u64,
    ) -> Result<(), Denied> {
        let g = match grant {
            None => return Err(Denied::Missing),
            Some(Err(())) => return Err(Denied::Refused("malformed expires or token")),
            Some(Ok(g)) => g,
        };
        if g.expires < now {
            return Err(Denied::Refused("expired"));
        }
        // Unbound grants first, then grants bound to this client's address; any active key.
        let ok = [None, Some(peer)].iter().any(|ip| {
            let m = message(object, g.expires, *ip);
            self.keys
                .iter()
                .any(|k| hmac::verify(k, m.as_bytes(), &g.tag).is_ok())
        });
        if ok {
            Ok(())
        } else {
            Err(Denied::Refused(
                "not signed for this object and address by a current key",
            ))
        }
    }
}

/// The secrets of a key file: one per line (its bytes as written, at least [`MIN_KEY`]), `#`
/// comments and blank lines skipped, at most [`MAX_KEYS`]. The first one signs
/// (`segue token`); all verify.
pub fn secrets_from_file(path: &Path) -> Result<Vec<Vec<u8>>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|error| KeyError::Read {
        path: path.to_owned(),
        error,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.as_bytes().to_vec())
        .collect())
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    crate::clock::unix_now() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &[u8] = b"0123456789abcdef-one";
    const K2: &[u8] = b"0123456789abcdef-two";

    /// [`Keys::check`] of a query string.
    fn check_query(
        keys: &Keys,
        object: &str,
        query: Option<&str>,
        peer: IpAddr,
        now: u64,
    ) -> Result<(), Denied> {
        keys.check(object, grant_of(query, None), peer, now)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn grants_are_checked_by_object_time_address_and_key() {
        let keys = Keys::new(&[K1.to_vec()]).unwrap();
        let peer = ip("192.0.2.7");
        let g = grant(K1, "movies/demo", 1000, None);
        assert_eq!(
            check_query(&keys, "movies/demo", Some(&g), peer, 999),
            Ok(())
        );
        assert_eq!(
            check_query(&keys, "movies/demo", Some(&g), peer, 1000),
            Ok(())
        );
        // expired, other object, tampered expiry, missing, malformed
        assert!(matches!(
            check_query(&keys, "movies/demo", Some(&g), peer, 1001),
            Err(Denied::Refused("expired"))
        ));
        assert!(matches!(
            check_query(&keys, "movies/other", Some(&g), peer, 0),
            Err(Denied::Refused(_))
        ));
        let later = g.replace("expires=1000", "expires=9000");
        assert!(matches!(
            check_query(&keys, "movies/demo", Some(&later), peer, 0),
            Err(Denied::Refused(_))
        ));
        assert_eq!(
            check_query(&keys, "movies/demo", None, peer, 0),
            Err(Denied::Missing)
        );
        assert_eq!(
            check_query(&keys, "movies/demo", Some("a=b"), peer, 0),
            Err(Denied::Missing)
        );
        assert!(matches!(
            check_query(&keys, "movies/demo", Some("expires=x&token=y"), peer, 0),
            Err(Denied::Refused(_))
        ));
        // Parameters in another order, among others.
        let (e, t) = g.split_once('&').unwrap();
        assert_eq!(
            check_query(&keys, "movies/demo", Some(&format!("x=1&{t}&{e}")), peer, 0),
            Ok(())
        );
        // Bound to an address: that address only (an IPv4-mapped IPv6 peer is the same).
        let bound = grant(K1, "a", 1000, Some(peer));
        assert_eq!(check_query(&keys, "a", Some(&bound), peer, 0), Ok(()));
        assert_eq!(
            check_query(&keys, "a", Some(&bound), ip("::ffff:192.0.2.7"), 0),
            Ok(())
        );
        assert!(check_query(&keys, "a", Some(&bound), ip("192.0.2.8"), 0).is_err());
        // Another key's grant is refused.
        assert!(check_query(&keys, "a", Some(&grant(K2, "a", 1000, None)), peer, 0).is_err());
    }

    #[test]
    fn two_keys_during_a_rotation() {
        let both = Keys::new(&[K1.to_vec(), K2.to_vec()]).unwrap();
        let peer = ip("2001:db8::1");
        for k in [K1, K2] {
            assert_eq!(
                check_query(&both, "a", Some(&grant(k, "a", 5, None)), peer, 0),
                Ok(())
            );
        }
        let new_only = Keys::new(&[K2.to_vec()]).unwrap();
        assert!(check_query(&new_only, "a", Some(&grant(K1, "a", 5, None)), peer, 0).is_err());
        assert!(Keys::new(&[]).is_err());
        assert!(Keys::new(&[K1.to_vec(), K1.to_vec(), K2.to_vec()]).is_err());
        assert!(Keys::new(&[b"short".to_vec()]).is_err());
    }

    #[test]
    fn spec_example() {
        // docs/SECURITY.md (computed there with Python's hmac module): key
        // "segue-example-key-1", object movies/demo, expires 1767225600.
        let key = b"segue-example-key-1";
        assert_eq!(
            grant(key, "movies/demo", 1_767_225_600, None),
            "expires=1767225600&token=RhPHPVMbO_HjE9VXkCvo7xnXy6Qu8fCo5eLfj0g3jA8"
        );
        assert_eq!(
            grant(key, "movies/demo", 1_767_225_600, Some(ip("192.0.2.7"))),
            "expires=1767225600&token=4_rCDcT_BYjxPLlo4zgm3s7uu6xK5u23WgpPiyd6j00"
        );
    }
}
