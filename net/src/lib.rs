//! Segue's QUIC layer, shared by the nodes and the player: endpoints with segue/1's
//! transport limits and a node's TLS (`endpoint`), the congestion controllers and loss
//! detection settings (`transport`, with Segue's own `model`), qlog traces (`qlog`), and
//! the server socket that keeps a reordered handshake's first requests (`handshake_hold`),
//! and the typed errors of a stream's exchange (`stream`).
//! No segue/1 message is parsed here: that is `segue-wire`'s.

pub mod alpn;
pub mod endpoint;
pub mod handshake_hold;
pub mod qlog;
pub mod stream;
pub mod transport;

pub use endpoint::{
    Dialer, Error, NodeQlog, NodeTls, TransportLimits, client_endpoint, server_config,
    server_endpoint,
};
pub use qlog::Qlog;
pub use stream::{StreamError, app_code};
pub use transport::{Congestion, TransportSettings};
