//! `segue --config FILE`: settings come from the command's section, the command line wins,
//! and a wrong key is refused with a clear message.

use std::process::Command;

fn segue(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segue"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env_remove("SEGUE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_file_settings_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("segue.toml");
    std::fs::write(
        &cfg,
        "[origin]\nmedia = \"/nonexistent/media\"\nlisten = \"127.0.0.1:0\"\n\
         cert = \"/nonexistent/cert.pem\"\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    // The file's media root is used...
    let (ok, err) = segue(&["--config", cfg, "origin"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/media"), "{err}");
    // ...unless the command line gives one: then the file's certificate path is reached.
    let media = dir.path().join("media");
    std::fs::create_dir(&media).unwrap();
    let (ok, err) = segue(&[
        "origin",
        "--config",
        cfg,
        "--media",
        media.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");

    // A misspelt key names the file, the key and the settings there are.
    std::fs::write(dir.path().join("bad.toml"), "[edge]\nprefix_sec = 4\n").unwrap();
    let bad = dir.path().join("bad.toml");
    let (ok, err) = segue(&["--config", bad.to_str().unwrap(), "edge"]);
    assert!(!ok);
    assert!(
        err.contains("bad.toml") && err.contains("\"prefix_sec\"") && err.contains("prefix-secs"),
        "{err}"
    );
    // A file that does not exist is an error too.
    let (ok, err) = segue(&["--config", "/nonexistent/segue.toml", "edge"]);
    assert!(!ok && err.contains("cannot read config file"), "{err}");
}
