//! The flow runtime: compiles and runs flow scripts (Rhai) in a sandbox, exposes the
//! host API of SPEC §4 (`users::`, `http::`, `kv::`, …), and runs offline fixtures.
//!
//! Entry points: [`FlowRuntime`] (compile + execute with a bounded pool and an AST
//! cache), [`Host`] (the repositories and HTTP client a run may use), the in-memory
//! and overlay repositories in [`memory`] and [`overlay`], and [`fixtures`].

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod body;
pub mod budget;
pub mod config;
pub mod convert;
pub mod engine;
pub mod error;
pub mod fixtures;
pub mod host;
pub mod http;
pub mod input;
pub mod memory;
pub mod outcome;
pub mod overlay;
pub mod package_dir;
pub mod reads;
pub mod redact;
pub mod runtime;

pub use api::{script_api_catalogue, ApiEntry, ApiKind, ApiParam};
pub use body::{JsonBody, StoredMaps};
pub use config::{HttpDefaults, RuntimeConfig, SandboxLimits, RUN_STACK_BYTES};
pub use engine::{RhaiEngine, ScriptEngine};
pub use error::{CompileError, RuntimeError};
pub use host::{Host, HostModule};
pub use http::{
    HttpClient, HttpError, MockHttp, MockResponse, OutboundRequest, OutboundResponse, ReqwestHttp,
};
pub use input::InputMap;
pub use memory::MemoryRepo;
pub use outcome::{FlowResponse, HttpCallRecord, ResponseBody, RunFailure, RunInput, RunOutcome};
pub use overlay::{Changes, OverlayRepo};
pub use reads::InputReads;
pub use runtime::{CacheStats, FlowRuntime, FlowVersion, InlineStats};
