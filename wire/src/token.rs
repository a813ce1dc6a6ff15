//! Signed-URL grants (docs/SECURITY.md, "Signed URLs"): an expiry and an HMAC-SHA256 tag over
//! the object, the expiry and optionally the client address. This module only carries them
//! (query string, `Segue-Token` header, TOKEN parameter); nodes compute and check the tag.

use base64::Engine as _;

use crate::error::DecodeError;

/// A grant as a URL carries it: `expires=E&token=T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Unix seconds after which it is refused.
    pub expires: u64,
    /// HMAC-SHA256 tag.
    pub tag: [u8; 32],
}

impl Grant {
    /// The grant in a query string or `Segue-Token` value (`expires=E&token=T`, other
    /// parameters ignored, any order): `None` if it has neither, an error if malformed.
    pub fn from_query(q: &str) -> Option<Result<Self, DecodeError>> {
        let (mut expires, mut token) = (None, None);
        for pair in q.split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = Some(v),
                Some(("token", v)) => token = Some(v),
                _ => {}
            }
        }
        if expires.is_none() && token.is_none() {
            return None;
        }
        let bad = || DecodeError::Malformed("signed URL: bad expires or token");
        let parse = || {
            let expires = expires?.parse::<u64>().ok()?;
            let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token?)
                .ok()?
                .try_into()
                .ok()?;
            Some(Grant { expires, tag })
        };
        Some(parse().ok_or_else(bad))
    }

    /// `expires=E&token=T`.
    pub fn to_query(&self) -> String {
        format!(
            "expires={}&token={}",
            self.expires,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.tag)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_forms() {
        let g = Grant {
            expires: 1_767_225_600,
            tag: [7; 32],
        };
        let q = g.to_query();
        assert_eq!(Grant::from_query(&q).unwrap().unwrap(), g);
        let (e, t) = q.split_once('&').unwrap();
        assert_eq!(
            Grant::from_query(&format!("x=1&{t}&{e}")).unwrap().unwrap(),
            g
        );
        assert!(Grant::from_query("x=1").is_none());
        assert!(Grant::from_query("").is_none());
        for bad in [
            "expires=1",
            "token=AAAA",
            "expires=x&token=BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc",
            "expires=1&token=short",
            "expires=1&token=!!!",
        ] {
            assert!(Grant::from_query(bad).unwrap().is_err(), "{bad}");
        }
    }
}
