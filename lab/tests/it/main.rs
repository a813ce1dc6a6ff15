//! segue-lab's integration tests, one binary: the lab end to end (scenarios, matrix cells,
//! the packet-level network), in-process helper networks, the bench's processes. The
//! server's test support (`server/tests/it/common`) is shared, not copied; nodes started as
//! processes are this crate's binary's `origin` and `edge` commands, which are `segue`'s.

#[path = "../../../server/tests/it/common/mod.rs"]
mod common;
mod support;

mod bench;
mod fabric;
mod helpers;
mod interop;
mod lab;
