//! `flowgate deploy <dir> [--publish]`: uploads each package whose content
//! hash differs from its flow's latest version, optionally publishes, and
//! reports a line per flow. A second deploy of the same tree creates nothing.

use anyhow::Context as _;
use flowgate_script::package_dir::{find_package_dirs, read_package_dir};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `flowgate deploy`.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// Folder of packages (`scripts/`) or one package folder.
    pub dir: PathBuf,
    /// Publish each created version (and a latest version not yet live).
    #[arg(long)]
    pub publish: bool,
    /// Server base URL.
    #[arg(long, env = "FLOWGATE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Admin API key (scopes flows:write and flows:publish, or admin).
    #[arg(long, env = "FLOWGATE_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("calling {}{}", self.base, path))?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await.context("reading the response")?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }
}

fn problem(v: &Value) -> String {
    let detail = v
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or("no detail");
    let code = v.get("code").and_then(Value::as_str).unwrap_or("error");
    let mut s = format!("{code}: {detail}");
    if let (Some(f), Some(l)) = (v.get("file").and_then(Value::as_str), v.get("line")) {
        s.push_str(&format!(
            " ({f}:{l}:{})",
            v.get("column").cloned().unwrap_or(Value::Null)
        ));
    }
    s
}

/// Deploys the folder.
pub fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let key = args
        .key
        .clone()
        .context("an admin API key is required: --key or FLOWGATE_API_KEY")?;
    let dirs =
        find_package_dirs(&args.dir).with_context(|| format!("reading {}", args.dir.display()))?;
    if dirs.is_empty() {
        anyhow::bail!(
            "no flow package (a folder with flow.toml) in {}",
            args.dir.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            base: args.url.trim_end_matches('/').to_owned(),
            key,
        };
        let mut failures = 0usize;
        let (mut created, mut unchanged) = (0usize, 0usize);
        for dir in dirs {
            let package =
                read_package_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
            let name = match package.clone().parse() {
                Ok(p) => p.manifest.name.to_string(),
                Err(e) => {
                    println!("FAIL {}: {e}", dir.display());
                    failures += 1;
                    continue;
                }
            };
            match deploy_one(&client, &name, package, args.publish).await {
                Ok(Outcome::Created(n, published)) => {
                    created += 1;
                    println!(
                        "{name}: created v{n}{}",
                        if published { ", published" } else { "" }
                    );
                }
                Ok(Outcome::Unchanged(n, published)) => {
                    unchanged += 1;
                    println!(
                        "{name}: unchanged (v{n}){}",
                        if published { ", published" } else { "" }
                    );
                }
                Err(e) => {
                    failures += 1;
                    println!("FAIL {name}: {e:#}");
                }
            }
        }
        println!("{created} created, {unchanged} unchanged, {failures} failed");
        Ok(if failures == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

enum Outcome {
    Created(u64, bool),
    Unchanged(u64, bool),
}

async fn deploy_one(
    client: &Client,
    name: &str,
    package: flowgate_core::FlowPackage,
    publish: bool,
) -> anyhow::Result<Outcome> {
    let sha = package.sha256();
    let body = json!({"files": package.files});
    let (status, flow) = client
        .send(
            reqwest::Method::GET,
            &format!("/admin/v1/flows/{name}"),
            None,
        )
        .await?;
    let version = match status {
        404 => {
            let (s, v) = client
                .send(reqwest::Method::POST, "/admin/v1/flows", Some(&body))
                .await?;
            if s != 201 {
                anyhow::bail!("{s} {}", problem(&v));
            }
            v.get("version").and_then(Value::as_u64).unwrap_or(1)
        }
        200 => {
            let versions = flow
                .get("versions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let latest = versions
                .iter()
                .max_by_key(|v| v.get("version").and_then(Value::as_u64).unwrap_or(0));
            match latest {
                Some(l) if l.get("sha256").and_then(Value::as_str) == Some(sha.as_str()) => {
                    let n = l.get("version").and_then(Value::as_u64).unwrap_or(0);
                    let live = l.get("live").and_then(Value::as_bool).unwrap_or(false);
                    if publish && !live {
                        publish_version(client, name, n).await?;
                    }
                    return Ok(Outcome::Unchanged(n, publish || live));
                }
                _ => {
                    let (s, v) = client
                        .send(
                            reqwest::Method::POST,
                            &format!("/admin/v1/flows/{name}/versions"),
                            Some(&body),
                        )
                        .await?;
                    if s != 201 {
                        anyhow::bail!("{s} {}", problem(&v));
                    }
                    v.get("version").and_then(Value::as_u64).unwrap_or(0)
                }
            }
        }
        s => anyhow::bail!("{s} {}", problem(&flow)),
    };
    if publish {
        publish_version(client, name, version).await?;
    }
    Ok(Outcome::Created(version, publish))
}

async fn publish_version(client: &Client, name: &str, n: u64) -> anyhow::Result<()> {
    let (s, v) = client
        .send(
            reqwest::Method::POST,
            &format!("/admin/v1/flows/{name}/versions/{n}/publish"),
            Some(&json!({})),
        )
        .await?;
    if s != 200 {
        anyhow::bail!("publishing v{n}: {s} {}", problem(&v));
    }
    Ok(())
}
