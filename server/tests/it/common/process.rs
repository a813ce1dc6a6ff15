//! Nodes as processes (the `segue` binary), for tests that need the real command line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use segue_net::NodeTls;

/// A child process killed (SIGKILL) when dropped.
pub struct Kid(pub Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The node binary: `segue` for the server's tests, `segue-lab` (whose hidden `origin` and
/// `edge` commands are `segue`'s, `segue_server::cli`) for the lab's, which share this file.
pub fn segue_bin() -> &'static str {
    option_env!("CARGO_BIN_EXE_segue")
        .or(option_env!("CARGO_BIN_EXE_segue-lab"))
        .expect("a test of segue-server or segue-lab")
}

pub fn segue(args: &[String], log: &Path) -> Kid {
    Kid(Command::new(segue_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap())
}

/// `<dir>/media` holding a copy of the shipped sample `file`.
pub fn media_with(dir: &Path, file: &str) -> PathBuf {
    let media = dir.join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../media/samples")
            .join(file),
        media.join(file),
    )
    .unwrap();
    media
}

/// A node's TLS flags.
pub fn tls_args(tls: &NodeTls) -> Vec<String> {
    let p = |p: &Path| p.display().to_string();
    vec![
        "--cert".to_string(),
        p(&tls.cert),
        "--key".into(),
        p(&tls.key),
        "--ca".into(),
        p(&tls.ca),
    ]
}

/// `segue edge` of the origin on 127.0.0.1:`origin_port`, caching in `cache`, on
/// 127.0.0.1:`port`, with `tls` (flags may follow).
pub fn edge_args(origin_port: u16, cache: &Path, port: u16, tls: &NodeTls) -> Vec<String> {
    let mut args = vec![
        "edge".to_string(),
        "--origin".into(),
        format!("segue://localhost:{origin_port}/"),
        "--cache-dir".into(),
        cache.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    args.extend(tls_args(tls));
    args
}

/// A node's Prometheus text from its admin API on 127.0.0.1:`port` (empty if it does not
/// answer within 2 s).
pub async fn admin_metrics(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let get = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        std::io::Result::Ok(out)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), get).await {
        Ok(Ok(out)) => out,
        _ => String::new(),
    }
}

/// `segue origin` of `media` into `data` on 127.0.0.1:`port`, with `tls` (flags may follow).
pub fn origin_args(media: &Path, data: &Path, port: u16, tls: &NodeTls) -> Vec<String> {
    let mut args = vec![
        "origin".to_string(),
        "--media".into(),
        media.display().to_string(),
        "--data".into(),
        data.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ];
    args.extend(tls_args(tls));
    args
}
