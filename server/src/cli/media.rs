//! The origin's media management (`segue media ingest|list|info|rm`): works on the media root
//! and data dir directly, so it runs with or without an origin; a running origin picks the
//! changes up on SIGHUP.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use crate::origin::ingest::segmenter::SegmentScheme;
use segue_wire::{Limits, ObjectName};

use crate::origin::library::{
    EXTENSIONS, Library, LibraryOptions, ingested_dir, source_dir_and_stem, sources_of,
};

#[derive(Args, Debug, Clone)]
pub struct MediaDirs {
    /// The origin's media root.
    #[arg(long)]
    media: PathBuf,
    /// The origin's data dir (ingested objects).
    #[arg(long, default_value = "segue-data/origin")]
    data: PathBuf,
    /// Target segment duration in milliseconds.
    #[arg(long, default_value_t = 2000)]
    segment_ms: u64,
    /// Segment durations: uniform (every segment about --segment-ms), or exponential
    /// (segment i about --segment-ms × 2^i, at most 16×; docs/PLACEMENT.md).
    #[arg(long, default_value = "uniform")]
    segment_scheme: SegmentScheme,
}

#[derive(Subcommand, Debug)]
pub enum MediaCommand {
    /// Check a media file, copy it into the media root and ingest it.
    Ingest {
        /// The file (MP4, fragmented MP4, MPEG-TS with H.264/AAC).
        file: PathBuf,
        /// Object name (default: the file name without extension), e.g. films/trailer.
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        /// Replace an existing object of that name.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        dirs: MediaDirs,
    },
    /// List the objects (ingesting what changed) and the files that failed.
    List {
        #[command(flatten)]
        dirs: MediaDirs,
    },
    /// Show one object: tracks, duration, every segment.
    Info {
        object: String,
        #[command(flatten)]
        dirs: MediaDirs,
    },
    /// Remove an object: its source files and its ingested form.
    Rm {
        object: String,
        #[command(flatten)]
        dirs: MediaDirs,
    },
}

/// Runs a `segue media` command.
pub async fn run(c: MediaCommand) -> anyhow::Result<()> {
    let o = |d: MediaDirs| options(d.media, d.data, d.segment_ms, d.segment_scheme);
    let out = tokio::task::spawn_blocking(move || match c {
        MediaCommand::Ingest {
            file,
            as_name,
            replace,
            dirs,
        } => ingest(&o(dirs), &file, as_name.as_deref(), replace),
        MediaCommand::List { dirs } => list(&o(dirs)),
        MediaCommand::Info { object, dirs } => info(&o(dirs), &object),
        MediaCommand::Rm { object, dirs } => rm(&o(dirs), &object),
    })
    .await??;
    print!("{out}");
    Ok(())
}

