//! # segue-client
//!
//! The player side of segue/1: connecting to a node over QUIC with a verified certificate and
//! driving the control stream. `segue-play` is built on it.
//!
//! The play itself is a sans-IO state machine ([`player::Player`], with [`stream::MediaStream`]
//! turning a media stream's bytes into frames) driven by the async loop in [`play`].

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod play;
pub mod player;
pub mod playout;
mod record;
pub mod report;
pub mod session;
pub mod stream;
mod track;

pub use play::{PlayOptions, play};
pub use player::{PlayError, Player};
pub use report::Report;
pub use session::{ConnectOptions, ControlClient, StartCseqs, Tickets, connect, connect_with};
