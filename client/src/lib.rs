//! # segue-client
//!
//! The player side of segue/1: connecting to a node over QUIC with a verified certificate and
//! driving the control stream. `segue-play` is built on it.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod play;
pub mod playout;
pub mod report;
pub mod session;

pub use play::{PlayOptions, play};
pub use report::Report;
pub use session::{ConnectOptions, ControlClient, StartCseqs, connect, connect_with};
