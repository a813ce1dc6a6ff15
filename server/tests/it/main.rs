//! The server's integration tests, one binary: each module was a test binary of its own,
//! and every binary links the whole server (15 links on the 2-core CI box). Each test still
//! runs in its own process under nextest.

mod common;

mod access;
mod admin;
mod codecs;
mod config;
mod congestion;
mod control;
mod core_path;
mod cut_through;
mod distribution;
mod faults;
mod files;
mod handshake;
mod hq;
mod ingest;
mod limits;
mod media;
mod rtsp;
mod strangers;
