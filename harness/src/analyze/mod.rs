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
mod incidents;
mod input;
mod model;
mod records;
mod render;

use std::io::Read;
use std::path::PathBuf;

use serde::Serialize;

pub use era::Era;
pub use model::{
    Chosen, How, Incident, LoopFinding, MasterGuess, Note, Reaper, SpareReason, Spared, Totals,
    Victim, VictimGroup,
};
pub use render::render_human;

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
}

/// Everything `oomlab analyze` found.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub inputs: Vec<InputStats>,
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

/// Why an input could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no input given")]
    NoInput,
}

/// Analyse `inputs` in order (`-` = stdin), as one log.
pub fn analyze_paths(inputs: &[PathBuf], opts: &AnalyzeOptions) -> Result<Analysis, AnalyzeError> {
    if inputs.is_empty() {
        return Err(AnalyzeError::NoInput);
    }
    let mut b = incidents::Builder::new(opts.clone());
    for p in inputs {
        let name = p.display().to_string();
        let io_err = |source| AnalyzeError::Io {
            path: name.clone(),
            source,
        };
        let (mut r, gzip) = input::open(p).map_err(io_err)?;
        b.begin_input(&name, gzip);
        let bytes = input::scan(&mut r, &mut b).map_err(io_err)?;
        b.end_input(bytes);
    }
    Ok(b.finish())
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

/// 0: no kill/respawn loop found; 1: a loop was found. (Unreadable input is
/// an `Err` from [`analyze_paths`]: exit status 2.)
pub fn exit_code(a: &Analysis) -> i32 {
    i32::from(a.loop_found)
}
