//! The bench's nodes are its own processes, and go with it.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::Kid;

/// The processes whose parent is `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            // "pid (comm) state ppid ...": the comm may hold spaces, so read after ')'.
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// `segue-lab bench` (as `segue-lab soak`) runs an origin and an edge as its own processes: SIGTERM
/// to it stops them as well, instead of leaving them running with their parent gone. Its
/// `--congestion` reaches both nodes.
#[test]
fn an_interrupted_bench_leaves_no_node_running() {
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/../media/samples");
    let mut bench = Kid(Command::new(env!("CARGO_BIN_EXE_segue-lab"))
        .args([
            "bench",
            "--rounds",
            "1",
            "--congestion",
            "cubic",
            "--samples",
            samples,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let pid = bench.0.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let nodes = loop {
        let k = children(pid);
        if k.len() >= 2 {
            break k;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the bench never started its origin and edge"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for node in &nodes {
        let args = std::fs::read(format!("/proc/{node}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = args.split(|b| *b == 0).collect();
        assert!(
            args.windows(2)
                .any(|w| w[0] == b"--congestion" && w[1] == b"cubic"),
            "node {node} runs without the bench's --congestion: {args:?}"
        );
    }
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = bench.0.wait().unwrap();
    assert!(!status.success(), "an interrupted bench is an error");
    for node in nodes {
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            !Path::new(&format!("/proc/{node}")).exists()
        });
        assert!(
            gone,
            "node process {node} still running after the bench ended"
        );
    }
}
