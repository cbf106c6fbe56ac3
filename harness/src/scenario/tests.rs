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

/// Every shipped scenario file.
fn shipped() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut v: Vec<_> = super::SHIPPED_DIRS
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

/// The guest reads what the harness writes, for every shipped scenario,
/// with the payload's own reader: no diagnostics, nothing lost.
#[test]
fn shipped_scenarios_conf_reads_back_without_diagnostics() {
    let all = shipped();
    assert!(all.len() >= 19, "{all:?}");
    for path in all {
        let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let conf = s.guest_conf();
        let (back, diags) = oomlab_protocol::conf::parse(&conf.render());
        assert!(diags.is_empty(), "{}: {diags:?}", path.display());
        assert_eq!(back, conf, "{}", path.display());
    }
}

/// Every shipped scenario loads and says what it expects: a scenario that
/// expects nothing could not fail.
#[test]
fn shipped_scenarios_are_valid_and_expect_a_verdict() {
    for path in shipped() {
        let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.expect.is_some(), "{}: no expect:", path.display());
    }
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

/// Hostile input, as a new user or an attacker would write it: each file
/// is refused quickly, with the file, the line where there is one, and the
/// field or the limit named. Nothing here may take long or much memory
/// (the bounds in `bounds.rs` stop each before it grows).
#[test]
fn hostile_scenarios_are_refused_naming_file_line_and_limit() {
    let nest = |open: &str, close: &str, n: usize| {
        format!(
            "name: t\nvm:\n  cmdline: {}{}\n",
            open.repeat(n),
            close.repeat(n)
        )
    };
    let words = |n: usize, len: usize| {
        let w: Vec<String> = (0..n)
            .map(|i| format!("w{i}={}", "x".repeat(len)))
            .collect();
        format!("name: t\nvm:\n  cmdline: [{}]\n", w.join(", "))
    };
    let laughs = {
        let mut s = "name: t\nvm:\n  cmdline:\n    - &l0 lol\n".to_string();
        for i in 1..10 {
            s += &format!(
                "description: &l{i} [{}]\n",
                vec![format!("*l{}", i - 1); 10].join(",")
            );
        }
        s
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        // sizes
        (
            "over 256 KiB of text",
            format!("name: t\n#{}\n", "x".repeat(256 << 10)),
            vec!["scenarios/x.yaml: file size limit exceeded", "262144 bytes"],
        ),
        (
            "900 sysctl entries",
            format!(
                "name: t\nmitigations:\n{}",
                "  - sysctl:\n      key: vm.x\n      value: \"1\"\n".repeat(900)
            ),
            vec![
                "scenarios/x.yaml:2: list length limit exceeded",
                "`mitigations`",
                "900 entries, at most 32",
            ],
        ),
        (
            "33 mitigations",
            format!(
                "name: t\nmitigations:\n{}",
                "  - sysctl:\n      key: vm.x\n      value: \"1\"\n".repeat(33)
            ),
            vec!["scenarios/x.yaml:2:", "list length limit", "33 entries"],
        ),
        (
            "65 cmdline words",
            words(65, 1),
            vec![
                "scenarios/x.yaml:3: list length limit exceeded",
                "`vm.cmdline`",
                "65 words, at most 64",
            ],
        ),
        (
            "a cmdline word of 300 bytes",
            words(1, 300),
            vec![
                "scenarios/x.yaml:3: word length limit exceeded",
                "`vm.cmdline`",
            ],
        ),
        (
            "a kernel command line the kernel would cut",
            words(10, 240),
            vec![
                "scenarios/x.yaml:3: kernel command line limit exceeded",
                "keeps 2047",
            ],
        ),
        (
            "a description of 5000 bytes",
            format!("name: t\ndescription: {}\n", "d".repeat(5000)),
            vec![
                "scenarios/x.yaml:2: description length limit exceeded",
                "5000 bytes, at most 4096",
            ],
        ),
        (
            "a 200 KB scalar",
            format!("name: t\ndescription: {}\n", "d".repeat(200_000)),
            vec!["scenarios/x.yaml:2: description length limit"],
        ),
        // depth
        (
            "200 KB of nested flow sequences",
            nest("[", "]", 100_000),
            vec![
                "scenarios/x.yaml:3: nesting depth limit exceeded",
                "more than 32 levels",
            ],
        ),
        (
            "nested flow maps",
            format!("name: t\nvm: {}\n", "{a: ".repeat(40) + &"}".repeat(40)),
            vec!["scenarios/x.yaml:2: nesting depth limit exceeded"],
        ),
        (
            "brackets hidden in a quoted string still count",
            format!("name: t\ndescription: \"{}\"\n", "[]".repeat(300)),
            vec![
                "scenarios/x.yaml:2: flow collections limit exceeded",
                "more than 256",
            ],
        ),
        (
            "closing brackets first do not buy depth",
            format!(
                "name: t\ndescription: \"{}\"\nvm: {}\n",
                "]".repeat(100),
                "[".repeat(40)
            ),
            vec!["scenarios/x.yaml:3: nesting depth limit"],
        ),
        (
            "compact block sequences nested 100 000 deep",
            format!("name: t\nx:\n{}a\n", "- ".repeat(100_000)),
            vec![
                "scenarios/x.yaml: nesting depth limit exceeded",
                "32 levels",
            ],
        ),
        (
            "block maps nested by indentation",
            {
                let mut s = "name: t\nvm:\n".to_string();
                for i in 1..40 {
                    s += &format!("{}k{i}:\n", "  ".repeat(i));
                }
                s
            },
            vec!["scenarios/x.yaml: nesting depth limit exceeded"],
        ),
        // aliases
        (
            "an alias to 200 KB repeated 2000 times",
            format!(
                "name: t\ndescription: &a \"{}\"\nvm:\n  cmdline: [{}]\n",
                "x".repeat(200_000),
                vec!["*a"; 2000].join(",")
            ),
            vec![
                "scenarios/x.yaml: expanded text limit exceeded",
                "262144 bytes of text, each alias counted",
            ],
        ),
        (
            "an alias to a long list repeated",
            format!(
                "name: t\nvm:\n  cmdline: &a [{}]\nmitigations: [{}]\n",
                vec!["x"; 5000].join(","),
                vec!["*a"; 100].join(",")
            ),
            vec![
                "scenarios/x.yaml: value count limit exceeded",
                "10000 values, each alias counted",
            ],
        ),
        (
            "a billion laughs",
            laughs,
            vec!["scenarios/x.yaml: value count limit exceeded"],
        ),
        (
            "an alias to an anchor never defined",
            "name: t\ndescription: *nowhere\n".into(),
            vec!["scenarios/x.yaml:2:", "unknown anchor"],
        ),
        (
            "a merge key",
            "name: t\nbase: &b {cpus: 2}\nvm:\n  <<: *b\n".into(),
            vec!["scenarios/x.yaml:2:", "unknown field `base`"],
        ),
        // control characters, raw in the file
        (
            "a raw ESC sequence in a comment",
            "name: t\n# \u{1b}]0;owned\u{7}\n".into(),
            vec!["scenarios/x.yaml:2:3: control character \\x1b is not allowed"],
        ),
        (
            "a raw NUL",
            "name: t\ndescription: a\0b\n".into(),
            vec!["scenarios/x.yaml:2:15: control character \\x00"],
        ),
        (
            "a raw right-to-left override",
            "name: t\ndescription: abc\u{202e}lmth.exe\n".into(),
            vec!["scenarios/x.yaml:2:17: control character \\u{202e}"],
        ),
        (
            "a raw DEL",
            "name: t\ndescription: x\u{7f}\n".into(),
            vec!["scenarios/x.yaml:2:", "\\x7f"],
        ),
        (
            "a raw C1 CSI",
            "name: t\ndescription: x\u{9b}31m\n".into(),
            vec!["scenarios/x.yaml:2:", "\\u{9b}"],
        ),
        (
            "a raw backspace in a key",
            "name: t\nvm:\n  cpus\u{8}: 1\n".into(),
            vec!["scenarios/x.yaml:3:7:", "\\x08"],
        ),
        // control characters written as YAML escapes
        (
            "an escaped ESC in the description",
            "name: t\ndescription: \"\\e[2J\\e[31mall good\"\n".into(),
            vec!["scenarios/x.yaml:2:", "field `description`", "\\x1b"],
        ),
        (
            "an escaped right-to-left override in the description",
            "name: t\ndescription: \"abc\\u202Elmth.exe\"\n".into(),
            vec!["scenarios/x.yaml:2:", "field `description`", "\\u{202e}"],
        ),
        (
            "an escaped NUL in the description",
            "name: t\ndescription: \"a\\0b\"\n".into(),
            vec!["scenarios/x.yaml:2:", "field `description`", "\\x00"],
        ),
        (
            "an escaped CR in the description",
            "name: t\ndescription: \"fake\\rline\"\n".into(),
            vec!["field `description`", "\\x0d"],
        ),
        (
            "an escaped ESC in the name",
            "name: \"t\\e[2J\"\n".into(),
            vec!["scenarios/x.yaml:1:", "field `name`", "t\\x1b[2J"],
        ),
        (
            "a name of 100 000 bytes is not quoted whole",
            format!("name: {}\n", "n".repeat(100_000)),
            vec!["scenarios/x.yaml:1:", "field `name`", "(99920 more bytes)"],
        ),
        (
            "an escaped ESC in a key",
            "name: t\nvm:\n  \"\\e[31mcpus\": 1\n".into(),
            vec!["scenarios/x.yaml:3:", "unknown field `\\x1b[31mcpus`"],
        ),
        (
            "an escaped ESC in the kernel path",
            "name: t\nvm:\n  kernel: \"/tmp/\\e[31mk\"\n".into(),
            vec!["scenarios/x.yaml:3:", "field `vm.kernel`", "\\x1b"],
        ),
        (
            "a cmdline word with a newline",
            "name: t\nvm:\n  cmdline: [\"a\\nb\"]\n".into(),
            vec![
                "scenarios/x.yaml:3:",
                "field `vm.cmdline`",
                "a\\x0ab",
                "one non-empty word",
            ],
        ),
        (
            "a cmdline word with a space",
            "name: t\nvm:\n  cmdline: [\"init=/bin/sh rdinit=/x\"]\n".into(),
            vec!["scenarios/x.yaml:3:", "field `vm.cmdline`", "no spaces"],
        ),
        (
            "an escaped ESC in a sysctl value",
            "name: t\nmitigations:\n  - sysctl: { key: vm.x, value: \"\\e[31m\" }\n".into(),
            vec![
                "scenarios/x.yaml:3:",
                "field `mitigations.sysctl.value`",
                "control characters",
            ],
        ),
        // odd YAML
        (
            "two documents",
            "name: t\n---\nname: u\n".into(),
            vec!["scenarios/x.yaml", "more than one document"],
        ),
        (
            "a tagged value",
            "name: !evil {a: 1}\n".into(),
            vec!["scenarios/x.yaml:1:", "name"],
        ),
        (
            "a duplicated key",
            "name: t\nname: u\n".into(),
            vec!["scenarios/x.yaml:1:", "duplicate field `name`"],
        ),
        (
            "a number too large",
            "name: t\nvm:\n  memory_mib: 99999999999999999999999\n".into(),
            vec!["scenarios/x.yaml:3:", "vm.memory_mib"],
        ),
        (
            "not a number",
            "name: t\nlimits:\n  duration_s: .nan\n".into(),
            vec!["scenarios/x.yaml:3:", "field `limits.duration_s`", "NaN"],
        ),
        (
            "an infinite wall limit",
            "name: t\nlimits:\n  wall_s: .inf\n".into(),
            vec!["scenarios/x.yaml:3:", "field `limits.wall_s`"],
        ),
        (
            "a list where a map belongs",
            "- name: t\n".into(),
            vec!["scenarios/x.yaml:1:", "invalid type"],
        ),
        (
            "an empty file",
            String::new(),
            vec!["scenarios/x.yaml", "missing field `name`"],
        ),
        (
            "a complex key",
            "name: t\n? [a, b]\n: c\n".into(),
            vec!["scenarios/x.yaml:2:"],
        ),
    ];
    assert!(cases.len() >= 40, "{}", cases.len());
    let mut wrong = Vec::new();
    for (what, text, wants) in &cases {
        let msg = err(text);
        for want in wants {
            if !msg.contains(want) {
                wrong.push(format!("{what}: error {msg:?} should contain {want:?}"));
            }
        }
        if msg.chars().any(crate::text::is_unsafe) {
            wrong.push(format!(
                "{what}: the error carries a raw control character: {msg:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What the bounds must not refuse: anchors within limits, CRLF line ends,
/// tabs and line breaks in a block description, 32 mitigations.
#[test]
fn bounded_but_ordinary_scenarios_still_parse() {
    let ok = |what: &str, text: &str| {
        Scenario::parse(Path::new("ok.yaml"), text).unwrap_or_else(|e| panic!("{what}: {e}"));
    };
    ok(
        "an anchor used twice",
        "name: t\nvm:\n  cmdline: &w [quiet]\nworkload: {workers: 2}\ndescription: &d text\n",
    );
    ok("CRLF line ends", "name: t\r\nvm:\r\n  cpus: 2\r\n");
    ok(
        "a block description with tabs",
        "name: t\ndescription: |\n  line one\n  \tline two\n",
    );
    ok(
        "32 sysctls",
        &format!(
            "name: t\nmitigations:\n{}",
            "  - sysctl: { key: vm.x, value: \"1\" }\n".repeat(32)
        ),
    );
    ok(
        "64 cmdline words",
        &format!(
            "name: t\nvm:\n  cmdline: [{}]\n",
            vec!["a=1"; 64].join(", ")
        ),
    );
    ok("a byte order mark", "\u{feff}name: t\n");
    ok("a standard tag", "name: !!str t\n");
}

/// Files that are not ordinary text files, and kernels that are not
/// kernels: read once, capped, and refused with the file named.
#[test]
fn hostile_files_are_refused_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let load_err = |p: &Path| Scenario::load(p).expect_err("must be refused").to_string();
    let big = d.path().join("sparse.yaml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    let cases: Vec<(&str, PathBuf, Vec<&str>)> = vec![
        (
            "/dev/zero",
            PathBuf::from("/dev/zero"),
            vec!["/dev/zero: file size limit exceeded", "not a regular file"],
        ),
        (
            "/dev/urandom",
            PathBuf::from("/dev/urandom"),
            vec!["/dev/urandom: file size limit exceeded"],
        ),
        (
            "a 5 GiB sparse file",
            big.clone(),
            vec!["sparse.yaml: file size limit exceeded", "5368709120 bytes"],
        ),
        (
            "a directory",
            d.path().to_path_buf(),
            vec!["cannot read", "is a directory"],
        ),
        (
            "not UTF-8",
            write("latin1.yaml", b"name: t\ndescription: caf\xe9\n"),
            vec!["latin1.yaml:2:17: not UTF-8 text (byte 0xe9)"],
        ),
        (
            "UTF-16",
            write("utf16.yaml", b"\xff\xfen\0a\0m\0e\0"),
            vec!["utf16.yaml:1:1: not UTF-8"],
        ),
        (
            "binary",
            write("binary.yaml", &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]),
            vec!["binary.yaml:1:1: control character \\x7f"],
        ),
        (
            "missing",
            d.path().join("nope.yaml"),
            vec!["nope.yaml: cannot read"],
        ),
    ];
    for (what, path, wants) in &cases {
        let msg = load_err(path);
        for want in wants {
            assert!(
                msg.contains(want),
                "{what}: {msg:?} should contain {want:?}"
            );
        }
    }

    // vm.kernel: an existing file must be an x86 Linux boot image.
    let good = crate::image::kernel::tests::fake_bzimage("6.1.0-t");
    let mut old = good.clone();
    old[0x206..0x208].copy_from_slice(&0x0103u16.to_le_bytes());
    let kernels: Vec<(&str, PathBuf, &str)> = vec![
        (
            "a password file",
            write("passwd", b"root:x:0:0::/root:/bin/sh\n"),
            "too short",
        ),
        ("an empty file", write("empty", b""), "0 bytes is too short"),
        (
            "a text file",
            write("notes.txt", &b"x".repeat(8192)),
            "`HdrS`",
        ),
        ("a cut image", write("cut", &good[..3000]), "truncated"),
        ("a 1990s image", write("old", &old), "boot protocol 1.03"),
        ("a directory", d.path().to_path_buf(), "not a regular file"),
        (
            "/dev/zero",
            PathBuf::from("/dev/zero"),
            "not a regular file",
        ),
    ];
    let known = ["debian-test"];
    for (what, kernel, want) in &kernels {
        let text = format!("name: t\nvm:\n  kernel: {}\n", kernel.display());
        let s = Scenario::parse(Path::new("k.yaml"), &text).unwrap();
        let msg = s
            .check_kernel(Path::new("k.yaml"), &text, &known)
            .expect_err(what)
            .to_string();
        for w in [
            "k.yaml:3: field `vm.kernel`",
            "not an x86 Linux boot image",
            want,
        ] {
            assert!(msg.contains(w), "{what}: {msg:?} should contain {w:?}");
        }
    }
    let fine = write("vmlinuz-ok", &good);
    let text = format!("name: t\nvm:\n  kernel: {}\n", fine.display());
    let s = Scenario::parse(Path::new("k.yaml"), &text).unwrap();
    s.check_kernel(Path::new("k.yaml"), &text, &known).unwrap();
    assert!(cases.len() + kernels.len() >= 15);
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// A FIFO is read exactly once: valid content loads (it used to hang, as
/// the file was opened a second time for line numbers), and a writer that
/// never stops is cut off at the cap.
#[test]
fn fifos_are_read_once_and_capped() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("scenario.yaml");
    mkfifo(&fifo);
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(&fifo, GOOD).unwrap())
    };
    let loaded = Scenario::load_file(&fifo).unwrap();
    writer.join().unwrap();
    assert_eq!(loaded.scenario.name, "t");
    assert_eq!(loaded.text, GOOD);

    let endless = d.path().join("endless.yaml");
    mkfifo(&endless);
    let writer = {
        let endless = endless.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&endless)
                .unwrap();
            let chunk = "# comment\n".repeat(1000);
            // Ends with EPIPE once the reader has had enough.
            while f.write_all(chunk.as_bytes()).is_ok() {}
        })
    };
    let e = Scenario::load(&endless).unwrap_err().to_string();
    writer.join().unwrap();
    assert!(e.contains("file size limit exceeded"), "{e}");
}
