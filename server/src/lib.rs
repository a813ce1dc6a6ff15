//! # segue-server
//!
//! The IO side of Segue's server nodes: QUIC endpoints (quinn) and the control-stream loop
//! that feeds `segue-wire`'s sans-IO decoders. The origin and edge build on this.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod admin;
pub mod admission;
pub mod anticipate;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod distribute;
pub mod edge;
pub mod files;
pub mod helper;
pub mod hq;
pub mod http3;
pub mod ingest;
pub mod library;
pub mod lru;
pub mod node;
pub mod origin;
pub mod packets;
pub mod peer;
pub mod placement;
pub mod push;
pub mod resumption;
pub mod segserve;
pub mod session;
pub mod source;
