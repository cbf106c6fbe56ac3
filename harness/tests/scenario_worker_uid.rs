//! `workload.worker_uid`: read from YAML, checked, carried to the guest's
//! scenario.conf.

use std::path::Path;

use oomlab::scenario::Scenario;

fn parse(extra: &str) -> Result<Scenario, String> {
    let text = format!("name: u\nworkload:\n  workers: 2\n{extra}");
    Scenario::parse(Path::new("u.yaml"), &text).map_err(|e| e.to_string())
}

#[test]
fn worker_uid_reaches_scenario_conf() {
    let s = parse("  worker_uid: 2188\n").unwrap();
    assert_eq!(s.workload.worker_uid, Some(2188));
    let conf = s.guest_conf().render();
    assert!(conf.contains("worker_uid=2188\n"), "{conf}");
    let (back, diags) = oomlab_protocol::conf::parse(&conf);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(back.worker_uid, Some(2188));
    // Absent: workers stay root, and the key is not written at all.
    let s = parse("").unwrap();
    assert_eq!(s.workload.worker_uid, None);
    assert!(!s.guest_conf().render().contains("worker_uid"));
}

#[test]
fn worker_uid_must_be_unprivileged() {
    for bad in ["0", "4294967295", "-1", "nginx"] {
        let e = parse(&format!("  worker_uid: {bad}\n")).unwrap_err();
        assert!(e.contains("worker_uid"), "{bad}: {e}");
    }
}

#[test]
fn worker_die_with_master_reaches_scenario_conf() {
    let s = parse("  worker_die_with_master: true\n").unwrap();
    assert!(s.workload.worker_die_with_master);
    assert!(s
        .guest_conf()
        .render()
        .contains("worker_die_with_master=1\n"));
    assert!(!parse("")
        .unwrap()
        .guest_conf()
        .render()
        .contains("worker_die_with_master"));
    let shipped = Scenario::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios/old-kernels/kill-master-first-2.6.32.yaml"),
    )
    .unwrap();
    assert!(shipped.workload.worker_die_with_master);
}
