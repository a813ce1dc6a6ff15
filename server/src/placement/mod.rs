//! Prefix placement: which segments of which objects an edge keeps, and how long prefixes
//! must be. Pure logic (no IO, explicit time), shared by the edge and the lab's simulator.
//!
//! - [`hint`]: operator hints (anticipated demand): parsing, who a hint is for, when to act.
//! - [`link`]: the prefix a link needs (connection-aware length).
//! - [`popularity`]: request counts with exponential decay (measured usage).
//! - [`watch`]: how far viewers watch (a survival curve learned from session ends).
//! - [`value`]: what a cached segment is worth, and the plan that fills a capacity with the
//!   most valuable segments (always whole prefixes; eviction in reverse order of value).

pub mod hint;
pub mod link;
pub mod popularity;
pub mod value;
pub mod watch;
