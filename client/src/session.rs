//! Connection set-up and the client end of the control stream.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use quinn::crypto::rustls::QuicClientConfig;
use segue_wire::control::{ControlDecoder, Message, Request, Response};
use segue_wire::{Limits, SegueUrl};

/// Connects to the node `url` names, verifying its certificate against `ca`, and returns the
/// connection with a control client on its first bidirectional stream.
pub async fn connect(
    url: &SegueUrl,
    ca: &Path,
    timeout: Duration,
) -> anyhow::Result<(quinn::Endpoint, quinn::Connection, ControlClient)> {
    let tls = segue_certs::tls::client_config(ca, &[segue_wire::ALPN])?;
    let quic = QuicClientConfig::try_from(tls).context("TLS config unusable for QUIC")?;
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let addr: SocketAddr = tokio::net::lookup_host((host, url.port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let mut ep = quinn::Endpoint::client(bind).context("cannot bind a UDP socket")?;
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let conn = tokio::time::timeout(timeout, ep.connect(addr, host)?)
        .await
        .with_context(|| format!("no answer from {addr} within {timeout:?}"))?
        .with_context(|| format!("QUIC/TLS handshake with {addr} failed"))?;
    let (send, recv) = conn
        .open_bi()
        .await
        .context("cannot open the control stream")?;
    Ok((ep, conn, ControlClient::new(send, recv)))
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
    pub async fn send(&mut self, req: &Request) -> anyhow::Result<()> {
        self.send.write_all(&req.encode()).await?;
        Ok(())
    }

    /// Writes bytes as they are (tests and tools that craft their own messages).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.send.write_all(bytes).await?;
        Ok(())
    }

    /// The next message from the server.
    pub async fn recv(&mut self) -> anyhow::Result<Message> {
        let mut buf = [0u8; 8192];
        loop {
            match self.dec.next_message() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => bail!("bad message from server: {e}"),
            }
            match self.recv.read(&mut buf).await? {
                Some(n) => self.dec.push(&buf[..n]),
                None => bail!("server closed the control stream"),
            }
        }
    }

    /// Sends one request and waits for its response (matched by CSeq).
    pub async fn request(&mut self, req: &Request) -> anyhow::Result<Response> {
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
