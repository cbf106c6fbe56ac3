//! `oomlab analyze`: read kernel logs from real machines (any era, any of the
//! usual prefixes, dirty), list every OOM incident and diagnose kill/respawn
//! loops (issue #3).
//!
//! Library API for the CLI: [`analyze_paths`] -> [`Analysis`] (Serialize, for
//! `--json`), [`render_human`], [`exit_code`]; [`analyze_bytes`] and
//! [`analyze_reader`] for logs already in memory or behind a reader.

mod diagnosis;
mod envelope;
mod era;
mod fxhash;
mod incidents;
mod input;
mod model;
mod records;
mod render;
mod reproduce;
mod supervisors;
mod wrap;

use std::io::Read;
use std::path::PathBuf;

use serde::Serialize;

pub use era::Era;
pub use model::{
    BackOff, ChildSacrifice, Chosen, GroupCall, How, Incident, InputError, LoopFinding, LoopRule,
    MasterGuess, Note, Reaper, Repair, Repairs, SpareReason, Spared, Spread, SupervisorEvidence,
    Totals, Victim, VictimGroup,
};
pub use render::render_human;
pub use reproduce::{scenario_yaml, CannotReproduce, GUEST_MIB};

/// Options of `oomlab analyze`.
///
/// CLI flags wanted (the lead wires them in `bin/oomlab.rs`):
/// - `FILES...` (required; `-` = stdin; `.gz`/gzip data is detected by magic)
/// - `--json`: print `serde_json::to_string_pretty(&analysis)` instead of
///   [`render_human`]
/// - `--max-incidents N` -> [`AnalyzeOptions::max_incidents`] (default 1000)
/// - `--min-respawned-kills N` -> [`AnalyzeOptions::min_respawned_kills`]
///   (default 2)
///
/// Exit status: [`exit_code`] (0 no loop, 1 loop); an `Err` from
/// [`analyze_paths`] (unreadable input) is exit status 2.
#[derive(Debug, Clone, Serialize)]
pub struct AnalyzeOptions {
    /// Incidents kept in detail; later ones are only counted (memory bound).
    pub max_incidents: usize,
    /// Kills of respawned processes in one group needed to call it a loop.
    pub min_respawned_kills: usize,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            max_incidents: 1000,
            min_respawned_kills: 2,
        }
    }
}

/// Per-input statistics.
#[derive(Debug, Clone, Serialize)]
pub struct InputStats {
    pub path: String,
    /// Bytes read (after decompression).
    pub bytes: u64,
    /// Lines that were parsed (candidates and OOM-report context), not all lines.
    pub lines_examined: u64,
    pub gzip: bool,
    /// Lines recognised as `journalctl -o json` records.
    pub journal_json_lines: u64,
    /// Lines of supervisors (systemd, nginx, php-fpm, ...) read.
    pub supervisor_lines: u64,
    /// The time of its last line, as printed.
    pub ends_at: Option<String>,
}

/// Everything `oomlab analyze` found.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub inputs: Vec<InputStats>,
    /// Inputs that could not be read, or not to their end (`oomlab
    /// analyze` exits 2 after reporting the rest).
    pub unreadable: Vec<InputError>,
    /// Lines mended before they could be read.
    pub repaired: Repairs,
    /// The machine's memory, from a Mem-Info dump's `N pages RAM` (4 KiB
    /// pages).
    pub ram_kb: Option<u64>,
    pub totals: Totals,
    /// True when some group is a kill/respawn loop.
    pub loop_found: bool,
    /// Loop findings, worst first (`--json`: each with its `summary`).
    #[serde(serialize_with = "render::serialize_loops")]
    pub loops: Vec<LoopFinding>,
    /// Victims grouped by (name, uid, memcg), most kills first.
    pub groups: Vec<VictimGroup>,
    /// The first `max_incidents` incidents in log order.
    pub incidents: Vec<Incident>,
    /// Incidents past `max_incidents`, counted but not kept.
    pub incidents_omitted: u64,
    /// The first OOM-related kernel panic, if any.
    pub panic: Option<String>,
    /// Kernel eras told from the formats seen, in order (`--json`: one
    /// string of their labels, `era`).
    #[serde(rename = "era", serialize_with = "era::serialize_labels")]
    pub eras: Vec<Era>,
    pub notes: Vec<Note>,
}

/// Why no input could be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// Not one input could be read (each one's error).
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.path, e.error)).collect::<Vec<_>>().join("; "))]
    Unreadable(Vec<InputError>),
    #[error("no input given")]
    NoInput,
}

/// Analyse `inputs` in order (`-` = stdin), as one log. An input that
/// cannot be read is reported in [`Analysis::unreadable`] and the others
/// are analysed (as `grep` does); `Err` only when none could be read.
pub fn analyze_paths(inputs: &[PathBuf], opts: &AnalyzeOptions) -> Result<Analysis, AnalyzeError> {
    if inputs.is_empty() {
        return Err(AnalyzeError::NoInput);
    }
    let mut b = incidents::Builder::new(opts.clone());
    let mut read_any = false;
    for p in inputs {
        let name = p.display().to_string();
        let (mut r, gzip) = match input::open(p) {
            Ok(x) => x,
            Err(e) => {
                b.unreadable(&name, e.to_string());
                continue;
            }
        };
        read_any = true;
        b.begin_input(&name, gzip);
        let mut counted = Counted {
            inner: &mut r,
            n: 0,
        };
        match input::scan(&mut counted, &mut b) {
            Ok(bytes) => b.end_input(bytes),
            Err(e) => {
                b.end_input(counted.n);
                b.failed_input(&name, e.to_string(), counted.n);
            }
        }
    }
    let a = b.finish();
    if !read_any {
        return Err(AnalyzeError::Unreadable(a.unreadable));
    }
    Ok(a)
}

/// Counts the bytes read through it (for an input that fails part way).
struct Counted<'a, R: Read + ?Sized> {
    inner: &'a mut R,
    n: u64,
}

impl<R: Read + ?Sized> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Analyse an in-memory log (tests, fuzzing).
pub fn analyze_bytes(data: &[u8], opts: &AnalyzeOptions) -> Analysis {
    let mut b = incidents::Builder::new(opts.clone());
    b.begin_input("<memory>", false);
    let mut r = data;
    let bytes = input::scan(&mut r, &mut b).unwrap_or(0);
    b.end_input(bytes);
    b.finish()
}

/// Analyse an uncompressed log read from `r`, named `name` in the
/// analysis, in whatever pieces `r` hands it over.
pub fn analyze_reader<R: Read>(
    mut r: R,
    name: &str,
    opts: &AnalyzeOptions,
) -> std::io::Result<Analysis> {
    let mut b = incidents::Builder::new(opts.clone());
    b.begin_input(name, false);
    let bytes = input::scan(&mut r, &mut b)?;
    b.end_input(bytes);
    Ok(b.finish())
}

/// 0: no kill/respawn loop found; 1: a loop was found; 2: an input could
/// not be read (the others were analysed; an `Err` from [`analyze_paths`]
/// when none could).
pub fn exit_code(a: &Analysis) -> i32 {
    if a.unreadable.is_empty() {
        i32::from(a.loop_found)
    } else {
        2
    }
}
