//! Config files: every command-line flag of a subcommand can be set in a TOML section named
//! after it (`[origin]`, `[edge]`, `[demo]`, `[bench]`). A key is the flag's long name
//! (`cache_size` or `cache-size`); `true` sets a switch, an array repeats a flag (`warm =
//! ["a", "b"]`). The file's values go before the command line's, so flags given on the
//! command line win (lists add up).

pub mod edge;
pub mod node;
pub mod origin;

pub use edge::EdgeConfig;
pub use origin::OriginConfig;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The arguments section `section` of the config `text` stands for. `known` lists the
/// subcommand's long flag names and whether each is a switch (takes no value).
pub fn section_args(
    path: &Path,
    text: &str,
    section: &str,
    known: &[(String, bool)],
) -> Result<Vec<String>, ConfigError> {
    section_args_for(path, text, section, known, true)
}

/// [`section_args`]; with `strict` false, keys the command does not know are skipped (a
/// nested command such as `segue edge status` or `segue media list` takes the settings it
/// needs from its parent's section, e.g. `admin` from `[edge]`, `media` from `[origin]`).
pub fn section_args_for(
    path: &Path,
    text: &str,
    section: &str,
    known: &[(String, bool)],
    strict: bool,
) -> Result<Vec<String>, ConfigError> {
    let bad = |reason: String| ConfigError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let doc: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let Some(table) = doc.get(section) else {
        return Ok(Vec::new());
    };
    let table = table
        .as_table()
        .ok_or_else(|| bad(format!("[{section}] must be a table")))?;
    let mut args = Vec::new();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        let Some(&(_, switch)) = known.iter().find(|(n, _)| *n == flag) else {
            if !strict {
                continue;
            }
            let mut names: Vec<&str> = known.iter().map(|(n, _)| n.as_str()).collect();
            names.sort_unstable();
            return Err(bad(format!(
                "[{section}] has no setting {key:?} (settings: {})",
                names.join(", ")
            )));
        };
        match (value, switch) {
            (toml::Value::Boolean(b), true) => {
                if *b {
                    args.push(format!("--{flag}"));
                }
            }
            (_, true) => return Err(bad(format!("[{section}] {key} is a switch: true or false"))),
            (toml::Value::Array(items), false) => {
                for v in items {
                    let v = scalar(v).ok_or_else(|| {
                        bad(format!("[{section}] {key}: list items must be values"))
                    })?;
                    args.push(format!("--{flag}={v}"));
                }
            }
            (v, false) => {
                let v =
                    scalar(v).ok_or_else(|| bad(format!("[{section}] {key} must be a value")))?;
                args.push(format!("--{flag}={v}"));
            }
        }
    }
    Ok(args)
}

/// Finds `--config FILE` / `--config=FILE` in `argv`, or `SEGUE_CONFIG`.
pub fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("SEGUE_CONFIG").map(PathBuf::from)
}

/// `argv` with the config's arguments for the subcommand at `argv[at]` inserted after it.
pub fn splice(argv: Vec<OsString>, at: usize, args: Vec<String>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len() + args.len());
    let mut it = argv.into_iter();
    out.extend(it.by_ref().take(at + 1));
    out.extend(args.into_iter().map(OsString::from));
    out.extend(it);
    out
}

/// Reads a config file.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// `argv` (a command line of `cmd`) with the config file's settings for its subcommand
/// spliced in.
pub fn argv_with_config(
    cmd: &clap::Command,
    argv: Vec<OsString>,
) -> Result<Vec<OsString>, ConfigError> {
    let Some(path) = config_path(&argv) else {
        return Ok(argv);
    };
    let text = read(&path)?;
    let found = argv.iter().enumerate().skip(1).find_map(|(i, a)| {
        let sub = cmd.find_subcommand(a.to_str()?)?;
        Some((i, sub))
    });
    let Some((at, sub)) = found else {
        return Ok(argv);
    };
    let known = |c: &clap::Command| -> Vec<(String, bool)> {
        c.get_arguments()
            .filter(|a| a.get_id() != "config")
            .filter_map(|a| Some((a.get_long()?.to_owned(), !a.get_action().takes_values())))
            .collect()
    };
    // A nested command (`edge status`, `media list`) takes what it knows from its parent's
    // section (`media` from `[origin]`).
    let nested = argv
        .get(at + 1)
        .and_then(|a| sub.find_subcommand(a.to_str()?));
    if let Some(n) = nested {
        let section = match sub.get_name() {
            "media" => "origin",
            other => other,
        };
        let args = section_args_for(&path, &text, section, &known(n), false)?;
        return Ok(splice(argv, at + 1, args));
    }
    let args = section_args(&path, &text, sub.get_name(), &known(sub))?;
    Ok(splice(argv, at, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<(String, bool)> {
        vec![
            ("listen".into(), false),
            ("cache-size".into(), false),
            ("warm".into(), false),
            ("quiet".into(), true),
        ]
    }

    #[test]
    fn section_to_flags() {
        let text = r#"
[edge]
listen = "127.0.0.1:8555"
cache_size = "2G"
warm = ["a", "b"]
quiet = true
[origin]
listen = "x"
"#;
        let a = section_args(Path::new("c.toml"), text, "edge", &known()).unwrap();
        assert_eq!(
            a,
            vec![
                "--cache-size=2G",
                "--listen=127.0.0.1:8555",
                "--quiet",
                "--warm=a",
                "--warm=b"
            ]
        );
        assert!(
            section_args(Path::new("c.toml"), text, "bench", &known())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn clear_errors() {
        let e = section_args(Path::new("c.toml"), "[edge]\nlisen = 1\n", "edge", &known())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml") && e.contains("\"lisen\"") && e.contains("listen"),
            "{e}"
        );
        let e = section_args(Path::new("c.toml"), "[edge]\nquiet = 3\n", "edge", &known())
            .unwrap_err()
            .to_string();
        assert!(e.contains("switch"), "{e}");
        assert!(section_args(Path::new("c.toml"), "[edge\n", "edge", &known()).is_err());
        // Lenient: a nested command takes what it knows from its parent's section.
        let a = section_args_for(
            Path::new("c.toml"),
            "[edge]\nlisten = 1\nother = 2\n",
            "edge",
            &known(),
            false,
        )
        .unwrap();
        assert_eq!(a, ["--listen=1"]);
    }

    #[test]
    fn splicing_and_finding() {
        let argv: Vec<OsString> = ["segue", "edge", "--listen", "y"]
            .map(OsString::from)
            .to_vec();
        let out = splice(argv.clone(), 1, vec!["--listen=x".into()]);
        assert_eq!(
            out,
            ["segue", "edge", "--listen=x", "--listen", "y"].map(OsString::from)
        );
        let with: Vec<OsString> = ["segue", "--config", "f.toml", "edge"]
            .map(OsString::from)
            .to_vec();
        assert_eq!(config_path(&with), Some(PathBuf::from("f.toml")));
        let eq: Vec<OsString> = ["segue", "edge", "--config=g.toml"]
            .map(OsString::from)
            .to_vec();
        assert_eq!(config_path(&eq), Some(PathBuf::from("g.toml")));
    }
}
