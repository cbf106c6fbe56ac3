use super::*;

const GOOD: &str = "\
name: t
expect: livelock
vm:
  memory_mib: 256
limits:
  duration_s: 10
  settle_s: 3
workload:
  workers: 4
  worker_mem_mib: 60
mitigations:
  - cgroup: { memory_max_mib: 150, oom_group: true }
  - sysctl: { key: vm.overcommit_memory, value: \"2\" }
  - oom_score_adj: { master: 1000, workers: 0 }
";

fn err(text: &str) -> String {
    Scenario::parse(Path::new("scenarios/x.yaml"), text)
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn good_scenario_parses_and_renders_guest_conf() {
    let s = Scenario::parse(Path::new("g.yaml"), GOOD).unwrap();
    assert_eq!(s.expect, Some(Verdict::Livelock));
    insta::assert_snapshot!(s.guest_conf().render(), @r"
    name=t
    duration_ms=10000
    workers=4
    worker_mem_kib=61440
    worker_step_kib=0
    worker_step_ms=0
    touch_ms=50
    respawn=immediate
    respawn_delay_ms=0
    canary_ms=100
    sample_ms=500
    mitigation=cgroup memory_max_mib=150 oom_group=1
    mitigation=sysctl key=vm.overcommit_memory value=2
    mitigation=oom_score_adj master=1000 workers=0 when=after_fork
    root=initramfs
    net=0
    ssh=0
    zram_mib=0
    load_port=0
    load_connections=0
    load_body_kib=0
    ");
}

/// The guest reads what the harness writes, for every shipped scenario,
/// with the payload's own reader: no diagnostics, nothing lost.
#[test]
fn shipped_scenarios_conf_reads_back_without_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let conf = s.guest_conf();
            let (back, diags) = oomlab_protocol::conf::parse(&conf.render());
            assert!(diags.is_empty(), "{}: {diags:?}", path.display());
            assert_eq!(back, conf, "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 4);
}

#[test]
fn shipped_scenarios_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(
        n >= 2,
        "expected the shipped scenarios in {}",
        dir.display()
    );
}

/// Each broken file, and the words its error must contain: the file, the
/// line and the field, so a user can fix it without reading our code.
#[test]
fn broken_scenarios_are_refused_with_file_line_and_field() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown top-level field",
            "name: t\nexpcet: livelock\n",
            &["scenarios/x.yaml:2:", "unknown field `expcet`"],
        ),
        (
            "unknown nested field",
            "name: t\nvm:\n  memory: 256\n",
            &["scenarios/x.yaml:3:", "unknown field `memory`"],
        ),
        (
            "missing name",
            "expect: livelock\n",
            &["scenarios/x.yaml", "missing field `name`"],
        ),
        (
            "bad verdict",
            "name: t\nexpect: deadlock\n",
            &[
                "scenarios/x.yaml:2:",
                "unknown variant `deadlock`",
                "livelock",
            ],
        ),
        (
            "wrong type",
            "name: t\nvm:\n  memory_mib: lots\n",
            &["scenarios/x.yaml:3:", "vm.memory_mib", "invalid type"],
        ),
        (
            "memory too small",
            "name: t\nvm:\n  memory_mib: 16\n",
            &[
                "scenarios/x.yaml:3:",
                "field `vm.memory_mib`",
                "16 is out of range",
            ],
        ),
        (
            "zero workers",
            "name: t\nworkload:\n  workers: 0\n",
            &["scenarios/x.yaml:3:", "field `workload.workers`"],
        ),
        (
            "settle longer than the window",
            "name: t\nlimits:\n  duration_s: 5\n  settle_s: 8\n",
            &[
                "scenarios/x.yaml:4:",
                "field `limits.settle_s`",
                "shorter than limits.duration_s",
            ],
        ),
        (
            "negative duration",
            "name: t\nlimits:\n  duration_s: -1\n",
            &["scenarios/x.yaml:3:", "field `limits.duration_s`"],
        ),
        (
            "cgroup limit above the VM's memory",
            "name: t\nvm:\n  memory_mib: 256\nmitigations:\n  - cgroup: { memory_max_mib: 512 }\n",
            &[
                "scenarios/x.yaml:5:",
                "field `mitigations.cgroup.memory_max_mib`",
                "512",
            ],
        ),
        (
            "unknown mitigation",
            "name: t\nmitigations:\n  - teleport: {}\n",
            &["scenarios/x.yaml:3:", "unknown mitigation", "earlyoom"],
        ),
        (
            "unknown mitigation field",
            "name: t\nmitigations:\n  - cgroup: { memroy_max_mib: 100 }\n",
            &[
                "scenarios/x.yaml:3:",
                "`mitigations.cgroup.memroy_max_mib`",
                "unknown field",
            ],
        ),
        (
            "bad sysctl key",
            "name: t\nmitigations:\n  - sysctl: { key: ../../etc/passwd, value: x }\n",
            &["scenarios/x.yaml:3:", "field `mitigations.sysctl.key`"],
        ),
        (
            "oom_score_adj out of range",
            "name: t\nmitigations:\n  - oom_score_adj: { master: 5000 }\n",
            &[
                "scenarios/x.yaml:3:",
                "field `mitigations.oom_score_adj.master`",
                "-1000..=1000",
            ],
        ),
        (
            "delay without respawn: delay",
            "name: t\nworkload:\n  respawn_delay_ms: 100\n",
            &["scenarios/x.yaml:3:", "field `workload.respawn_delay_ms`"],
        ),
        (
            "not yaml at all",
            "name: [unclosed\n",
            &["scenarios/x.yaml:"],
        ),
        (
            "name that is a path",
            "name: ../../escape\n",
            &["scenarios/x.yaml:1:", "field `name`", "A-Z a-z 0-9"],
        ),
        (
            "empty name",
            "name: \"\"\n",
            &["scenarios/x.yaml:1:", "field `name`", "must not be empty"],
        ),
    ];
    assert!(cases.len() >= 10);
    for (what, text, wants) in cases {
        let msg = err(text);
        for want in *wants {
            assert!(
                msg.contains(want),
                "{what}: error {msg:?} should contain {want:?}"
            );
        }
    }
}

