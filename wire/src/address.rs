//! `segue://` URLs and object names.
//!
//! An object is named by its path relative to the origin's media root, without the file
//! extension (one object may exist in several formats). Names are restricted so that they can
//! never escape a directory: see [`ObjectName`].

use std::fmt;

use crate::error::DecodeError;

/// URL scheme of segue/1.
pub const SCHEME: &str = "segue";
/// Default UDP port of segue/1 when a URL has none.
pub const DEFAULT_PORT: u16 = 8554;
/// Most path components in an object name.
pub const MAX_DEPTH: usize = 16;
/// Prefix of the last path component that addresses one track of an object.
pub const TRACK_PREFIX: &str = "track=";

/// A validated object name: `/`-separated components of `[A-Za-z0-9._~-]`, none empty, none
/// starting with `.`, at most [`MAX_DEPTH`] components and `max_object_name` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName(String);

impl ObjectName {
    /// Validates `name` (without leading `/`).
    pub fn new(name: &str, max_len: usize) -> Result<Self, DecodeError> {
        if name.is_empty() {
            return Err(DecodeError::Url("empty object name".into()));
        }
        if name.len() > max_len {
            return Err(DecodeError::TooLarge {
                what: "object name",
                size: name.len() as u64,
                limit: max_len as u64,
            });
        }
        let mut depth = 0;
        for part in name.split('/') {
            depth += 1;
            if part.is_empty() {
                return Err(DecodeError::Url(format!(
                    "empty path component in {name:?}"
                )));
            }
            if part.starts_with('.') {
                return Err(DecodeError::Url(format!(
                    "path component {part:?} starts with '.'"
                )));
            }
            if let Some(c) = part
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-')))
            {
                return Err(DecodeError::Url(format!(
                    "character {c:?} not allowed in object name {name:?}"
                )));
            }
        }
        if depth > MAX_DEPTH {
            return Err(DecodeError::Url(format!(
                "object name has {depth} components, limit is {MAX_DEPTH}"
            )));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's components, for mapping onto a directory tree.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a URL's path addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `segue://host/` — the server itself (OPTIONS, keep-alive).
    Server,
    /// `segue://host/<object>` — an object (aggregate control URL).
    Object(ObjectName),
    /// `segue://host/<object>/track=<n>` — one track of an object.
    Track(ObjectName, u32),
}

impl Resource {
    pub fn object(&self) -> Option<&ObjectName> {
        match self {
            Resource::Server => None,
            Resource::Object(o) | Resource::Track(o, _) => Some(o),
        }
    }
}

/// A parsed `segue://host[:port]/path[?query]` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegueUrl {
    /// Host as written in the URL (IPv6 literals keep their brackets).
    pub host: String,
    pub port: u16,
    pub resource: Resource,
    /// Query string without `?`; reserved for access tokens, ignored where unsupported.
    pub query: Option<String>,
}

impl SegueUrl {
    pub fn parse(s: &str) -> Result<Self, DecodeError> {
        // `url` resolves dot segments while parsing; refuse them before it can.
        let after_scheme = s.split_once("://").map_or(s, |(_, rest)| rest);
        let path = after_scheme.split(['?', '#']).next().unwrap_or("");
        if path.split('/').skip(1).any(|c| c == "." || c == "..") || path.contains('%') {
            return Err(DecodeError::Url(format!(
                "{s:?}: dot segments and percent-encoding are not allowed"
            )));
        }
        let url = url::Url::parse(s).map_err(|e| DecodeError::Url(format!("{s:?}: {e}")))?;
        Self::from_url(&url)
    }

