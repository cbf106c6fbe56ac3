//! `oomlab analyze` and its reproduction (`--emit-scenario`).

use std::path::{Path, PathBuf};

use oomlab::scenario::Scenario;
use oomlab::text::printable;

use super::Exit;

/// Write the scenario that reproduces `a` to `out`, checked the way `oomlab
/// run` will read it.
fn emit_scenario(
    a: &oomlab::analyze::Analysis,
    inputs: &[PathBuf],
    out: &Path,
) -> Result<(), String> {
    let source = inputs
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let cat = oomlab::image::kernel::catalogue().map_err(|e| e.to_string())?;
    let text = oomlab::analyze::scenario_yaml(a, &source, &cat).map_err(|e| e.to_string())?;
    Scenario::parse(out, &text).map_err(|e| format!("the scenario written is not valid: {e}"))?;
    std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(())
}

pub(super) fn analyze(
    inputs: &[PathBuf],
    json: bool,
    opts: &oomlab::analyze::AnalyzeOptions,
    scenario_out: Option<&Path>,
) -> Exit {
    match oomlab::analyze::analyze_paths(inputs, opts) {
        Ok(a) => {
            if let Some(out) = scenario_out {
                match emit_scenario(&a, inputs, out) {
                    Ok(()) => eprintln!(
                        "oomlab: wrote {} (run it: oomlab run {})",
                        printable(&out.display().to_string()),
                        printable(&out.display().to_string())
                    ),
                    Err(e) => {
                        eprintln!("oomlab: cannot write a scenario: {}", printable(&e));
                        return Exit::BadInput;
                    }
                }
            }
            // like grep: every readable input analysed, each unreadable one
            // reported, exit 2 at the end
            for e in &a.unreadable {
                eprintln!("oomlab: {}: {}", printable(&e.path), printable(&e.error));
            }
            if json {
                match serde_json::to_string_pretty(&a) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("oomlab: cannot encode the analysis: {e}");
                        return Exit::BadInput;
                    }
                }
            } else {
                print!("{}", oomlab::analyze::render_human(&a));
            }
            match oomlab::analyze::exit_code(&a) {
                0 => Exit::Success,
                1 => Exit::Mismatch,
                2 => Exit::BadInput,
                other => {
                    eprintln!("oomlab: analyze gave an unknown status {other}");
                    Exit::CannotRun
                }
            }
        }
        Err(oomlab::analyze::AnalyzeError::Unreadable(errors)) => {
            for e in &errors {
                eprintln!("oomlab: {}: {}", printable(&e.path), printable(&e.error));
            }
            Exit::BadInput
        }
        Err(e) => {
            eprintln!("oomlab: {}", printable(&e.to_string()));
            Exit::BadInput
        }
    }
}
