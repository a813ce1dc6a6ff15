//! `segue media ingest|list|info|rm`, run as the real binary on a temporary media root.

use std::path::Path;
use std::process::Command;

fn segue(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segue"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LOG", "warn")
        .env_remove("SEGUE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ingest_list_info_rm() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let data = dir.path().join("data");
    let (m, d) = (media.to_str().unwrap(), data.to_str().unwrap());
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/samples/demo.mp4");
    let sample = sample.to_str().unwrap();
    // `segue media ARGS --media M --data D`.
    let run = |args: &[&str]| {
        let mut v = vec!["media"];
        v.extend_from_slice(args);
        v.extend(["--media", m, "--data", d]);
        segue(&v)
    };

    let (ok, out, err) = run(&["ingest", sample, "--as", "films/demo"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("ingested films/demo") && out.contains("6 segments"),
        "{out}"
    );
    assert!(media.join("films/demo.mp4").is_file());

    // Again: refused without --replace, accepted with it.
    let (ok, _, err) = run(&["ingest", sample, "--as", "films/demo"]);
    assert!(!ok);
    assert!(err.contains("exists") && err.contains("--replace"), "{err}");
    let (ok, _, err) = run(&["ingest", sample, "--as", "films/demo", "--replace"]);
    assert!(ok, "{err}");

    // A truncated file is refused with the reason and leaves nothing in the media root.
    let trunc = dir.path().join("cut.mp4");
    std::fs::write(&trunc, &std::fs::read(sample).unwrap()[..5000]).unwrap();
    let (ok, _, err) = run(&["ingest", trunc.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("truncated"), "{err}");
    assert!(!media.join("cut.mp4").exists());
    // Bad names and files that are not media are refused.
    let (ok, _, err) = run(&["ingest", sample, "--as", "../x"]);
    assert!(!ok && err.contains("not a valid object name"), "{err}");
    let (ok, _, err) = run(&["ingest", "Cargo.toml"]);
    assert!(!ok && err.contains("not a media file"), "{err}");

    let (ok, out, _) = run(&["list"]);
    assert!(ok);
    assert!(
        out.contains("films/demo") && out.contains("1 objects"),
        "{out}"
    );

    let (ok, out, _) = run(&["info", "films/demo"]);
    assert!(ok);
    assert!(out.contains("H.264") && out.contains("AAC"), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains('…')).count(), 6, "{out}");
    let (ok, _, err) = run(&["info", "films/none"]);
    assert!(!ok && err.contains("no object films/none"), "{err}");

    let (ok, out, err) = run(&["rm", "films/demo"]);
    assert!(ok, "{err}");
    assert!(out.contains("demo.mp4"), "{out}");
    assert!(!media.join("films/demo.mp4").exists());
    let (_, out, _) = run(&["list"]);
    assert!(out.contains("0 objects"), "{out}");
    let (ok, _, _) = run(&["rm", "films/demo"]);
    assert!(!ok);

    // The media commands take --media and --data from the config's [origin] section.
    let cfg = dir.path().join("segue.toml");
    std::fs::write(
        &cfg,
        format!("[origin]\nmedia = {m:?}\ndata = {d:?}\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let (ok, out, err) = segue(&["--config", cfg.to_str().unwrap(), "media", "list"]);
    assert!(ok, "{err}");
    assert!(out.contains("0 objects"), "{out}");
}
