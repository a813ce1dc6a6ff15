//! Connection set-up and the client end of the control stream.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use segue_wire::control::{
    ControlDecoder, Message, Method, NptRange, Request, Response, Transport,
};
use segue_wire::{Limits, SegueUrl};

use segue_net::StreamError;
use segue_net::transport::TransportSettings;

/// Why a connection to a node could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] segue_certs::Error),
    #[error("TLS config unusable for QUIC")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("cannot resolve {host}: {error}")]
    Resolve { host: String, error: std::io::Error },
    #[error("{0} has no address")]
    NoAddress(String),
    #[error("cannot bind a UDP socket to {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        addr: SocketAddr,
        error: quinn::ConnectError,
    },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("QUIC/TLS handshake with {addr} failed: {error}")]
    Handshake {
        addr: SocketAddr,
        error: quinn::ConnectionError,
    },
    #[error("cannot open the control stream: {0}")]
    ControlStream(quinn::ConnectionError),
}

/// Where and how a player's connection is made, beyond the URL.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// The local address to send from (a lab player's own address); any by default.
    pub bind: Option<IpAddr>,
    pub transport: TransportSettings,
    /// Never resume a TLS session (no ticket kept or offered, no 0-RTT) and keep no
    /// address-validation tokens.
    pub no_resume: bool,
    /// Keep tickets and tokens here instead of in the process's store: one viewer's own
    /// (a lab's returning viewer resumes its own sessions, not another viewer's).
    pub tickets: Option<Tickets>,
}

/// One viewer's TLS session tickets and address-validation tokens, in memory, with the TLS
/// configs made for them (rustls resumes a session only under the config it was made with).
/// Clones share them.
#[derive(Clone, Default)]
pub struct Tickets(Arc<TicketsInner>);

#[derive(Default)]
struct TicketsInner {
    tokens: Arc<quinn::TokenMemoryCache>,
    configs: std::sync::Mutex<Vec<(std::path::PathBuf, Arc<rustls::ClientConfig>)>>,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tickets")
    }
}

impl Tickets {
    /// The TLS config for `ca` with this viewer's tickets, made by `build` the first time.
    fn config(
        &self,
        ca: &Path,
        build: impl FnOnce(
            rustls::client::Resumption,
        ) -> Result<Arc<rustls::ClientConfig>, ConnectError>,
    ) -> Result<Arc<rustls::ClientConfig>, ConnectError> {
        let mut configs = self.0.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = configs.iter().find(|(p, _)| p == ca) {
            return Ok(c.clone());
        }
        // A viewer talks to few nodes: a handful of tickets each is plenty.
        let store = Arc::new(rustls::client::ClientSessionMemoryCache::new(8));
        let c = build(rustls::client::Resumption::store(store))?;
        configs.push((ca.to_path_buf(), c.clone()));
        Ok(c)
    }
}

/// The TLS session tickets of this process, by server name: a later connection to the same
/// node resumes and sends its first requests as 0-RTT data. In memory only: rustls offers
/// no way to write a client ticket to disk (rustls/rustls#2287), so a new `segue-play`
/// process starts with a full handshake.
fn tickets() -> Arc<dyn rustls::client::ClientSessionStore> {
    static STORE: std::sync::OnceLock<Arc<rustls::client::ClientSessionMemoryCache>> =
        std::sync::OnceLock::new();
    STORE
        .get_or_init(|| Arc::new(rustls::client::ClientSessionMemoryCache::new(64)))
        .clone()
}

/// The QUIC address-validation tokens of this process (NEW_TOKEN frames, RFC 9000 §8.1.3),
/// by server name: a later connection to the same node presents one, so the node may send
/// more than three times what it received before the handshake completes (a resumed play's
/// first keyframe in its first flight). In memory, as the tickets.
fn tokens() -> Arc<dyn quinn::TokenStore> {
    static STORE: std::sync::OnceLock<Arc<quinn::TokenMemoryCache>> = std::sync::OnceLock::new();
    STORE
        .get_or_init(|| Arc::new(quinn::TokenMemoryCache::default()))
        .clone()
}

