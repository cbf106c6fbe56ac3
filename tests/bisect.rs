//! `oomlab run --bisect` under a real `git bisect run`, over a fake history
//! in which each commit names the kernel to boot and the scenario to run
//! (catalogue kernels standing in for kernel commits): one commit's build
//! is broken (its kernel is not a boot image, so it is skipped), and from
//! one commit on the kernel panics on OOM (`sysctl.vm.panic_on_oom=1` on
//! its command line: the regression). Bisect must name that commit.

use std::path::Path;
use std::process::Command;

use oomlab_e2e::{oomlab_bin, root};

fn git(repo: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .current_dir(repo)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn git_bisect_run_finds_the_commit_that_turned_the_loop_into_a_panic() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "-q"]);
    let seed = std::fs::read_to_string(root().join("scenarios/seed-livelock.yaml")).unwrap();
    let commit = |i: usize, kernel: &str, cmdline: &str| {
        std::fs::write(r.join("kernel"), kernel).unwrap();
        let mut sc = seed.clone();
        if !cmdline.is_empty() {
            sc = sc.replace(
                "  memory_mib: 256\n",
                &format!("  memory_mib: 256\n  cmdline: [{cmdline}]\n"),
            );
        }
        std::fs::write(r.join("scenario.yaml"), sc).unwrap();
        git(r, &["add", "-A"]);
        git(
            r,
            &[
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                &format!("commit {i}"),
            ],
        );
        git(r, &["rev-parse", "HEAD"])
    };
    let good = "debian-bookworm-cloud-6.1";
    let broken = r.join("not-a-kernel");
    std::fs::write(&broken, b"this build failed").unwrap();
    let broken = broken.display().to_string();
    let c1 = commit(1, good, "");
    let _c2 = commit(2, good, "");
    let _c3 = commit(3, &broken, "");
    let _c4 = commit(4, good, "");
    let c5 = commit(5, good, "sysctl.vm.panic_on_oom=1");
    let _c6 = commit(6, good, "sysctl.vm.panic_on_oom=1");
    git(r, &["bisect", "start", "HEAD", &c1]);
    let script = format!(
        "exec {} run --bisect --accel tcg scenario.yaml --kernel \"$(cat kernel)\" --out \"$PWD/../bisect-out-$(git rev-parse --short HEAD)\"",
        oomlab_bin().display()
    );
    let o = Command::new("git")
        .current_dir(r)
        .args(["bisect", "run", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!("{c5} is the first bad commit")),
        "bisect should name commit 5 ({c5}):\n{out}"
    );
    let _ = git(r, &["bisect", "reset"]);
}
