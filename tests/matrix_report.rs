//! `oomlab matrix` through the real binary, two real guests at once, and
//! its HTML report opened in a real browser (Debian's headless Chromium):
//! the page must parse, and the timelines must be drawn with one kill mark
//! per `Killed process` line of the runs' console logs.

use std::path::{Path, PathBuf};
use std::process::Command;

use oomlab_e2e::{oomlab_bin, root};
use serde_json::Value;

fn chromium() -> PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .filter_map(|b| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(b))
                    .find(|c| c.is_file())
            })
        })
        .next()
        .expect("headless Chromium is needed (Debian package `chromium`; ci/setup.sh and `cargo xtask setup` install it)")
}

/// Chromium as root needs --no-sandbox; no GPU on a CI machine.
fn browser(args: &[&str], page: &Path) -> std::process::Output {
    Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium")
}

/// Pixels of exactly this colour in a PNG.
fn pixels_of(png_path: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    buf[..info.buffer_size()]
        .chunks(step)
        .filter(|p| p[..3] == rgb)
        .count()
}

#[test]
fn matrix_runs_cells_side_by_side_and_its_report_renders_in_a_browser() {
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(oomlab_bin())
        .current_dir(root())
        .args([
            "matrix",
            "scenarios/seed-livelock.yaml",
            "scenarios/oom-group.yaml",
            "--jobs",
            "2",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    let logs = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{logs}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{summary:#}");
    let verdict = |name: &str| {
        cells
            .iter()
            .find(|c| c["scenario"] == name)
            .map(|c| c["verdict"].clone())
    };
    assert_eq!(verdict("seed-livelock"), Some("livelock".into()), "{logs}");
    assert_eq!(verdict("oom-group"), Some("recovered".into()), "{logs}");
    assert!(logs.contains("loop continues"), "{logs}");
    assert!(
        logs.contains("the service is down until restarted"),
        "{logs}"
    );
    for c in cells {
        assert_eq!(c["stable"], true);
        let dir = out.path().join(c["runs"][0]["dir"].as_str().unwrap());
        assert!(dir.join("report.json").is_file() && dir.join("console.log").is_file());
    }
    let md = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    assert!(md.contains("| seed-livelock |"), "{md}");

    // Every kill on the consoles is one kill mark in the browser's DOM.
    let kills: usize = cells
        .iter()
        .map(|c| {
            let dir = out.path().join(c["runs"][0]["dir"].as_str().unwrap());
            std::fs::read_to_string(dir.join("console.log"))
                .unwrap()
                .matches("Killed process")
                .count()
        })
        .sum();
    assert!(kills >= 10, "{kills}");
    let page = out.path().join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    let dom = browser(&["--dump-dom"], &page);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(dom.matches(r#"<line class="kill""#).count(), kills, "{dom}");
    assert_eq!(dom.matches("<svg").count(), 2);
    assert!(dom.contains(r#"<polyline class="mem""#));

    // And they are drawn: the screenshot holds the kill and memory colours.
    let shot = out.path().join("report.png");
    let s = browser(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1400",
        ],
        &page,
    );
    assert!(shot.is_file(), "{}", String::from_utf8_lossy(&s.stderr));
    assert!(
        pixels_of(&shot, [0xd7, 0x26, 0x3d]) > 0,
        "no kill mark drawn"
    );
    assert!(
        pixels_of(&shot, [0x2d, 0xa4, 0x4e]) > 0,
        "no MemAvailable line drawn"
    );
}

fn matrix(out: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let o = Command::new(oomlab_bin())
        .current_dir(root())
        .args([
            "matrix",
            "scenarios/seed-livelock.yaml",
            "scenarios/oom-group.yaml",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap_or_else(|e| {
        panic!(
            "no summary ({e}):\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code(), serde_json::from_str(&summary).unwrap())
}

fn verdicts(summary: &Value) -> Vec<(String, String, Value)> {
    let mut v: Vec<(String, String, Value)> = summary["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["scenario"].as_str().unwrap().to_string(),
                c["kernel"].as_str().unwrap().to_string(),
                c["verdict"].clone(),
            )
        })
        .collect();
    v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    v
}

/// Kernel CI's view: the matrix split over two "machines" (shards), merged,
/// gives the same verdicts as one unsharded matrix, and its JUnit, KTAP and
/// KCIDB are accepted by their consumers' own readers.
#[test]
fn shards_merge_to_the_unsharded_verdicts_in_ci_formats() {
    use oomlab_e2e::{ktap, python_check, JUNIT_READ, KCIDB_VALIDATE};
    let tmp = tempfile::tempdir().unwrap();
    let (code, whole) = matrix(&tmp.path().join("whole"), &["--jobs", "2"]);
    assert_eq!(code, Some(0));
    let (c1, s1) = matrix(&tmp.path().join("s1"), &["--shard", "1/2", "--jobs", "1"]);
    let (c2, s2) = matrix(&tmp.path().join("s2"), &["--shard", "2/2", "--jobs", "1"]);
    assert_eq!((c1, c2), (Some(0), Some(0)));
    assert_eq!(s1["cells"].as_array().unwrap().len(), 1);
    assert_eq!(s2["cells"].as_array().unwrap().len(), 1);
    let merged_dir = tmp.path().join("merged");
    let o = Command::new(oomlab_bin())
        .arg("merge")
        .arg(tmp.path().join("s1"))
        .arg(tmp.path().join("s2"))
        .arg("--out")
        .arg(&merged_dir)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let merged: Value =
        serde_json::from_str(&std::fs::read_to_string(merged_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(verdicts(&merged), verdicts(&whole));
    // The merged folder holds every run it links to.
    for c in merged["cells"].as_array().unwrap() {
        let dir = merged_dir.join(c["runs"][0]["dir"].as_str().unwrap());
        assert!(dir.join("console.log").is_file() && dir.join("scenario.yaml").is_file());
    }

    // KCIDB: the consumer's own schema accepts it, one test per cell.
    let n = python_check(KCIDB_VALIDATE, &merged_dir.join("kcidb.json"));
    assert_eq!(n.trim(), "2");
    // JUnit: a JUnit parser reads one suite per kernel, both cases passed.
    let j: Value =
        serde_json::from_str(&python_check(JUNIT_READ, &merged_dir.join("junit.xml"))).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 1, "{j}");
    assert_eq!(j[0][1], 2);
    assert_eq!(j[0][2], 0);
    // KTAP: the grammar of ktap.rst, one subtest per kernel.
    let k =
        ktap::parse(&std::fs::read_to_string(merged_dir.join("results.ktap")).unwrap()).unwrap();
    assert_eq!(k.len(), 1);
    assert_eq!(k[0].subtests.len(), 2);
    assert!(k[0].ok);
}
