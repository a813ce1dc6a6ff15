//! # segue-interop
//!
//! The client side of Segue's interop tests (`interop/run.sh`): downloads over HTTP/0.9
//! (hq-interop) and HTTP/3 with the interop runner's cases (resumption, 0-RTT, key update,
//! ChaCha20), telling resumed sessions apart. It is `segue-lab hq get`, and the server's
//! tests use it against `segue hq serve` and nodes' `--files-listen`. The production server
//! (`segue-server`) does not link it; the servers it talks to are there (`files::hq`,
//! `files::http3`).

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod client;
pub mod download;
mod h3;
mod verifier;

pub use client::{Client, ClientOptions, IDLE_TIMEOUT, client_endpoint, get};
pub use download::Download;
pub use h3::get as get_h3;
