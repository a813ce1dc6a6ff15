//! Network namespaces for the lab (root only): each node in its own namespace, joined to the
//! runner's namespace by veth pairs, with `tc tbf` rate limits on the veths. Delay, jitter and
//! loss stay in the user-space relays (the kernel here has no netem); the relays and the
//! players stay in the runner's namespace, so every byte between nodes crosses a veth and a
//! relay. Everything created (namespaces, their /etc/netns files) is removed on drop, and
//! leftovers of runs that died are removed by the next run.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Names of this lab's namespaces start with this, then the runner's pid.
const PREFIX: &str = "sglab";

/// A rate limit on one direction of a veth.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub kbps: u64,
    /// Queue in front of the limit, bytes.
    pub queue_bytes: u64,
}

pub(crate) fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

fn run(prog: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {prog}"))?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether namespaces can be made here (root, `ip netns` works).
pub fn available() -> Result<(), String> {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    });
    if !root {
        return Err("network namespaces need root".into());
    }
    let probe = format!("{PREFIX}probe{}", std::process::id());
    ip(&["netns", "add", &probe]).map_err(|e| format!("cannot create a namespace: {e:#}"))?;
    let _ = ip(&["netns", "del", &probe]);
    Ok(())
}

/// Removes namespaces (and their /etc/netns dirs) left by lab runs whose process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(
                namespace = name,
                "removing a namespace left by a lab run that died"
            );
            let _ = ip(&["netns", "del", name]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{name}"));
        }
    }
}

/// The namespaces and links of one run.
#[derive(Debug)]
pub struct Topology {
    tag: String,
    namespaces: Vec<String>,
    etc: Vec<PathBuf>,
    links: u8,
}

/// A veth between the runner's namespace and a node's.
#[derive(Debug, Clone)]
pub struct Veth {
    /// The runner's end.
    pub root_ip: Ipv4Addr,
    /// The node's end.
    pub node_ip: Ipv4Addr,
}

impl Topology {
    pub fn new() -> anyhow::Result<Self> {
        available().map_err(anyhow::Error::msg)?;
        remove_stale();
        Ok(Self {
            tag: format!("{PREFIX}{}", std::process::id()),
            namespaces: Vec::new(),
            etc: Vec::new(),
            links: 0,
        })
    }

    /// A new namespace for node `node` (short: it becomes part of interface names).
    pub fn namespace(&mut self, node: &str) -> anyhow::Result<String> {
        let name = format!("{}{node}", self.tag);
        ip(&["netns", "add", &name])?;
        self.namespaces.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// A veth pair from the runner's namespace into `ns`, on its own /30 (10.X.N.0, X from
    /// the runner's pid so concurrent runs do not collide), with
    /// `down` limiting runner → node and `up` node → runner.
    pub fn veth(&mut self, ns: &str, up: Option<Rate>, down: Option<Rate>) -> anyhow::Result<Veth> {
        let n = self.links;
        self.links = self
            .links
            .checked_add(1)
            .context("too many links for one run")?;
        // Interface names are at most 15 bytes.
        let root_if = format!("sg{}v{n}", std::process::id() % 100_000);
        let node_if = format!("{root_if}n");
        ip(&[
            "link", "add", &root_if, "type", "veth", "peer", "name", &node_if,
        ])?;
        ip(&["link", "set", &node_if, "netns", ns])?;
        let x = 100 + (std::process::id() % 100) as u8;
        let root_ip = Ipv4Addr::new(10, x, n, 1);
        let node_ip = Ipv4Addr::new(10, x, n, 2);
        ip(&["addr", "add", &format!("{root_ip}/30"), "dev", &root_if])?;
        ip(&["link", "set", &root_if, "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{node_ip}/30"),
            "dev",
            &node_if,
        ])?;
        ip(&["-n", ns, "link", "set", &node_if, "up"])?;
        if let Some(r) = down {
            tbf(None, &root_if, r)?;
        }
        if let Some(r) = up {
            tbf(Some(ns), &node_if, r)?;
        }
        Ok(Veth { root_ip, node_ip })
    }

    /// Host names as seen inside `ns` (`ip netns exec` mounts /etc/netns/<ns>/hosts).
    pub fn hosts(&mut self, ns: &str, entries: &[(&str, Ipv4Addr)]) -> anyhow::Result<()> {
        let dir = PathBuf::from(format!("/etc/netns/{ns}"));
        std::fs::create_dir_all(&dir)?;
        self.etc.push(dir.clone());
        let mut text = String::from("127.0.0.1 localhost\n");
        for (name, addr) in entries {
            text.push_str(&format!("{addr} {name}\n"));
        }
        std::fs::write(dir.join("hosts"), text)?;
        Ok(())
    }

    /// A command that runs `program` inside `ns`.
    pub fn command(ns: &str, program: &std::path::Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }
}

/// `tc qdisc ... tbf` on `dev` (in `ns`, or the runner's namespace).
fn tbf(ns: Option<&str>, dev: &str, r: Rate) -> anyhow::Result<()> {
    let kbps = r.kbps.max(8);
    // Burst: 10 ms at the rate, at least two full frames.
    let burst = (kbps * 1000 / 8 / 100).max(3028);
    let limit = r.queue_bytes.max(burst);
    let mut args: Vec<String> = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n".into(), ns.into()]);
    }
    args.extend(["qdisc", "add", "dev", dev, "root", "tbf", "rate"].map(String::from));
    args.push(format!("{kbps}kbit"));
    args.extend(["burst".into(), burst.to_string()]);
    args.extend(["limit".into(), limit.to_string()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run("tc", &a)
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veths in it, and so their peers here.
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                tracing::warn!("cannot remove namespace {ns}: {e:#}");
            }
        }
        for d in self.etc.drain(..) {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs only as root where namespaces work (the lab's own test covers the runner).
    #[test]
    fn veth_with_rate_limit_and_cleanup() {
        if available().is_err() {
            eprintln!("skipped: no network namespaces here");
            return;
        }
        let name;
        {
            let mut t = Topology::new().unwrap();
            name = t.namespace("t").unwrap();
            let v = t
                .veth(
                    &name,
                    None,
                    Some(Rate {
                        kbps: 1000,
                        queue_bytes: 32 * 1024,
                    }),
                )
                .unwrap();
            // The node's end is addressed inside its namespace.
            let a = Command::new("ip")
                .args(["-n", &name, "addr", "show"])
                .output()
                .unwrap();
            assert!(String::from_utf8_lossy(&a.stdout).contains(&v.node_ip.to_string()));
            let q = Command::new("tc").args(["qdisc", "show"]).output().unwrap();
            assert!(String::from_utf8_lossy(&q.stdout).contains("tbf"));
            t.hosts(&name, &[("origin", v.root_ip)]).unwrap();
            // Inside the namespace, /etc/hosts is the one written for it.
            let h = Command::new("ip")
                .args(["netns", "exec", &name, "cat", "/etc/hosts"])
                .output()
                .unwrap();
            let h = String::from_utf8_lossy(&h.stdout).to_string();
            assert!(h.contains(&format!("{} origin", v.root_ip)), "{h}");
        }
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
        assert!(!std::path::Path::new(&format!("/etc/netns/{name}")).exists());
    }
}