fn name(s: &str) -> anyhow::Result<ObjectName> {
    ObjectName::new(s, Limits::default().max_object_name)
        .with_context(|| format!("{s:?} is not a valid object name (PROTOCOL.md §3)"))
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

/// Copies `file` into the media root as object `as_name` (default: the file's stem) and
/// ingests it. The file is checked first: one that does not ingest is never copied. An
/// existing object is replaced only with `replace`.
pub fn ingest(
    opts: &LibraryOptions,
    file: &Path,
    as_name: Option<&str>,
    replace: bool,
) -> anyhow::Result<String> {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .filter(|e| EXTENSIONS.contains(&e.as_str()))
        .with_context(|| {
            format!(
                "{}: not a media file the origin ingests ({})",
                file.display(),
                EXTENSIONS.join(", ")
            )
        })?;
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("{}: no usable file name", file.display()))?;
    let obj = name(as_name.unwrap_or(stem))?;
    // Check the file before it goes anywhere.
    let d = crate::origin::ingest::demux(file)?;
    crate::origin::ingest::segmenter::segment(
        &d,
        &obj,
        vec![ext.clone()],
        0,
        crate::origin::ingest::segmenter::Cut {
            target_us: opts.target_segment_us,
            scheme: opts.scheme,
        },
        file,
    )?;
    let existing = sources_of(&opts.media_root, &obj);
    if !existing.is_empty() && !replace {
        bail!(
            "object {obj} exists ({}); use --replace",
            existing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (dir, leaf) = source_dir_and_stem(&opts.media_root, &obj);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let target = dir.join(format!("{leaf}.{ext}"));
    // Hidden temporary (the scan skips it), then renamed: a half-copied file never shows.
    let tmp = dir.join(format!(".{leaf}.{ext}.segue-tmp"));
    fs::copy(file, &tmp).with_context(|| format!("cannot copy to {}", tmp.display()))?;
    for old in existing.iter().filter(|p| **p != target) {
        fs::remove_file(old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    fs::rename(&tmp, &target).with_context(|| format!("cannot write {}", target.display()))?;
    let lib = Library::open(opts)?;
    match lib.get(&obj) {
        Some(o) => {
            let m = &o.manifest;
            Ok(format!(
                "ingested {obj} from {}: {:.1} s, {} segments, {} (revision {})\n",
                target.display(),
                m.duration_us as f64 / 1e6,
                m.segments.len(),
                mb(m.total_size()),
                m.revision
            ))
        }
        None => {
            let why = lib.failures.get(obj.as_str()).cloned().unwrap_or_default();
            let _ = fs::remove_file(&target);
            bail!("{obj}: not ingested: {why}")
        }
    }
}

/// The library as a table (ingesting what changed), with files that failed.
pub fn list(opts: &LibraryOptions) -> anyhow::Result<String> {
    let lib = Library::open(opts)?;
    let objects = crate::node::admin::library_objects(&lib);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32} {:>9} {:>8} {:>10}  formats",
        "object", "duration", "segments", "size"
    );
    for o in &objects {
        let _ = writeln!(
            out,
            "{:<32} {:>8.1}s {:>8} {:>10}  {}",
            o.object,
            o.duration_s,
            o.segments,
            mb(o.bytes),
            o.formats.join(",")
        );
    }
    let _ = writeln!(
        out,
        "{} objects, {}",
        objects.len(),
        mb(objects.iter().map(|o| o.bytes).sum())
    );
    for (file, why) in &lib.failures {
        let _ = writeln!(out, "not ingested: {file}: {why}");
    }
    Ok(out)
}

/// One object's manifest: tracks, and every segment.
pub fn info(opts: &LibraryOptions, object: &str) -> anyhow::Result<String> {
    let obj = name(object)?;
    let lib = Library::open(opts)?;
    let Some(o) = lib.get(&obj) else {
        match lib.failures.get(obj.as_str()) {
            Some(why) => bail!("{obj}: not ingested: {why}"),
            None => bail!("no object {obj} under {}", opts.media_root.display()),
        }
    };
    let m = &o.manifest;
    let mut out = String::new();
    let _ = writeln!(out, "object    {}", m.object);
    let _ = writeln!(out, "revision  {}", m.revision);
    let _ = writeln!(out, "formats   {}", m.formats.join(", "));
    let _ = writeln!(out, "duration  {:.3} s", m.duration_us as f64 / 1e6);
    let _ = writeln!(out, "size      {}", mb(m.total_size()));
    let _ = writeln!(out, "sources   {}", {
        let s: Vec<String> = sources_of(&opts.media_root, &obj)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        s.join(", ")
    });
    let _ = writeln!(
        out,
        "ingested  {}",
        ingested_dir(&opts.data_dir, &obj).display()
    );
    if let Ok(d) = m.description(&Limits::default()) {
        for (t, e) in d.tracks.iter().zip(&m.tracks) {
            let codec = match &t.codec {
                segue_wire::sdp::Codec::H264 {
                    profile_level_id, ..
                } => format!(
                    "H.264 profile-level-id {:02x}{:02x}{:02x}",
                    profile_level_id[0], profile_level_id[1], profile_level_id[2]
                ),
                segue_wire::sdp::Codec::Aac { channels, .. } => {
                    format!("AAC {channels} ch")
                }
                segue_wire::sdp::Codec::Opus { channels } => format!("Opus {channels} ch"),
                segue_wire::sdp::Codec::H265 { .. } => "HEVC".to_owned(),
                segue_wire::sdp::Codec::Av1 {
                    profile,
                    level_idx,
                    tier,
                } => format!("AV1 profile {profile} level-idx {level_idx} tier {tier}"),
            };
            let _ = writeln!(
                out,
                "track {}   {codec}, clock {} Hz, {} frames",
                t.index, t.clock_rate, e.frames
            );
        }
        for l in &d.left_out {
            let _ = writeln!(out, "left out  {l}");
        }
    }
    let _ = writeln!(
        out,
        "\n{:>5} {:>9} {:>8} {:>10} {:>7}  sha256",
        "seg", "start", "duration", "bytes", "frames"
    );
    for (i, s) in m.segments.iter().enumerate() {
        let sum: String = s.checksum[..8].iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(
            out,
            "{i:>5} {:>8.3}s {:>7.3}s {:>10} {:>7}  {sum}…",
            s.start_us as f64 / 1e6,
            s.duration_us as f64 / 1e6,
            s.size,
            s.frames
        );
    }
    Ok(out)
}

/// Removes an object: its source files (every format) and its ingested form.
pub fn rm(opts: &LibraryOptions, object: &str) -> anyhow::Result<String> {
    let obj = name(object)?;
    let files = sources_of(&opts.media_root, &obj);
    let ingested = ingested_dir(&opts.data_dir, &obj);
    if files.is_empty() && !ingested.exists() {
        bail!("no object {obj} under {}", opts.media_root.display());
    }
    let mut out = String::new();
    for f in &files {
        fs::remove_file(f).with_context(|| format!("cannot remove {}", f.display()))?;
        let _ = writeln!(out, "removed {}", f.display());
    }
    if ingested.exists() {
        fs::remove_dir_all(&ingested)
            .with_context(|| format!("cannot remove {}", ingested.display()))?;
        let _ = writeln!(out, "removed {}", ingested.display());
    }
    Ok(out)
}

/// Library options for the media commands.
pub fn options(
    media: PathBuf,
    data: PathBuf,
    segment_ms: u64,
    scheme: crate::origin::ingest::segmenter::SegmentScheme,
) -> LibraryOptions {
    LibraryOptions {
        media_root: media,
        data_dir: data,
        target_segment_us: segment_ms.saturating_mul(1000),
        scheme,
    }
}
