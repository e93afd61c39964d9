//! `flowgate test scripts/[flow]`: runs fixtures offline.

use anyhow::Context as _;
use flowgate_script::fixtures;
use flowgate_script::package_dir::{find_package_dirs, read_package_dir};
use flowgate_script::{FlowRuntime, FlowVersion, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `flowgate test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// A folder of flow packages, or one package folder.
    pub path: PathBuf,
}

/// Loads, parses and compiles the package in `dir`.
pub(crate) fn load_version(
    runtime: &FlowRuntime,
    dir: &Path,
) -> anyhow::Result<Result<FlowVersion, String>> {
    let pkg = read_package_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let parsed = match pkg.parse() {
        Ok(p) => p,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let version = FlowVersion::new(0, parsed.manifest, parsed.package);
    if let Err(e) = runtime.compile(&version) {
        return Ok(Err(e.to_string()));
    }
    Ok(Ok(version))
}

/// Runs the fixtures.
pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let dirs = find_package_dirs(&args.path)
        .with_context(|| format!("reading {}", args.path.display()))?;
    if dirs.is_empty() {
        anyhow::bail!(
            "no flow package (a folder with flow.toml) in {}",
            args.path.display()
        );
    }
    let runtime = FlowRuntime::new(RuntimeConfig::default());
    let (mut passed, mut failed) = (0usize, 0usize);
    for dir in dirs {
        let label = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let version = match load_version(&runtime, &dir)? {
            Ok(v) => v,
            Err(e) => {
                println!("FAIL {label}/{e}");
                failed += 1;
                continue;
            }
        };
        let results = fixtures::run_package(&runtime, &version);
        if results.is_empty() {
            println!("--   {label} — no fixtures in tests/");
        }
        for r in results {
            if r.passed() {
                passed += 1;
                println!("ok   {label}/{} — {}", r.file, r.name);
            } else {
                failed += 1;
                println!("FAIL {label}/{} — {}", r.file, r.name);
                for d in &r.diffs {
                    println!("       {d}");
                }
                if let Some(o) = &r.outcome {
                    for l in o.logs.iter().take(20) {
                        println!("       log [{}] {}", l.level.as_str(), l.message);
                    }
                }
            }
        }
    }
    println!();
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
