//! `oomlab matrix` and `oomlab merge`: progress (a bar on a terminal), the
//! table, the exit code.

use std::path::{Path, PathBuf};

use oomlab::matrix::{MatrixEvent, RunResult};
use oomlab::text::{printable, printable_lines};

use super::{install_signals, load_checked, Exit};

/// Progress of a matrix: a bar on a terminal, plain lines otherwise.
struct MatrixUi {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: usize,
}

impl MatrixUi {
    fn say(&self, line: String) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn show(&mut self, e: MatrixEvent) {
        match e {
            MatrixEvent::Planned { runs, cells } => {
                self.total = runs;
                if let Some(b) = &self.bar {
                    b.set_length(runs as u64);
                }
                self.say(format!("oomlab: matrix of {cells} cell(s), {runs} run(s)"));
            }
            MatrixEvent::Prepared {
                kernel,
                release,
                accel,
            } => self.say(format!(
                "oomlab: kernel {} ready ({}), {}",
                kernel,
                release,
                accel.to_uppercase()
            )),
            MatrixEvent::Started {
                scenario,
                kernel,
                repeat,
                ..
            } => {
                if let Some(b) = &self.bar {
                    b.set_message(format!("{scenario} on {kernel} #{repeat}"));
                }
            }
            MatrixEvent::Finished { index, outcome } => {
                self.done += 1;
                if let Some(b) = &self.bar {
                    b.set_position(self.done as u64);
                }
                let what = match outcome {
                    RunResult::Judged(r) => format!(
                        "{} on {}: {}{}",
                        r.scenario,
                        r.kernel.name,
                        r.verdict.as_str().to_uppercase(),
                        r.evidence
                            .kill_rate_per_s
                            .map_or(String::new(), |k| format!(" ({k:.1} kills/s)"))
                    ),
                    RunResult::Failed(e) => format!("run {index}: could not run: {e}"),
                };
                self.say(format!("[{}/{}] {what}", self.done, self.total));
            }
        }
    }
}

/// A matrix's table on stdout, where its report is, and its exit code.
fn show_summary(summary: &oomlab::matrix::MatrixSummary, out: &Path) -> Exit {
    print!(
        "{}",
        printable_lines(&oomlab::matrix::summary::render_terminal(summary))
    );
    println!(
        "report: {}",
        printable(&out.join("report.html").display().to_string())
    );
    match summary.exit_code() {
        0 => Exit::Success,
        1 => Exit::Mismatch,
        _ => Exit::CannotRun,
    }
}

pub(super) fn merge(inputs: &[PathBuf], out: &Path) -> Exit {
    match oomlab::matrix::merge::merge(inputs, out) {
        Ok(summary) => show_summary(&summary, out),
        Err(e) => {
            eprintln!("oomlab: merge: {}", printable(&e.to_string()));
            Exit::BadInput
        }
    }
}

pub(super) async fn matrix(paths: &[PathBuf], opts: oomlab::matrix::MatrixOptions) -> Exit {
    let mut scenarios = Vec::new();
    for p in paths {
        match load_checked(p, None) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                eprintln!("oomlab: {e}");
                return Exit::BadInput;
            }
        }
    }
    // Every --kernel must be usable before anything boots.
    if let Ok(cat) = oomlab::image::kernel::catalogue() {
        let known: Vec<&str> = cat.kernels.iter().map(|k| k.name.as_str()).collect();
        for k in &opts.kernels {
            if let Some(why) = oomlab::scenario::kernel_problem(k, &known) {
                eprintln!("oomlab: --kernel: {}", printable(&why));
                return Exit::BadInput;
            }
        }
    }
    let cancel = install_signals();
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        let mut ui = MatrixUi {
            bar,
            total: 0,
            done: 0,
        };
        while let Some(e) = rx.recv().await {
            ui.show(e);
        }
        if let Some(b) = ui.bar {
            b.finish_and_clear();
        }
    });
    let result = oomlab::matrix::run_matrix(&scenarios, &opts, Some(tx), cancel).await;
    let _ = printer.await;
    match result {
        Ok(summary) => show_summary(&summary, &opts.out),
        Err(oomlab::matrix::MatrixError::Interrupted(sig)) => {
            eprintln!("oomlab: interrupted by signal {sig}; QEMU stopped, no summary written");
            Exit::Signal(sig)
        }
        Err(e) => {
            eprintln!("oomlab: matrix: {}", printable(&e.to_string()));
            Exit::CannotRun
        }
    }
}
