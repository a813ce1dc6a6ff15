//! # segue-server
//!
//! The IO side of Segue's server nodes: QUIC endpoints (quinn) and the control-stream loop
//! that feeds `segue-wire`'s sans-IO decoders. The origin and edge build on this.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod clock;
pub mod config;
pub mod cooperation;
pub mod edge;
pub mod files;
pub mod layout;
pub mod lru;
pub mod node;
pub mod origin;
pub mod placement;
