//! # segue-impair
//!
//! Impaired links for Segue's lab and tests: `impair`, a sans-IO seeded link model (delay,
//! jitter with or without reordering, random and Gilbert-Elliott loss, duplication, a rate
//! limit behind a queue, blackholes, changes mid-run), and `relay`, UDP and TCP relays that
//! move real packets through it. The packet-level network (`segue-lab`'s `fabric`) uses the
//! same model.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod impair;
pub mod relay;
