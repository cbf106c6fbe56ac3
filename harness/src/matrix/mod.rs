//! `oomlab matrix`: every scenario on every kernel, `repeat` times, as many
//! guests at once as `jobs`, then one summary: a cell per (scenario,
//! kernel) with its verdicts across repeats (unstable cells are marked,
//! never averaged away), the measured costs, and a sentence saying what the
//! mitigation did. Outputs: a terminal table, `summary.md`,
//! `summary.json` (every run's own `report.json` stays in its folder) and
//! one self-contained `report.html` with a timeline per run.

pub mod formats;
pub mod html;
pub mod merge;
pub mod summary;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc::UnboundedSender, watch};

pub use summary::{CellSummary, MatrixSummary, RunRef};

use crate::experiment::{self, ExperimentError, Prepared, RunOptions};
use crate::report::Report;
use crate::scenario::{Accel, Scenario};
use crate::vm;

/// What the matrix is asked to do.
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    /// Kernels to run every scenario on; empty: each scenario's own.
    pub kernels: Vec<String>,
    /// Guests at once.
    pub jobs: usize,
    /// Runs per cell.
    pub repeat: usize,
    pub out: PathBuf,
    pub accel: Option<Accel>,
    pub reprobe: bool,
    /// `Some((i, n))`: only the cells of shard i of n (1-based), for
    /// splitting a matrix over CI machines; `oomlab merge` joins them.
    pub shard: Option<(usize, usize)>,
}

/// `I/N` with 1 <= I <= N.
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: expected I/N, e.g. 1/2"))?;
    let (i, n): (usize, usize) = (
        i.trim()
            .parse()
            .map_err(|_| format!("`{s}`: I is not a number"))?,
        n.trim()
            .parse()
            .map_err(|_| format!("`{s}`: N is not a number"))?,
    );
    if n == 0 || i == 0 || i > n {
        return Err(format!("`{s}`: need 1 <= I <= N"));
    }
    Ok((i, n))
}

/// One run to do: a scenario on a kernel, the `repeat`-th time.
#[derive(Debug, Clone)]
pub struct Planned {
    pub index: usize,
    pub scenario: Arc<Scenario>,
    pub kernel: String,
    pub repeat: usize,
    pub dir: PathBuf,
}

/// What the matrix tells its UI.
#[derive(Debug, Clone)]
pub enum MatrixEvent {
    /// The runs, before any starts.
    Planned {
        runs: usize,
        cells: usize,
    },
    /// Kernel, payload and accelerator for one kernel are ready.
    Prepared {
        kernel: String,
        release: String,
        accel: String,
    },
    Started {
        index: usize,
        scenario: String,
        kernel: String,
        repeat: usize,
    },
    Finished {
        index: usize,
        outcome: RunResult,
    },
}

/// How one run ended: judged, or it could not happen.
#[derive(Debug, Clone)]
pub enum RunResult {
    Judged(Box<Report>),
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error(transparent)]
    Experiment(#[from] ExperimentError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
}

impl From<merge::MergeError> for MatrixError {
    fn from(e: merge::MergeError) -> Self {
        MatrixError::Io {
            what: "merge".into(),
            source: std::io::Error::other(e.to_string()),
        }
    }
}

/// A name that is safe as one path component.
pub fn path_part(s: &str) -> String {
    let base = Path::new(s)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| s.to_string());
    base.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// The runs of a matrix, repeat-major so a first pass over every cell
/// finishes before the repeats start. With a shard, the cells (sorted by
/// scenario and kernel, so the split does not depend on the order the
/// files were given in) are dealt round-robin, every repeat of a cell in
/// the same shard.
pub fn plan(scenarios: &[Scenario], opts: &MatrixOptions) -> Vec<Planned> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for s in scenarios {
        let kernels: Vec<String> = if opts.kernels.is_empty() {
            vec![s.vm.kernel.clone()]
        } else {
            opts.kernels.clone()
        };
        for k in kernels {
            keys.push((s.name.clone(), k));
        }
    }
    keys.sort();
    keys.dedup();
    let in_shard = |name: &str, kernel: &str| match opts.shard {
        None => true,
        Some((i, n)) => keys
            .iter()
            .position(|(s, k)| s == name && k == kernel)
            .is_some_and(|pos| pos % n == i - 1),
    };
    let mut runs = Vec::new();
    for repeat in 1..=opts.repeat.max(1) {
        for s in scenarios {
            let kernels: Vec<String> = if opts.kernels.is_empty() {
                vec![s.vm.kernel.clone()]
            } else {
                opts.kernels.clone()
            };
            let scenario = Arc::new(s.clone());
            for kernel in kernels {
                if !in_shard(&s.name, &kernel) {
                    continue;
                }
                let dir = opts
                    .out
                    .join(path_part(&s.name))
                    .join(path_part(&kernel))
                    .join(format!("run-{repeat}"));
                runs.push(Planned {
                    index: runs.len(),
                    scenario: scenario.clone(),
                    kernel,
                    repeat,
                    dir,
                });
            }
        }
    }
    runs
}

