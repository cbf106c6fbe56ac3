//! `oomlab merge`: the folders of sharded matrices joined into one. Each
//! shard's runs are copied in (their paths are relative to their matrix
//! folder), cells are rebuilt from the runs' recorded metrics and the
//! scenario each run kept beside its logs, and every output is written as
//! a whole matrix would write it.

use std::path::{Path, PathBuf};

use super::summary::{self, CellSummary, MatrixSummary, RunRef};
use crate::scenario::Scenario;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{path}: {msg}")]
    Input { path: PathBuf, msg: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MergeError {
    let what = what.into();
    move |source| MergeError::Io { what, source }
}

/// Copies the folder `from` to `to` (files only, one level of folders is
/// all a run has).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let ty = e.file_type()?;
        if ty.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else if ty.is_file() && e.file_name() != crate::experiment::OUT_DIR_LOCK {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Joins `inputs` (matrix folders) into `out`.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<MatrixSummary, MergeError> {
    std::fs::create_dir_all(out).map_err(io(format!("create {}", out.display())))?;
    let _lock = crate::experiment::OutDirLock::acquire(out).map_err(|e| MergeError::Input {
        path: out.to_path_buf(),
        msg: e.to_string(),
    })?;
    let mut cells: Vec<CellSummary> = Vec::new();
    let (mut wall, mut jobs, mut repeat) = (0.0f64, 0, 0);
    for input in inputs {
        let path = input.join("summary.json");
        let bad = |msg: String| MergeError::Input {
            path: path.clone(),
            msg,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let shard: MatrixSummary = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        // Shards ran side by side: the merged wall time is the longest.
        wall = wall.max(shard.wall_s);
        jobs = jobs.max(shard.jobs);
        repeat = repeat.max(shard.repeat);
        let same = input.canonicalize().ok() == out.canonicalize().ok();
        for c in shard.cells {
            for r in &c.runs {
                if r.dir.is_absolute()
                    || r.dir
                        .components()
                        .any(|p| p == std::path::Component::ParentDir)
                {
                    return Err(bad(format!(
                        "run folder {} is not inside the matrix folder",
                        r.dir.display()
                    )));
                }
                if !same {
                    let (from, to) = (input.join(&r.dir), out.join(&r.dir));
                    if to.exists() {
                        return Err(bad(format!(
                            "run {} is in two inputs (the same shard given twice?)",
                            r.dir.display()
                        )));
                    }
                    copy_dir(&from, &to).map_err(io(format!(
                        "copy {} to {}",
                        from.display(),
                        to.display()
                    )))?;
                }
            }
            match cells
                .iter_mut()
                .find(|x| x.scenario == c.scenario && x.kernel == c.kernel)
            {
                Some(x) => x.runs.extend(c.runs),
                None => cells.push(c),
            }
        }
    }
    // Rebuild each cell from its runs, with the scenario its runs kept.
    let mut rebuilt = Vec::new();
    for c in cells {
        let mut runs: Vec<RunRef> = c.runs;
        runs.sort_by_key(|r| r.repeat);
        let sc = runs
            .iter()
            .find_map(|r| Scenario::load(&out.join(&r.dir).join(SCENARIO_FILE)).ok())
            .ok_or_else(|| MergeError::Input {
                path: out.to_path_buf(),
                msg: format!(
                    "no readable {SCENARIO_FILE} in the runs of {} on {}",
                    c.scenario, c.kernel
                ),
            })?;
        rebuilt.push(summary::cell(&sc, &c.kernel, runs));
    }
    // The order a single matrix would have: by scenario, then kernel.
    rebuilt.sort_by(|a, b| (&a.scenario, &a.kernel).cmp(&(&b.scenario, &b.kernel)));
    let merged = summary::totals(rebuilt, wall, jobs, repeat);
    summary::write_all(out, &merged)
        .map_err(io(format!("write the summaries into {}", out.display())))?;
    Ok(merged)
}

/// The scenario a run kept beside its logs.
pub const SCENARIO_FILE: &str = "scenario.yaml";
