//! The host API scripts call (SPEC §4), one [`HostModule`] per namespace, and the
//! per-run context those functions read.
//!
//! Host functions are registered once on the shared engine; the data of the current
//! run (repositories, log sink, deadline) lives in a thread-local [`RunContext`] that
//! the runtime installs on the executing thread for the duration of one run.

mod context;
mod modules;

pub(crate) use context::{
    check_deadline, enter, give_up_inline, inline, limit_exceeded, push_log, with_ctx, RunContext,
    Terminal, TERMINAL_TOKEN, YIELD_TOKEN,
};
pub use modules::{
    Base64Module, CoreModule, CryptoModule, EventsModule, HttpModule, KvModule, LogModule,
    SecretsModule, TimeModule, UsersModule,
};

use flowgate_core::repo::{KvRepo, SecretRepo, UserRepo};
use flowgate_core::FlowName;
use std::sync::Arc;

use crate::http::HttpClient;

/// What a run may touch: the identity store, the flow's key-value state, the secret
/// store and the outbound HTTP client.
#[derive(Clone)]
pub struct Host {
    /// Identity store.
    pub users: Arc<dyn UserRepo>,
    /// Key-value state (scoped by `flow`).
    pub kv: Arc<dyn KvRepo>,
    /// Secret store.
    pub secrets: Arc<dyn SecretRepo>,
    /// Outbound HTTP.
    pub http: Arc<dyn HttpClient>,
    /// The flow the run belongs to (kv scope, event source).
    pub flow: FlowName,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("flow", &self.flow)
            .finish_non_exhaustive()
    }
}

/// One namespace of the script API, registered on the engine once.
pub trait HostModule: Send + Sync {
    /// The namespace (`users`, `http`, …; `""` for global functions such as `respond`).
    fn namespace(&self) -> &'static str;
    /// Registers the namespace's functions, each with its documentation.
    fn register(&self, api: &mut crate::api::ApiBuilder<'_>);
}

/// Every module of SPEC §4, in registration order.
pub fn standard_modules() -> Vec<Box<dyn HostModule>> {
    vec![
        Box::new(CoreModule),
        Box::new(LogModule),
        Box::new(UsersModule),
        Box::new(HttpModule),
        Box::new(SecretsModule),
        Box::new(KvModule),
        Box::new(EventsModule),
        Box::new(CryptoModule),
        Box::new(Base64Module),
        Box::new(TimeModule),
    ]
}