/// The TLS config of connections verified against `ca`. Resuming ones share one config per
/// CA for the process (or for the viewer, with [`ConnectOptions::tickets`]): rustls resumes
/// a session only under the verifier it was made with.
fn tls_config(ca: &Path, opts: &ConnectOptions) -> Result<Arc<rustls::ClientConfig>, ConnectError> {
    let build = |resumption| -> Result<Arc<rustls::ClientConfig>, ConnectError> {
        let mut tls = segue_certs::tls::client_config(ca, &[segue_wire::ALPN])?;
        tls.resumption = resumption;
        // Offered only with a ticket; whether requests go early is the caller's choice
        // (`connect_early`).
        tls.enable_early_data = true;
        Ok(Arc::new(tls))
    };
    if opts.no_resume {
        return build(rustls::client::Resumption::disabled());
    }
    if let Some(t) = &opts.tickets {
        return t.config(ca, build);
    }
    static CONFIGS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, Arc<rustls::ClientConfig>>>,
    > = std::sync::OnceLock::new();
    let configs = CONFIGS.get_or_init(Default::default);
    let mut configs = configs.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = configs.get(ca) {
        return Ok(c.clone());
    }
    let c = build(rustls::client::Resumption::store(tickets()))?;
    configs.insert(ca.to_path_buf(), c.clone());
    Ok(c)
}

/// A connection as [`connect_early`] makes it: the control client, and, when the first
/// requests may go as 0-RTT data, whether the node accepted them (resolves with the
/// handshake).
pub struct Early {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub control: ControlClient,
    pub zero_rtt: Option<quinn::ZeroRttAccepted>,
}

/// Connects to the node `url` names, verifying its certificate against `ca`, and returns the
/// connection with a control client on its first bidirectional stream.
pub async fn connect(
    url: &SegueUrl,
    ca: &Path,
    timeout: Duration,
) -> Result<(quinn::Endpoint, quinn::Connection, ControlClient), ConnectError> {
    connect_with(url, ca, timeout, &ConnectOptions::default()).await
}

/// [`connect`] from a given source address and with given transport settings.
pub async fn connect_with(
    url: &SegueUrl,
    ca: &Path,
    timeout: Duration,
    opts: &ConnectOptions,
) -> Result<(quinn::Endpoint, quinn::Connection, ControlClient), ConnectError> {
    let e = connect_early(url, ca, timeout, opts, false).await?;
    Ok((e.endpoint, e.conn, e.control))
}

/// [`connect_with`], returning before the handshake completes when a ticket allows 0-RTT
/// (`early`) and `opts` does not forbid resumption. The caller sends its requests at once;
/// if the node then rejects the 0-RTT data ([`Early::zero_rtt`] resolves `false`) the
/// streams opened so far are gone and must be opened and written again.
pub async fn connect_early(
    url: &SegueUrl,
    ca: &Path,
    timeout: Duration,
    opts: &ConnectOptions,
    early: bool,
) -> Result<Early, ConnectError> {
    let quic = QuicClientConfig::try_from(tls_config(ca, opts)?)?;
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let addr: SocketAddr = tokio::net::lookup_host((host, url.port))
        .await
        .map_err(|error| ConnectError::Resolve {
            host: host.to_owned(),
            error,
        })?
        .next()
        .ok_or_else(|| ConnectError::NoAddress(host.to_owned()))?;
    let bind = match opts.bind {
        Some(ip) => SocketAddr::new(ip, 0),
        None if addr.is_ipv6() => SocketAddr::new(IpAddr::from([0u16; 8]), 0),
        None => SocketAddr::new(IpAddr::from([0u8; 4]), 0),
    };
    let mut ep =
        quinn::Endpoint::client(bind).map_err(|error| ConnectError::Bind { addr: bind, error })?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(opts.transport.config()));
    match (&opts.tickets, opts.no_resume) {
        (_, true) => {}
        (Some(t), false) => {
            cfg.token_store(t.0.tokens.clone());
        }
        (None, false) => {
            cfg.token_store(tokens());
        }
    }
    if let Some(q) = segue_net::qlog::Qlog::from_env() {
        cfg = q.client_config(&cfg, opts.transport.config(), addr);
    }
    ep.set_default_client_config(cfg);
    let connecting = ep
        .connect(addr, host)
        .map_err(|error| ConnectError::Connect { addr, error })?;
    let handshake = |connecting: quinn::Connecting| async move {
        tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ConnectError::Timeout { addr, timeout })?
            .map_err(|error| ConnectError::Handshake { addr, error })
    };
    // Only with a ticket can requests go before the handshake completes.
    let (conn, zero_rtt) = if early {
        match connecting.into_0rtt() {
            Ok((conn, accepted)) => (conn, Some(accepted)),
            Err(connecting) => (handshake(connecting).await?, None),
        }
    } else {
        (handshake(connecting).await?, None)
    };
    let (send, recv) = conn.open_bi().await.map_err(ConnectError::ControlStream)?;
    Ok(Early {
        endpoint: ep,
        conn,
        control: ControlClient::new(send, recv),
        zero_rtt,
    })
}

