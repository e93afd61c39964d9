//! `flowgate run <flow-dir> --input body.json`: one local run of a package.

use anyhow::Context as _;
use flowgate_script::fixtures::{build_input, Fixture};
use flowgate_script::{FlowRuntime, Host, MemoryRepo, ReqwestHttp, RuntimeConfig};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `flowgate run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The package folder.
    pub dir: PathBuf,
    /// JSON file used as the request body (a non-JSON file is passed as a string).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Request path suffix, e.g. `/0190…` for a trigger path `/{user_id}`.
    #[arg(long, default_value = "")]
    pub path: String,
    /// A secret for the in-memory secret store, `NAME=VALUE` (repeatable).
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    pub secrets: Vec<String>,
    /// Allow outbound calls to loopback and private addresses.
    #[arg(long, env = "FLOWGATE_ALLOW_PRIVATE_HOSTS")]
    pub allow_private_hosts: bool,
}

/// Runs the package once.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = RuntimeConfig::default();
    config.http.allow_private_hosts = args.allow_private_hosts;
    let runtime = FlowRuntime::new(config);
    let version = match super::test::load_version(&runtime, &args.dir)? {
        Ok(v) => v,
        Err(e) => anyhow::bail!("{e}"),
    };
    let body = match &args.input {
        None => Value::Null,
        Some(p) => {
            let raw =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&raw).unwrap_or(Value::String(raw))
        }
    };
    let fixture: Fixture = serde_json::from_value(json!({
        "request": {"path": args.path, "body": body},
    }))?;
    let mut input =
        build_input(&version.manifest, version.version, &fixture).map_err(anyhow::Error::msg)?;
    // A local run is its operator's call, not a fixture's.
    if input.caller.get("kind").and_then(Value::as_str) == Some("api_key") {
        input.caller["id"] = json!("cli");
    }

    let store = Arc::new(MemoryRepo::new());
    for s in &args.secrets {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--secret `{s}` must be NAME=VALUE"))?;
        store.set_secret(k, v);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let host = Host {
        users: store.clone(),
        kv: store.clone(),
        secrets: store.clone(),
        http: Arc::new(ReqwestHttp::new(rt.handle().clone())),
        flow: version.flow.clone(),
    };
    let outcome = runtime.execute_blocking(&version, input, host)?;
    println!("status {}", outcome.status());
    if let Ok(r) = &outcome.result {
        for (k, v) in &r.headers {
            println!("{k}: {v}");
        }
    }
    println!("{}", serde_json::to_string_pretty(&outcome.body())?);
    if !outcome.events.is_empty() {
        println!("\nevents:");
        for e in &outcome.events {
            println!("  {} {}", e.kind, e.data);
        }
    }
    if !outcome.logs.is_empty() {
        println!("\nlog:");
        for l in &outcome.logs {
            println!("  [{}] {}", l.level.as_str(), l.message);
        }
    }
    println!("\n({} ms)", outcome.duration_ms);
    Ok(if outcome.result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
