//! nginx as the lab's HLS origin and caching edge: configs written to the run's temp dir,
//! processes started and stopped by the runner (SIGTERM on drop, so nothing outlives a run).
//! Loopback only.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::loopback::NodeTls;

/// Finds nginx (`SEGUE_NGINX`, then PATH, then /usr/sbin), installing the Debian package
/// when running as root on a machine with apt-get and it is missing.
pub async fn binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SEGUE_NGINX") {
        return Ok(PathBuf::from(p));
    }
    let find = || {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/sbin")])
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    if is_root() && Path::new("/usr/bin/apt-get").exists() {
        tracing::info!("nginx not found: installing the Debian package");
        let st = tokio::process::Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "nginx"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .await
            .context("running apt-get")?;
        if !st.success() {
            bail!("apt-get install nginx failed ({st})");
        }
        if let Some(p) = find() {
            return Ok(p);
        }
    }
    bail!("nginx is needed for the HLS comparison: apt-get install nginx, or set SEGUE_NGINX")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// Where an nginx runs: a namespace (the lab's packet-level network) or this one, and the
/// address it listens on.
#[derive(Debug, Clone)]
pub struct Place {
    pub ns: Option<String>,
    pub addr: SocketAddr,
}

impl Place {
    /// This namespace, a free loopback port (bound then released: nginx binds it right after).
    pub fn loopback() -> anyhow::Result<Self> {
        Ok(Self {
            ns: None,
            addr: TcpListener::bind("127.0.0.1:0")?.local_addr()?,
        })
    }
}

/// Counts from an edge's access log.
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
    pub upstream_bytes: u64,
}

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    child: Option<tokio::process::Child>,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(tokio::process::Child::id) {
            // The master's fast shutdown stops its workers too; SIGKILL would orphan them.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Nginx {
    /// Stops nginx and waits for it to exit.
    pub async fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(5), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
    }

    /// What the access log says (edges only): requests answered from the cache and from
    /// upstream (`$upstream_cache_status`), and body bytes received from upstream.
    pub fn cache_counts(&self) -> CacheCounts {
        let log = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        let mut c = CacheCounts::default();
        for l in log.lines() {
            let mut f = l.split('|');
            match f.next() {
                Some("HIT") => c.hits += 1,
                Some("MISS" | "EXPIRED" | "UPDATING" | "STALE" | "BYPASS") => c.misses += 1,
                _ => {}
            }
            // "$upstream_response_length": "-" on hits; "a, b" when several upstream
            // requests served one client request (slices).
            if let Some(rest) = f.next() {
                c.upstream_bytes += rest
                    .split(',')
                    .filter_map(|v| v.trim().parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
        c
    }

    async fn start(
        nginx: &Path,
        dir: &Path,
        http_block: &str,
        place: &Place,
    ) -> anyhow::Result<Self> {
        for d in [
            "tmp/client",
            "tmp/proxy",
            "tmp/fastcgi",
            "tmp/uwsgi",
            "tmp/scgi",
        ] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let d = dir.display();
        let user = if is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}worker_processes 1;\ndaemon off;\nmaster_process on;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}\n  \
             default_type application/octet-stream;\n  sendfile on;\n  tcp_nodelay on;\n  \
             keepalive_timeout 75s;\n  keepalive_requests 100000;\n  \
             client_body_temp_path {d}/tmp/client;\n  proxy_temp_path {d}/tmp/proxy;\n  \
             fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  \
             scgi_temp_path {d}/tmp/scgi;\n{http_block}}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let mut cmd = match &place.ns {
            Some(ns) => crate::netns::Topology::command(ns, nginx),
            None => tokio::process::Command::new(nginx),
        };
        let child = cmd
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("starting {}", nginx.display()))?;
        let mut n = Self {
            child: Some(child),
            addr: place.addr,
            dir: dir.to_owned(),
        };
        // Ready when it accepts; a config error ends the process with a message.
        let t = tokio::time::Instant::now();
        loop {
            if tokio::net::TcpStream::connect(n.addr).await.is_ok() {
                return Ok(n);
            }
            if let Some(c) = n.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                let mut err = String::new();
                if let Some(mut e) = c.stderr.take() {
                    use tokio::io::AsyncReadExt as _;
                    let _ = e.read_to_string(&mut err).await;
                }
                n.child = None;
                bail!("nginx exited ({st}): {}", err.trim());
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("nginx did not listen on {} within 10 s", n.addr);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn tls_lines(tls: &NodeTls) -> String {
    format!(
        "    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;\n",
        tls.cert.display(),
        tls.key.display()
    )
}

/// nginx serving `root` over HTTPS (the HLS origin).
pub async fn origin(
    nginx: &Path,
    dir: &Path,
    root: &Path,
    tls: &NodeTls,
    place: &Place,
) -> anyhow::Result<Nginx> {
    let listen = place.addr;
    let block = format!(
        "  access_log off;\n  server {{\n    listen {listen} ssl;\n    server_name localhost;\n\
         {}    root {};\n  }}\n",
        tls_lines(tls),
        root.display()
    );
    Nginx::start(nginx, dir, &block, place).await
}

/// nginx as a caching edge in front of `upstream` (the origin, or a relay in front of it):
/// `slice` 1 MiB, `proxy_cache` bounded to `cache_mb`, `proxy_cache_lock` (one upstream fetch
/// per slice), keep-alive upstream connections, TLS verified against the dev CA.
pub async fn edge(
    nginx: &Path,
    dir: &Path,
    upstream: SocketAddr,
    cache_mb: u64,
    tls: &NodeTls,
    place: &Place,
) -> anyhow::Result<Nginx> {
    let listen = place.addr;
    let d = dir.display();
    let block = format!(
        "  log_format cache '$upstream_cache_status|$upstream_response_length|$status|$body_bytes_sent|$request_uri';\n  \
         access_log {d}/access.log cache;\n  \
         proxy_cache_path {d}/cache levels=1:2 keys_zone=edge:16m max_size={cache_mb}m inactive=1d use_temp_path=off;\n  \
         upstream origin {{\n    server {upstream};\n    keepalive 32;\n  }}\n  \
         server {{\n    listen {listen} ssl;\n    server_name localhost;\n{}    \
         location / {{\n      slice 1m;\n      proxy_cache edge;\n      \
         proxy_cache_key $uri$slice_range;\n      proxy_set_header Range $slice_range;\n      \
         proxy_cache_valid 200 206 1d;\n      proxy_cache_lock on;\n      \
         proxy_cache_lock_timeout 30s;\n      proxy_http_version 1.1;\n      \
         proxy_set_header Connection \"\";\n      proxy_pass https://origin;\n      \
         proxy_ssl_verify on;\n      proxy_ssl_trusted_certificate {};\n      \
         proxy_ssl_name localhost;\n      proxy_ssl_server_name on;\n      \
         proxy_ssl_session_reuse on;\n    }}\n  }}\n",
        tls_lines(tls),
        tls.ca.display()
    );
    Nginx::start(nginx, dir, &block, place).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_counts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("access.log"),
            "MISS|1000|200|1000|/a/seg0.ts\nHIT|-|200|1000|/a/seg0.ts\n\
             MISS|1048576, 20|206|20|/b/seg1.ts\n-|-|404|0|/x\n",
        )
        .unwrap();
        let n = Nginx {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            dir: dir.path().to_owned(),
        };
        let c = n.cache_counts();
        assert_eq!((c.hits, c.misses, c.upstream_bytes), (1, 2, 1_049_596));
    }
}
