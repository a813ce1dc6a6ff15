//! # segue-lab
//!
//! Segue's tooling, apart from the production server: the continuity lab (an impairment
//! model and relays, the packet-level network of namespaces and TUN devices, scenarios, a
//! player population, the runner, the matrix, nginx-HLS for comparison, tables and plots),
//! the demo, the bench and the soak. Nodes are started as the `segue` binary starts them
//! (`segue_server::origin::Origin::start`, `segue_server::edge::node::Edge::start`, or
//! this crate's binary's node commands, which run `segue_server::cli`).

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub use segue_impair::{impair, relay};

pub mod bench;
pub mod bulk;
pub mod cpulimit;
pub mod demo;
pub mod fabric;
pub mod hls;
pub mod loopback;
pub mod matrix;
pub mod netns;
pub mod nodes;
pub mod plot;
pub mod population;
pub mod rtsp_probe;
pub mod run;
pub mod scenario;
pub mod sim;
pub mod soak;
pub mod summary;
