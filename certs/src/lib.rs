//! # segue-certs
//!
//! The dev PKI: [`init`] writes a dev CA and certificates for `localhost` and named nodes into a
//! directory (default `certs/dev`), reusing the CA if one is there. [`tls`] builds rustls
//! configurations from such files; peers are always verified, there is no "insecure" mode.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod pki;
pub mod tls;

pub use pki::{Issued, init, init_with_aliases};

/// Errors of the dev PKI and TLS setup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    Pem {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid node name {0:?}: use letters, digits, '-' and '.'")]
    NodeName(String),
}
