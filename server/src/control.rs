//! The control-stream loop: reads RTSP-style requests from the first bidirectional stream of a
//! connection and writes the responses a [`ControlHandler`] produces.

use quinn::{RecvStream, SendStream};
use segue_wire::control::{ControlDecoder, Message, Method, Request, Response, status};
use segue_wire::{AppError, Limits};

/// Answers control requests. Origin and edge implement it.
pub trait ControlHandler: Send {
    fn handle(&mut self, req: Request) -> impl std::future::Future<Output = Response> + Send;
}

/// Answers OPTIONS only; every other method gets 501. What a node serves before it has
/// media configured.
#[derive(Debug, Default)]
pub struct OptionsOnly;

impl ControlHandler for OptionsOnly {
    async fn handle(&mut self, req: Request) -> Response {
        match req.method {
            Method::Options => options_response(req.headers.cseq, &[Method::Options]),
            m => Response::error(
                status::NOT_IMPLEMENTED,
                req.headers.cseq,
                format!("{m} is not served by this node"),
            ),
        }
    }
}

/// The OPTIONS answer listing `methods`.
pub fn options_response(cseq: u32, methods: &[Method]) -> Response {
    let mut r = Response::new(status::OK, cseq);
    r.headers.public = methods.to_vec();
    r
}

/// Runs the control loop until the peer finishes the stream or breaks the protocol.
pub async fn serve_control<H: ControlHandler>(
    mut send: SendStream,
    mut recv: RecvStream,
    limits: Limits,
    handler: &mut H,
) -> anyhow::Result<()> {
    let mut dec = ControlDecoder::new(limits);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Drain every complete message before reading more (pipelined requests).
        loop {
            match dec.next_message() {
                Ok(None) => break,
                Ok(Some(Message::Request(req))) => {
                    let resp = handler.handle(req).await;
                    send.write_all(&resp.encode()).await?;
                }
                Ok(Some(Message::Response(_))) => {
                    // Answers to server-sent notifications need no action here.
                }
                Err(e) => {
                    let cseq = e.cseq.unwrap_or(0);
                    let resp = Response::error(e.status, cseq, e.error.to_string());
                    send.write_all(&resp.encode()).await?;
                    if e.fatal {
                        let _ = send.finish();
                        let code = match e.error {
                            segue_wire::DecodeError::TooLarge { .. } => AppError::LimitExceeded,
                            _ => AppError::ProtocolViolation,
                        };
                        recv.stop(code.code().try_into()?).ok();
                        anyhow::bail!("control stream closed: {}", e.error);
                    }
                }
            }
        }
        match recv.read(&mut buf).await? {
            Some(n) => dec.push(&buf[..n]),
            None => {
                let _ = send.finish();
                return Ok(());
            }
        }
    }
}
