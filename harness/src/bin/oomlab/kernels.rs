//! `oomlab kernels`: the catalogue, what is cached, fetching.

use super::Exit;

/// `oomlab kernels`: the catalogue, one line per kernel, with what the
/// cache holds; fetching first when asked.
pub(super) fn kernels(fetch: Option<&str>, all: bool) -> Exit {
    use oomlab::image::kernel::{self, CacheState};
    let cat = match kernel::catalogue() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oomlab: {e}");
            return Exit::CannotRun;
        }
    };
    let wanted: Vec<&str> = match (fetch, all) {
        (Some(n), _) if cat.get(n).is_none() => {
            eprintln!(
                "oomlab: unknown kernel `{n}`: the catalogue has {}",
                cat.names()
            );
            return Exit::BadInput;
        }
        (Some(n), _) => vec![n],
        (None, true) => cat.kernels.iter().map(|k| k.name.as_str()).collect(),
        (None, false) => Vec::new(),
    };
    let mut failed = false;
    for name in wanted {
        let entry = cat.get(name).expect("checked above");
        eprintln!("oomlab: fetching {name} ({})", entry.origin());
        match oomlab::image::resolve_kernel(name) {
            Ok(k) if k.pinned => eprintln!(
                "oomlab: {name}: ok, {} (sha256 {})",
                k.path.display(),
                k.sha256
            ),
            Ok(k) => match kernel::float_record(&k.path) {
                Ok(rec) => eprintln!(
                    "oomlab: {name}: FLOATED to {}={} (release {}); to pin it set `package: {}`, \
                     `version: {}`, `release: {}`, `sha256: {}` in images/kernels.yaml",
                    rec.package,
                    rec.version,
                    rec.release,
                    rec.package,
                    rec.version,
                    rec.release,
                    rec.sha256
                ),
                Err(e) => eprintln!("oomlab: {name}: NOT pinned: {e}"),
            },
            Err(e) => {
                eprintln!("oomlab: {name}: {e}");
                failed = true;
                continue;
            }
        }
        if let Err(e) = kernel::ensure_config(entry) {
            eprintln!("oomlab: {name}: note: no config: {e}");
        }
    }
    println!("{:<36} {:<28} {:<22} origin", "kernel", "release", "cached");
    for k in &cat.kernels {
        let (state, config) = match kernel::cache_state(k) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("oomlab: {e}");
                return Exit::CannotRun;
            }
        };
        let mut cached = match state {
            CacheState::Pinned(_) => "yes".to_string(),
            CacheState::Floated(_) => "FLOATED (not the pin)".to_string(),
            CacheState::File(_, true) => "file".to_string(),
            CacheState::File(_, false) => "file MISSING".to_string(),
            CacheState::Absent => "no".to_string(),
        };
        if config.is_some() {
            cached.push_str(", config");
        }
        let name = if k.name == cat.default {
            format!("{} (default)", k.name)
        } else {
            k.name.clone()
        };
        println!("{name:<36} {:<28} {cached:<22} {}", k.release, k.origin());
    }
    if failed {
        Exit::CannotRun
    } else {
        Exit::Success
    }
}
