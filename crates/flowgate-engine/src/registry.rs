//! The registry of flow versions: loads versions from the store, keeps them
//! (with compiled schemas) in memory, and caches each flow's live pointer so a
//! warm invocation reads nothing from the database. Publishing, rolling back,
//! retiring or disabling on this node invalidates at once; on PostgreSQL other
//! nodes are told by a change notice (see [`crate::cluster`]) and the cache
//! TTLs below only bound how stale an entry can get if every notice and the
//! fallback check were lost.

use flowgate_core::manifest::Manifest;
use flowgate_core::package::{FlowPackage, INPUT_SCHEMA, OUTPUT_SCHEMA};
use flowgate_core::FlowName;
use flowgate_script::FlowVersion;
use flowgate_store::Store;
use serde_json::Value;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{EngineError, Result};

/// How long another node's publish may take to be seen here.
pub const LIVE_POINTER_TTL: Duration = Duration::from_secs(2);
/// How long a version's status (retired) may take to be seen here from another node.
pub const VERSION_TTL: Duration = Duration::from_secs(5);

/// How long a thread keeps its own copy of a resolved version before it asks
/// the shared caches again. Any invalidation on this node (a local change, a
/// change notice, the fallback check) drops these copies at once; only when a
/// notice is lost does this add to [`LIVE_POINTER_TTL`].
const FRONT_TTL: Duration = Duration::from_millis(250);
/// Resolved versions a thread keeps (the flows it served last).
const FRONT_SLOTS: usize = 32;

/// Tells registries apart in the per-thread copies (tests run several engines
/// on one thread).
static NEXT_REGISTRY: AtomicU64 = AtomicU64::new(1);

/// One thread's copy of what [`Registry::resolve`] answered.
struct FrontEntry {
    registry: u64,
    generation: u64,
    flow: FlowName,
    pinned: Option<i64>,
    until: Instant,
    version: Arc<LoadedVersion>,
}

thread_local! {
    /// A warm call resolves its flow here, without the shared caches' hashing
    /// and bookkeeping (two lookups per call otherwise).
    static FRONT: RefCell<Vec<FrontEntry>> = const { RefCell::new(Vec::new()) };
}

/// Status of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionStatus {
    /// Not callable.
    Draft,
    /// Callable at its pinned URL; maybe live.
    Published,
    /// Answers 410.
    Retired,
}

impl VersionStatus {
    /// Parses the stored text.
    pub fn parse(s: &str) -> Self {
        match s {
            "published" => Self::Published,
            "retired" => Self::Retired,
            _ => Self::Draft,
        }
    }
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Retired => "retired",
        }
    }
}

/// A version ready to run: manifest, package, compiled schemas.
pub struct LoadedVersion {
    /// Flow name.
    pub flow: FlowName,
    /// Version number.
    pub number: i64,
    /// Status when loaded.
    pub status: VersionStatus,
    /// What the script runtime executes.
    pub script: FlowVersion,
    /// Compiled `input.schema.json`.
    pub input_schema: Option<Arc<jsonschema::Validator>>,
    /// Compiled `output.schema.json`.
    pub output_schema: Option<Arc<jsonschema::Validator>>,
}

impl LoadedVersion {
    /// The same version with another status (retired since it was loaded).
    fn with_status(&self, status: VersionStatus) -> Self {
        LoadedVersion {
            flow: self.flow.clone(),
            number: self.number,
            status,
            script: self.script.clone(),
            input_schema: self.input_schema.clone(),
            output_schema: self.output_schema.clone(),
        }
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.script.manifest
    }
    /// The package files.
    pub fn package(&self) -> &FlowPackage {
        &self.script.package
    }
    /// Content hash.
    pub fn sha256(&self) -> &str {
        &self.script.sha256
    }
}

/// Compiles a JSON Schema file of a package, if present. Remote `$ref`s are
/// never fetched (the validator is built without network features).
pub fn compile_schema(
    package: &FlowPackage,
    file: &str,
) -> Result<Option<Arc<jsonschema::Validator>>> {
    let Some(text) = package.files.get(file) else {
        return Ok(None);
    };
    let schema: Value = serde_json::from_str(text).map_err(|e| {
        EngineError::invalid_at(
            format!("{file} is not valid JSON: {e}"),
            file,
            e.line(),
            e.column(),
        )
    })?;
    let validator = schema_validator(&schema).map_err(|e| {
        let pointer = e.instance_path().as_str().to_owned();
        let at = if pointer.is_empty() {
            String::new()
        } else {
            format!(" at `{pointer}`")
        };
        let mut err = EngineError::invalid_at(
            format!("{file} is not a valid JSON Schema{at}: {e} (patterns use the linear-time `regex` syntax: no look-around, no back-references)"),
            file,
            1,
            1,
        );
        if let (EngineError::Invalid { details, .. }, false) = (&mut err, pointer.is_empty()) {
            details.insert("pointer".into(), Value::from(pointer));
        }
        err
    })?;
    Ok(Some(Arc::new(validator)))
}

