//! The example packages in `scripts/` pass their own fixtures.

#![allow(clippy::unwrap_used)]

use flowgate_script::fixtures::run_package;
use flowgate_script::package_dir::{find_package_dirs, read_package_dir};
use flowgate_script::{FlowRuntime, FlowVersion, RuntimeConfig};
use std::path::Path;

#[test]
fn example_packages_pass_their_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts");
    let runtime = FlowRuntime::new(RuntimeConfig::default());
    let mut names = Vec::new();
    for dir in find_package_dirs(&root).unwrap() {
        let parsed = read_package_dir(&dir).unwrap().parse().unwrap();
        let v = FlowVersion::new(1, parsed.manifest, parsed.package);
        names.push(v.flow.to_string());
        let results = run_package(&runtime, &v);
        assert!(!results.is_empty(), "{} has no fixtures", v.flow);
        for r in results {
            assert!(
                r.passed(),
                "{}/{}: {:#?}\nlogs: {:#?}",
                v.flow,
                r.file,
                r.diffs,
                r.outcome.map(|o| o.logs)
            );
        }
    }
    for want in ["payment-webhook", "user-profile-update", "periodic-refresh"] {
        assert!(names.iter().any(|n| n == want), "missing example {want}");
    }
}