/// CSeqs of the pipelined start's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartCseqs {
    pub describe: u32,
    pub setup: u32,
    pub play: u32,
}

/// Sends requests on the control stream and reads responses.
pub struct ControlClient {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    dec: ControlDecoder,
    next_cseq: u32,
}

impl ControlClient {
    pub fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        Self {
            send,
            recv,
            dec: ControlDecoder::new(Limits::default()),
            next_cseq: 1,
        }
    }

    /// The CSeq the next request gets.
    pub fn next_cseq(&mut self) -> u32 {
        let c = self.next_cseq;
        self.next_cseq = self.next_cseq.wrapping_add(1);
        c
    }

    /// Writes requests without waiting (pipelining).
    pub async fn send(&mut self, req: &Request) -> Result<(), StreamError> {
        self.send.write_all(&req.encode()).await?;
        Ok(())
    }

    /// Sends the pipelined start of PROTOCOL.md §5.4 for `object`: DESCRIBE, an aggregate SETUP
    /// binding track i to flow i, and PLAY from `start_us`, in one write. Returns their CSeqs.
    pub async fn start(
        &mut self,
        object: &SegueUrl,
        start_us: u64,
        unpaced: bool,
    ) -> Result<StartCseqs, StreamError> {
        let describe = Request::new(Method::Describe, Some(object.clone()), self.next_cseq());
        let mut setup = Request::new(Method::Setup, Some(object.clone()), self.next_cseq());
        setup.headers.transport = Some(Transport { flow_id: 0 });
        setup.headers.pipelined_requests = Some(1);
        let mut play = Request::new(Method::Play, Some(object.clone()), self.next_cseq());
        play.headers.pipelined_requests = Some(1);
        play.headers.range = Some(NptRange {
            start: start_us,
            end: None,
        });
        play.headers.unpaced = unpaced;
        let mut flight = describe.encode();
        flight.extend(setup.encode());
        flight.extend(play.encode());
        self.send_raw(&flight).await?;
        Ok(StartCseqs {
            describe: describe.headers.cseq,
            setup: setup.headers.cseq,
            play: play.headers.cseq,
        })
    }

    /// Writes bytes as they are (tests and tools that craft their own messages).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        self.send.write_all(bytes).await?;
        Ok(())
    }

    /// The next message from the server.
    pub async fn recv(&mut self) -> Result<Message, StreamError> {
        let mut buf = [0u8; 8192];
        loop {
            match self.dec.next_message() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => {
                    return Err(StreamError::violation(format!(
                        "bad message from server: {e}"
                    )));
                }
            }
            match self.recv.read(&mut buf).await? {
                Some(n) => self.dec.push(&buf[..n]),
                None => {
                    return Err(StreamError::violation("server closed the control stream"));
                }
            }
        }
    }

    /// Sends one request and waits for its response (matched by CSeq).
    pub async fn request(&mut self, req: &Request) -> Result<Response, StreamError> {
        self.send(req).await?;
        loop {
            if let Message::Response(r) = self.recv().await?
                && r.headers.cseq == req.headers.cseq
            {
                return Ok(r);
            }
        }
    }
}