/// Builds a validator the way every package schema is built: no remote
/// `$ref`s, and `pattern`/`patternProperties` on the linear-time `regex`
/// engine, so no input can make validation backtrack. Patterns it cannot
/// express (look-around, back-references) are refused here, at upload and
/// publish, instead of costing CPU on every request.
pub fn schema_validator(
    schema: &Value,
) -> std::result::Result<jsonschema::Validator, jsonschema::ValidationError<'static>> {
    jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(schema)
}

/// Builds a runnable version from stored parts (already validated on upload).
pub fn load_version(
    flow: &FlowName,
    number: i64,
    status: VersionStatus,
    sha256: String,
    package: FlowPackage,
) -> Result<LoadedVersion> {
    let input_schema = compile_schema(&package, INPUT_SCHEMA)?;
    let output_schema = compile_schema(&package, OUTPUT_SCHEMA)?;
    let parsed = package.parse().map_err(|e| {
        EngineError::Internal(format!(
            "stored version {flow} v{number} no longer parses: {e}"
        ))
    })?;
    Ok(LoadedVersion {
        flow: flow.clone(),
        number,
        status,
        script: FlowVersion {
            flow: flow.clone(),
            version: number,
            sha256,
            manifest: Arc::new(parsed.manifest),
            package: Arc::new(parsed.package),
            reads: Arc::default(),
        },
        input_schema,
        output_schema,
    })
}

/// What a flow's name resolves to right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveState {
    /// No such flow.
    Unknown,
    /// The flow is disabled.
    Disabled,
    /// The flow exists but nothing is published.
    NotLive,
    /// This version is live.
    Live(i64),
}

/// Cache of versions and live pointers.
#[derive(Clone)]
pub struct Registry {
    store: Store,
    versions: moka::sync::Cache<(FlowName, i64), Arc<LoadedVersion>>,
    /// Loaded versions by content hash, kept past [`VERSION_TTL`]: when a
    /// version's entry above expires only its status and hash are read
    /// again, and an unchanged package is not loaded, parsed and compiled
    /// anew (every few seconds for every scheduled flow otherwise).
    contents: moka::sync::Cache<String, Arc<LoadedVersion>>,
    live: moka::sync::Cache<FlowName, LiveState>,
    /// This registry among others in the per-thread copies.
    id: u64,
    /// Bumped by every invalidation: per-thread copies made before are void.
    generation: Arc<AtomicU64>,
}

