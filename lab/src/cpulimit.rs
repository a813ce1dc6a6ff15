//! A CPU bandwidth limit for one child process, through Linux cgroups (the v1 `cpu`
//! controller, or v2's `cpu.max`): how `segue-lab soak --edge-cpu` measures sessions per edge core
//! when the players, on the one other core of a small machine, cannot load a whole edge core.
//! The edge gets `share` of a core in every 10 ms period and is throttled for the rest, so it
//! runs in bursts: harder on its pacing and timers than a core of that size would be, never
//! easier.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The scheduler period the share is granted in, µs.
pub const PERIOD_US: u64 = 10_000;

/// A cgroup holding one process with a CPU quota; removed when dropped (after the process
/// has ended: the caller drops the process first).
#[derive(Debug)]
pub struct CpuLimit {
    dir: PathBuf,
    /// The share of one core granted, 0..=1.
    pub share: f64,
}

impl CpuLimit {
    /// Puts `pid` (all its threads) in a new cgroup named `name` limited to `share` of one
    /// core. Needs root and a cgroup filesystem with the `cpu` controller.
    pub fn apply(pid: u32, share: f64, name: &str) -> anyhow::Result<Self> {
        if !(0.01..=1.0).contains(&share) {
            bail!("a CPU share is between 0.01 and 1 of a core, not {share}");
        }
        let quota = (share * PERIOD_US as f64).round() as u64;
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let v2 = Path::new("/sys/fs/cgroup");
        let (dir, files): (PathBuf, Vec<(&str, String)>) = if v1.join("cpu.cfs_quota_us").exists() {
            (
                v1.join(name),
                vec![
                    ("cpu.cfs_period_us", PERIOD_US.to_string()),
                    ("cpu.cfs_quota_us", quota.to_string()),
                ],
            )
        } else if std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|k| k == "cpu"))
        {
            // The controller must be handed down to the children of the root.
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
            (
                v2.join(name),
                vec![("cpu.max", format!("{quota} {PERIOD_US}"))],
            )
        } else {
            bail!(
                "no cgroup cpu controller (neither /sys/fs/cgroup/cpu nor cgroup2 with cpu): \
                     a CPU share cannot be set here"
            );
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating cgroup {} (needs root)", dir.display()));
            }
        }
        let limit = Self { dir, share };
        for (file, value) in files {
            std::fs::write(limit.dir.join(file), &value).with_context(|| {
                format!("writing {value} to {}", limit.dir.join(file).display())
            })?;
        }
        std::fs::write(limit.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving process {pid} into {}", limit.dir.display()))?;
        Ok(limit)
    }

    /// Scheduler periods so far, and in how many of them the quota ran out (the process was
    /// throttled): a limit that never throttled did not bind.
    pub fn throttled(&self) -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
        let field = |k: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok())
        };
        Some((field("nr_periods ")?, field("nr_throttled ")?))
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // Fails (harmlessly) while a process is still in it.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_outside_one_core_is_refused_before_anything_is_touched() {
        for bad in [0.0, 1.5, -0.2, f64::NAN] {
            let e = CpuLimit::apply(std::process::id(), bad, "segue-test-never-made")
                .expect_err("refused");
            assert!(e.to_string().contains("between 0.01 and 1"), "{e}");
        }
        assert!(!Path::new("/sys/fs/cgroup/cpu/segue-test-never-made").exists());
    }
}
