//! Network namespaces for the lab (root only): each node of the packet-level network
//! ([`fabric`](super::fabric)) in its own namespace. The namespaces (with the devices moved
//! into them) are removed on drop, and leftovers of runs that died are removed by the next
//! run (with the /etc/netns files older runs wrote).

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Names of this lab's namespaces start with this, then the runner's pid.
const PREFIX: &str = "sglab";

pub(crate) fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

pub(crate) fn run(prog: &str, args: &[&str]) -> anyhow::Result<()> {
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
}

impl Topology {
    pub fn new() -> anyhow::Result<Self> {
        available().map_err(anyhow::Error::msg)?;
        remove_stale();
        Ok(Self {
            tag: format!("{PREFIX}{}", std::process::id()),
            namespaces: Vec::new(),
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

    /// A command that runs `program` inside `ns`.
    pub fn command(ns: &str, program: &std::path::Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veths in it, and so their peers here.
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                tracing::warn!("cannot remove namespace {ns}: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs only as root where namespaces work (the fabric's and the lab's tests cover more).
    #[test]
    fn a_namespace_is_removed_on_drop() {
        if available().is_err() {
            eprintln!("skipped: no network namespaces here");
            return;
        }
        let name;
        {
            let mut t = Topology::new().unwrap();
            name = t.namespace("t").unwrap();
            // A command runs inside it: it has only its own loopback.
            let out = Command::new("ip")
                .args(["netns", "exec", &name, "ip", "-o", "link"])
                .output()
                .unwrap();
            let links = String::from_utf8_lossy(&out.stdout).to_string();
            assert_eq!(links.lines().count(), 1, "{links}");
            assert!(links.contains("lo:"), "{links}");
        }
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
    }
}