impl Registry {
    /// A registry reading from `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            versions: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(VERSION_TTL)
                .support_invalidation_closures()
                .build(),
            contents: moka::sync::Cache::builder().max_capacity(10_000).build(),
            live: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LIVE_POINTER_TTL)
                .build(),
            id: NEXT_REGISTRY.fetch_add(1, Ordering::Relaxed),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// This thread's copy of a resolved version, if it is still valid.
    fn front_get(&self, flow: &FlowName, pinned: Option<i64>) -> Option<Arc<LoadedVersion>> {
        let generation = self.generation.load(Ordering::Acquire);
        FRONT.with(|front| {
            let front = front.try_borrow().ok()?;
            let e = front
                .iter()
                .find(|e| e.registry == self.id && e.pinned == pinned && e.flow == *flow)?;
            (e.generation == generation && e.until > Instant::now()).then(|| Arc::clone(&e.version))
        })
    }

    /// Keeps a resolved version on this thread; `generation` is the one read
    /// before resolving, so a change made meanwhile voids the copy.
    fn front_put(
        &self,
        flow: &FlowName,
        pinned: Option<i64>,
        generation: u64,
        version: &Arc<LoadedVersion>,
    ) {
        FRONT.with(|front| {
            let Ok(mut front) = front.try_borrow_mut() else {
                return;
            };
            let now = Instant::now();
            let current = self.generation.load(Ordering::Acquire);
            front.retain(|e| {
                e.until > now
                    && !(e.registry == self.id
                        && (e.generation != current || (e.pinned == pinned && e.flow == *flow)))
            });
            if front.len() >= FRONT_SLOTS {
                front.remove(0);
            }
            front.push(FrontEntry {
                registry: self.id,
                generation,
                flow: flow.clone(),
                pinned,
                until: now + FRONT_TTL,
                version: Arc::clone(version),
            });
        });
    }

    /// The live state of a flow (cached).
    pub async fn live_state(&self, flow: &FlowName) -> Result<LiveState> {
        if let Some(s) = self.live.get(flow) {
            return Ok(s);
        }
        let name = flow.clone();
        let state = self
            .store
            .call(move |s| {
                Ok(match s.get_flow(&name)? {
                    None => LiveState::Unknown,
                    Some(f) if f.disabled => LiveState::Disabled,
                    Some(f) => f
                        .live_version
                        .map_or(LiveState::NotLive, |v| LiveState::Live(i64::from(v))),
                })
            })
            .await?;
        self.live.insert(flow.clone(), state);
        Ok(state)
    }

    /// One version (cached), `None` when it does not exist.
    pub async fn version(
        &self,
        flow: &FlowName,
        number: i64,
    ) -> Result<Option<Arc<LoadedVersion>>> {
        let key = (flow.clone(), number);
        if let Some(v) = self.versions.get(&key) {
            return Ok(Some(v));
        }
        let Ok(n32) = u32::try_from(number) else {
            return Ok(None);
        };
        let name = flow.clone();
        let Some(info) = self
            .store
            .call(move |s| s.get_version_info(&name, n32))
            .await?
        else {
            return Ok(None);
        };
        let status = VersionStatus::parse(info.status.as_str());
        if let Some(known) = self.contents.get(&info.sha256) {
            if known.flow == *flow && known.number == number {
                let loaded = if known.status == status {
                    known
                } else {
                    let again = Arc::new(known.with_status(status));
                    self.contents.insert(info.sha256.clone(), again.clone());
                    again
                };
                self.versions.insert(key, loaded.clone());
                return Ok(Some(loaded));
            }
        }
        let name = flow.clone();
        let Some(rec) = self.store.call(move |s| s.get_version(&name, n32)).await? else {
            return Ok(None);
        };
        let flow2 = flow.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            load_version(
                &flow2,
                number,
                VersionStatus::parse(rec.info.status.as_str()),
                rec.info.sha256.clone(),
                rec.package,
            )
        })
        .await??;
        let loaded = Arc::new(loaded);
        self.contents
            .insert(loaded.sha256().to_owned(), loaded.clone());
        self.versions.insert(key, loaded.clone());
        Ok(Some(loaded))
    }

    /// Resolves the version an invocation should run: the live one, or a pinned one.
    /// Unknown/disabled flow, no live version, a draft or unknown version → NotFound;
    /// retired → Gone.
    pub async fn resolve(
        &self,
        flow: &FlowName,
        pinned: Option<i64>,
    ) -> Result<Arc<LoadedVersion>> {
        if let Some(v) = self.front_get(flow, pinned) {
            return Ok(v);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let state = self.live_state(flow).await?;
        let number = match (state, pinned) {
            (LiveState::Unknown, _) => {
                return Err(EngineError::NotFound(format!(
                    "flow `{flow}` does not exist"
                )))
            }
            (LiveState::Disabled, _) => {
                return Err(EngineError::NotFound(format!("flow `{flow}` is disabled")))
            }
            (_, Some(n)) => n,
            (LiveState::Live(n), None) => n,
            (LiveState::NotLive, None) => {
                return Err(EngineError::NotFound(format!(
                    "flow `{flow}` has no published version"
                )))
            }
        };
        let Some(v) = self.version(flow, number).await? else {
            return Err(EngineError::NotFound(format!(
                "flow `{flow}` has no version {number}"
            )));
        };
        match v.status {
            VersionStatus::Published => {
                self.front_put(flow, pinned, generation, &v);
                Ok(v)
            }
            VersionStatus::Retired => Err(EngineError::Gone(format!("version {number} of flow `{flow}` is retired"))),
            VersionStatus::Draft => Err(EngineError::NotFound(format!(
                "version {number} of flow `{flow}` is a draft and cannot be called until it is published"
            ))),
        }
    }

    /// Forgets every cached live pointer and version (changes may have been missed).
    pub fn invalidate_all(&self) {
        self.live.invalidate_all();
        self.versions.invalidate_all();
        self.contents.invalidate_all();
        // After the shared caches: a copy made from what they held before
        // carries the old generation.
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets everything cached about a flow (after publish, rollback, retire, disable).
    pub fn invalidate(&self, flow: &FlowName) {
        self.live.invalidate(flow);
        let flow = flow.clone();
        let _ = self
            .versions
            .invalidate_entries_if(move |(f, _), _| *f == flow);
        self.versions.run_pending_tasks();
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const MANIFEST: &str = "name = \"reg\"\n[[trigger]]\nkind = \"http\"\nmethod = \"POST\"\n\n[auth]\nmode = \"none\"\n";

    /// Creates the flow `name` in `store`.
    fn flow(store: &Store, name: &str) -> FlowName {
        let name = FlowName::parse(name).unwrap_or_else(|e| panic!("name: {e}"));
        store
            .create_flow(&name)
            .unwrap_or_else(|e| panic!("flow: {e}"));
        name
    }

    /// Stores a draft version of `name` running `script`: its number and hash.
    fn draft(store: &Store, name: &FlowName, script: &str) -> (u32, String) {
        let files: BTreeMap<String, String> = [
            ("flow.toml".to_owned(), MANIFEST.to_owned()),
            ("main.rhai".to_owned(), script.to_owned()),
        ]
        .into();
        let sha = FlowPackage {
            files: files.clone(),
        }
        .sha256();
        let info = store
            .insert_version(name, &files, &sha)
            .unwrap_or_else(|e| panic!("version: {e}"));
        (info.version, sha)
    }

    /// A version whose cached copy expired (here: was invalidated) is not
    /// loaded and compiled again when only its status changed, yet callers
    /// see the new status at once.
    #[tokio::test]
    async fn a_status_change_reuses_the_loaded_package_and_shows_the_new_status() {
        let engine = crate::queries::memory_engine();
        let store = engine.store().clone();
        let name = flow(&store, "reg");
        let (number, sha) = draft(&store, &name, "#{ ok: true }");
        let n = i64::from(number);
        let registry = engine.registry();

        let draft = registry
            .version(&name, n)
            .await
            .unwrap_or_else(|e| panic!("load: {e}"))
            .unwrap_or_else(|| panic!("version {n} missing"));
        assert_eq!(draft.status, VersionStatus::Draft);
        assert!(matches!(
            registry.resolve(&name, Some(n)).await,
            Err(EngineError::NotFound(_))
        ));

        store
            .publish_version(&name, number)
            .unwrap_or_else(|e| panic!("publish: {e}"));
        registry.invalidate(&name);
        let live = registry
            .resolve(&name, None)
            .await
            .unwrap_or_else(|e| panic!("resolve: {e}"));
        assert_eq!((live.number, live.status), (n, VersionStatus::Published));
        assert!(
            Arc::ptr_eq(&draft.script.package, &live.script.package),
            "an unchanged package was loaded again"
        );
        assert_eq!(live.sha256(), sha);
        assert!(registry
            .version(&name, n + 1)
            .await
            .is_ok_and(|v| v.is_none()));
    }

    /// A thread's own copy of a resolved version never outlives a change made
    /// on this node: after a publish the next call on the same thread runs the
    /// new version, also when the old one was resolved just before.
    #[tokio::test]
    async fn a_publish_replaces_the_version_this_thread_resolved() {
        let engine = crate::queries::memory_engine();
        let store = engine.store().clone();
        let name = flow(&store, "reg");
        let numbers = ["#{ v: 1 }", "#{ v: 2 }"].map(|script| draft(&store, &name, script).0);
        let registry = engine.registry();
        let live = |n: u32| {
            store
                .publish_version(&name, n)
                .unwrap_or_else(|e| panic!("publish: {e}"));
            registry.invalidate(&name);
        };
        let resolved = || async {
            registry
                .resolve(&name, None)
                .await
                .unwrap_or_else(|e| panic!("resolve: {e}"))
                .number
        };
        live(numbers[0]);
        assert_eq!(resolved().await, i64::from(numbers[0]));
        assert_eq!(resolved().await, i64::from(numbers[0]), "a warm resolve");
        live(numbers[1]);
        assert_eq!(resolved().await, i64::from(numbers[1]));
        // Another registry on this thread has copies of its own.
        let other = crate::queries::memory_engine();
        assert!(other.registry().resolve(&name, None).await.is_err());
        assert_eq!(resolved().await, i64::from(numbers[1]));
        store
            .publish_version(&name, numbers[0])
            .unwrap_or_else(|e| panic!("publish: {e}"));
        assert_eq!(
            resolved().await,
            i64::from(numbers[1]),
            "no invalidation yet: the caches still hold v2"
        );
        registry.invalidate_all();
        assert_eq!(resolved().await, i64::from(numbers[0]));
    }
}