    /// Same as [`SegueUrl::parse`] with an explicit object-name length limit.
    pub fn from_url_with_limit(url: &url::Url, max_name: usize) -> Result<Self, DecodeError> {
        if url.scheme() != SCHEME {
            return Err(DecodeError::Url(format!(
                "scheme must be {SCHEME}://, got {}://",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| DecodeError::Url(format!("{url}: no host")))?
            .to_owned();
        let host_ok = host.len() <= 253
            && if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                v6.parse::<std::net::Ipv6Addr>().is_ok()
            } else {
                host.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            };
        if !host_ok {
            return Err(DecodeError::Url(format!(
                "{host:?} is not a host name or IP address"
            )));
        }
        if url.username() != "" || url.password().is_some() {
            return Err(DecodeError::Url("user info is not allowed".into()));
        }
        if url.fragment().is_some() {
            return Err(DecodeError::Url("fragments are not allowed".into()));
        }
        let port = url.port().unwrap_or(DEFAULT_PORT);
        let path = url.path().strip_prefix('/').unwrap_or(url.path());
        let resource = if path.is_empty() {
            Resource::Server
        } else {
            match path.rsplit_once('/') {
                Some((object, last)) if last.starts_with(TRACK_PREFIX) => {
                    let n = &last[TRACK_PREFIX.len()..];
                    if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(DecodeError::Url(format!("bad track number {n:?}")));
                    }
                    let n: u32 = n
                        .parse()
                        .map_err(|_| DecodeError::Url(format!("bad track number {n:?}")))?;
                    Resource::Track(ObjectName::new(object, max_name)?, n)
                }
                _ => Resource::Object(ObjectName::new(path, max_name)?),
            }
        };
        Ok(Self {
            host,
            port,
            resource,
            query: url.query().map(str::to_owned),
        })
    }

    pub fn from_url(url: &url::Url) -> Result<Self, DecodeError> {
        Self::from_url_with_limit(url, crate::Limits::default().max_object_name)
    }

    /// The same server, another resource.
    pub fn with_resource(&self, resource: Resource) -> Self {
        Self {
            host: self.host.clone(),
            port: self.port,
            resource,
            query: None,
        }
    }

    /// The aggregate URL of the object this URL names (itself for an object URL).
    pub fn object_url(&self) -> Option<Self> {
        self.resource
            .object()
            .map(|o| self.with_resource(Resource::Object(o.clone())))
    }

    pub fn to_url(&self) -> url::Url {
        // The Display form always parses: host and names are validated.
        #[allow(clippy::expect_used)]
        url::Url::parse(&self.to_string()).expect("a SegueUrl always formats to a valid URL")
    }
}

impl fmt::Display for SegueUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}://{}:{}/", self.host, self.port)?;
        match &self.resource {
            Resource::Server => {}
            Resource::Object(o) => write!(f, "{o}")?,
            Resource::Track(o, n) => write!(f, "{o}/{TRACK_PREFIX}{n}")?,
        }
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for SegueUrl {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_object_track_and_server() {
        let u = SegueUrl::parse("segue://edge.example:9000/movies/big-buck_bunny").unwrap();
        assert_eq!(u.host, "edge.example");
        assert_eq!(u.port, 9000);
        assert_eq!(
            u.resource,
            Resource::Object(ObjectName::new("movies/big-buck_bunny", 1024).unwrap())
        );
        let t = SegueUrl::parse("segue://[::1]/a/track=1").unwrap();
        assert_eq!(t.host, "[::1]");
        assert_eq!(t.port, DEFAULT_PORT);
        assert!(matches!(t.resource, Resource::Track(ref o, 1) if o.as_str() == "a"));
        assert_eq!(t.to_string(), "segue://[::1]:8554/a/track=1");
        assert_eq!(
            SegueUrl::parse("segue://h").unwrap().resource,
            Resource::Server
        );
    }

    #[test]
    fn rejects_escapes_and_junk() {
        for bad in [
            "segue://h/../etc/passwd",
            "segue://h/a/../../b",
            "segue://h/.hidden",
            "segue://h/a//b",
            "segue://h/a%2F..",
            "segue://h/a b",
            "http://h/a",
            "segue:///a",
            "segue://u:p@h/a",
            "segue://h/a#frag",
            "segue://h/a/track=",
            "segue://h/a/track=99999",
            "segue://h/a/track=x",
            // Found by the url fuzz target: control characters became an opaque host.
            "\u{1}segue://\u{1b}\u{1b}ed\u{0}",
            "segue://ho%20st/a",
            "segue://[zz::1]/a",
        ] {
            assert!(SegueUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn name_limits() {
        assert!(ObjectName::new(&"a".repeat(1025), 1024).is_err());
        assert!(ObjectName::new(&["a"; 17].join("/"), 1024).is_err());
        assert!(ObjectName::new(&["a"; 16].join("/"), 1024).is_ok());
    }
}