/// The default `--jobs`: one guest per core (TCG keeps a core busy per
/// guest), at least one.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1)
}

/// Runs the matrix and writes its summaries under `opts.out`.
pub async fn run_matrix(
    scenarios: &[Scenario],
    opts: &MatrixOptions,
    ui: Option<UnboundedSender<MatrixEvent>>,
    cancel: watch::Receiver<Option<i32>>,
) -> Result<MatrixSummary, MatrixError> {
    let tell = |e: MatrixEvent| vm::runner::tell(ui.as_ref(), e);
    let started = Instant::now();
    let runs = plan(scenarios, opts);
    let cells = {
        let mut keys: Vec<(String, String)> = runs
            .iter()
            .map(|r| (r.scenario.name.clone(), r.kernel.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        keys.len()
    };
    tell(MatrixEvent::Planned {
        runs: runs.len(),
        cells,
    });
    std::fs::create_dir_all(&opts.out).map_err(|source| MatrixError::Io {
        what: format!("create {}", opts.out.display()),
        source,
    })?;
    // One matrix per folder; and an earlier matrix's summaries go first,
    // so an interrupted matrix never leaves summaries that are not its own.
    let _lock = experiment::OutDirLock::acquire(&opts.out)?;
    for f in summary::OUTPUTS {
        let _ = std::fs::remove_file(opts.out.join(f));
    }

    // Kernel, payload and accelerator once per (kernel, accelerator).
    let mut prepared: BTreeMap<(String, Accel), Prepared> = BTreeMap::new();
    for r in &runs {
        let accel = opts.accel.unwrap_or(r.scenario.vm.accel);
        let key = (r.kernel.clone(), accel);
        if prepared.contains_key(&key) {
            continue;
        }
        let run_opts = RunOptions {
            accel: Some(accel),
            kernel: Some(r.kernel.clone()),
            out_dir: None,
            reprobe: opts.reprobe,
        };
        let p = experiment::prepare(&r.scenario, &run_opts, None, cancel.clone())
            .await
            .map_err(|e| match e {
                ExperimentError::Interrupted(sig) => MatrixError::Interrupted(sig),
                e => MatrixError::Experiment(e),
            })?;
        tell(MatrixEvent::Prepared {
            kernel: r.kernel.clone(),
            release: p.kernel.release.clone(),
            accel: p.decision.used.as_str().to_string(),
        });
        prepared.insert(key, p);
    }

    let jobs = opts.jobs.max(1);
    let mut pending = runs.iter();
    let mut set = tokio::task::JoinSet::new();
    let mut results: Vec<Option<RunResult>> = vec![None; runs.len()];
    let mut interrupted = None;
    loop {
        while set.len() < jobs && interrupted.is_none() {
            let Some(r) = pending.next() else { break };
            let accel = opts.accel.unwrap_or(r.scenario.vm.accel);
            let prep = prepared[&(r.kernel.clone(), accel)].clone();
            tell(MatrixEvent::Started {
                index: r.index,
                scenario: r.scenario.name.clone(),
                kernel: r.kernel.clone(),
                repeat: r.repeat,
            });
            let (r, cancel) = (r.clone(), cancel.clone());
            set.spawn(async move {
                let _ = std::fs::remove_dir_all(&r.dir);
                let made = std::fs::create_dir_all(&r.dir);
                let out = match made {
                    Ok(()) => {
                        experiment::boot_and_judge(&r.scenario, prep, &r.dir, None, cancel).await
                    }
                    Err(source) => Err(ExperimentError::Io {
                        what: format!("create {}", r.dir.display()),
                        source,
                    }),
                };
                (r.index, out)
            });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let (index, out) = joined.map_err(|e| MatrixError::Io {
            what: "a matrix run".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let result = match out {
            Ok(report) => RunResult::Judged(Box::new(report)),
            Err(ExperimentError::Interrupted(sig)) => {
                interrupted = Some(sig);
                continue;
            }
            Err(ExperimentError::LostEvidence { errors, .. }) => {
                RunResult::Failed(format!("evidence lost: {}", errors.join("; ")))
            }
            Err(e) => RunResult::Failed(e.to_string()),
        };
        tell(MatrixEvent::Finished {
            index,
            outcome: result.clone(),
        });
        results[index] = Some(result);
    }
    if let Some(sig) = interrupted.or(*cancel.borrow()) {
        return Err(MatrixError::Interrupted(sig));
    }
    let done: Vec<(Planned, RunResult)> = runs
        .into_iter()
        .zip(results)
        .filter_map(|(p, r)| r.map(|r| (p, r)))
        .collect();
    let summary = summary::summarize(
        &done,
        &opts.out,
        started.elapsed().as_secs_f64(),
        jobs,
        opts.repeat.max(1),
    );
    summary::write_all(&opts.out, &summary).map_err(|source| MatrixError::Io {
        what: format!("write the summaries into {}", opts.out.display()),
        source,
    })?;
    Ok(summary)
}