#[test]
fn unreadable_file_names_the_file() {
    let e = Scenario::load(Path::new("/nonexistent/oomlab.yaml")).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("/nonexistent/oomlab.yaml: cannot read"));
}

#[test]
fn line_of_field_follows_the_path() {
    let text = "vm:\n  cpus: 1\nlimits:\n  cpus: 2\n";
    assert_eq!(line_of_field(text, "limits.cpus"), 4);
    assert_eq!(line_of_field(text, "vm.cpus"), 2);
    assert_eq!(line_of_field(text, "workload.workers"), 0);
}

#[test]
fn expected_verdict_per_kernel() {
    let s = Scenario::parse(
        Path::new("k.yaml"),
        "name: t\nexpect: livelock\nexpect_kernels:\n  \"2.6.32*\": inconclusive\n  \"2.6.32-642*\": n/a\n  debian-bullseye-cloud-5.10: recovered\n",
    )
    .unwrap();
    assert_eq!(
        s.expected_for("debian-bookworm-cloud-6.1", Some("6.1.0-50-cloud-amd64")),
        Some(Verdict::Livelock)
    );
    assert_eq!(
        s.expected_for("debian-bullseye-cloud-5.10", None),
        Some(Verdict::Recovered)
    );
    assert_eq!(
        s.expected_for("bzImage", Some("2.6.32-431.el6.x86_64")),
        Some(Verdict::Inconclusive)
    );
    assert_eq!(
        s.expected_for("bzImage", Some("2.6.32-642.6.2.el6.x86_64")),
        Some(Verdict::NotApplicable),
        "the longer pattern wins"
    );
    assert!(glob_match("*-rt-amd64", "6.1.0-50-rt-amd64"));
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("a*b*c", "axxc"));
    assert!(!glob_match("6.1*", "6.2.0"));
    assert!(glob_match("6.1*", "6.1"));
}
