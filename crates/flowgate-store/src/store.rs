//! `Store`: the connection pool, migrations, health check and the async bridge.

use std::fmt;
use std::sync::Arc;

use aes_gcm::{Aes256Gcm, KeyInit};
use diesel::r2d2::{Pool, PooledConnection};
use diesel::RunQueryDsl;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::conn::{pool_timeout, redact_url, AnyConnection, Backend, Manager, Target};
use crate::error::{Result, StoreError};
use crate::writer::{Committed, Writer};

pub(crate) const SQLITE_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Advisory lock key held while PostgreSQL migrations run, so nodes starting
/// together do not race on the schema.
const MIGRATION_LOCK_KEY: i64 = 0x0f10_9a7e;

/// Pool tuning for [`Store::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most pooled connections (an in-memory SQLite database always uses 1).
    pub max_connections: u32,
}

impl StoreOptions {
    /// Defaults per backend: 8 for SQLite files, 16 for PostgreSQL.
    pub fn default_for(backend: Backend) -> Self {
        Self {
            max_connections: match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            },
        }
    }
}

pub(crate) type Conn = PooledConnection<Manager>;

pub(crate) struct Inner {
    pub(crate) pool: Pool<Manager>,
    pub(crate) backend: Backend,
    pub(crate) cipher: Aes256Gcm,
    pub(crate) writer: Writer,
    /// The PostgreSQL URL, for the change listener's own connection.
    pub(crate) pg_url: Option<String>,
    /// Notified when this process stored events (see [`Store::outbox_wake`]).
    pub(crate) outbox: tokio::sync::Notify,
    /// The node this process writes as (see [`Store::set_owner`]).
    pub(crate) owner: std::sync::OnceLock<String>,
}

/// Handle to the database. Cheap to clone (an `Arc` inside); every method is
/// blocking — from async code use [`Store::call`].
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    /// Causation stamped on the user lifecycle events this handle writes
    /// (set for the handle a run uses; see [`Store::with_cause`]).
    pub(crate) cause: Option<Arc<flowgate_core::event::Cause>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .field("pool", &self.inner.pool.state())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// What an idle event dispatcher waits on: notified after this process
    /// committed events to the outbox (user lifecycle changes, and whatever
    /// callers announce with [`Store::note_outbox`]). Only a hint for
    /// latency: a dispatcher also polls, so a missed notice delays, never loses.
    pub fn outbox_wake(&self) -> &tokio::sync::Notify {
        &self.inner.outbox
    }

    /// Names the node this process writes as (once; later calls are ignored).
    /// In-flight idempotency records carry it, so that when the node is gone
    /// another node's heartbeat releases them (see [`Store::heartbeat_node`]).
    pub fn set_owner(&self, node_id: &str) {
        let _ = self.inner.owner.set(node_id.to_owned());
    }

    /// The node this process writes as, when named.
    pub fn owner(&self) -> Option<&str> {
        self.inner.owner.get().map(String::as_str)
    }

    /// Announces that events were committed to the outbox.
    pub fn note_outbox(&self) {
        self.inner.outbox.notify_waiters();
    }

    /// A handle on the same pool whose user lifecycle events carry `cause`
    /// (the handle a run's script uses, so the events it causes are traced).
    pub fn with_cause(&self, cause: flowgate_core::event::Cause) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            cause: Some(Arc::new(cause)),
        }
    }

    /// Opens a pool on `url` (`sqlite://path`, `sqlite::memory:`, `postgres://…`)
    /// with default options. Secrets are sealed with `secrets_key` (AES-256-GCM).
    /// Fails within about 5 s with the database's own message when unreachable.
    pub fn open(url: &str, secrets_key: [u8; 32]) -> Result<Self> {
        let target = Target::parse(url)?;
        let opts = StoreOptions::default_for(target.backend());
        Self::open_target(url, target, secrets_key, opts)
    }

    /// Like [`Store::open`] with explicit pool options.
    pub fn open_with(url: &str, secrets_key: [u8; 32], opts: StoreOptions) -> Result<Self> {
        let target = Target::parse(url)?;
        Self::open_target(url, target, secrets_key, opts)
    }

    /// Opens the pool and applies pending migrations.
    pub fn open_and_migrate(url: &str, secrets_key: [u8; 32]) -> Result<Self> {
        let store = Self::open(url, secrets_key)?;
        store.migrate()?;
        Ok(store)
    }

    fn open_target(
        url: &str,
        target: Target,
        secrets_key: [u8; 32],
        opts: StoreOptions,
    ) -> Result<Self> {
        let backend = target.backend();
        if let Target::SqliteFile(path) = &target {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!(
                        "cannot create database directory {}: {e}",
                        dir.display()
                    ))
                })?;
            }
        }
        let memory = target == Target::SqliteMemory;
        let pg_url = match &target {
            Target::Postgres(u) => Some(u.clone()),
            _ => None,
        };
        let manager = Manager { target };
        // One direct attempt first: r2d2 would retry until its timeout and hide
        // the reason; this surfaces the real error (bad password, refused) at once.
        {
            use diesel::r2d2::ManageConnection;
            manager.connect().map_err(|e| {
                StoreError::Unavailable(format!("cannot connect to {}: {e}", redact_url(url)))
            })?;
        }
        let mut builder = Pool::builder()
            .connection_timeout(pool_timeout())
            .max_size(if memory {
                1
            } else {
                opts.max_connections.max(1)
            });
        if memory {
            // The one connection *is* the database: never recycle it.
            builder = builder
                .idle_timeout(None)
                .max_lifetime(None)
                .min_idle(Some(1));
        } else {
            builder = builder.min_idle(Some(1));
        }
        let pool = builder.build(manager).map_err(|e| {
            StoreError::Unavailable(format!("cannot open pool on {}: {e}", redact_url(url)))
        })?;
        let cipher = Aes256Gcm::new(&secrets_key.into());
        let writer = Writer::start(pool.clone())?;
        tracing::debug!(backend = backend.as_str(), "store opened");
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                backend,
                cipher,
                writer,
                pg_url,
                outbox: tokio::sync::Notify::new(),
                owner: std::sync::OnceLock::new(),
            }),
            cause: None,
        })
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Applies every pending embedded migration of this backend; returns how many ran.
    #[tracing::instrument(skip_all, err(level = "debug"), fields(db.backend = self.inner.backend.as_str()))]
    pub fn migrate(&self) -> Result<usize> {
        let mut conn = self.conn()?;
        let applied = match &mut *conn {
            AnyConnection::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.len())
                .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?,
            AnyConnection::Postgres(c) => {
                diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                    .execute(c)?;
                let out = c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|v| v.len())
                    .map_err(|e| StoreError::Database(format!("migration failed: {e}")));
                diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                    .execute(c)?;
                out?
            }
        };
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        Ok(applied)
    }

    /// `SELECT 1` on a pooled connection, for `/readyz`.
    pub fn ping(&self) -> Result<()> {
        let mut conn = self.conn()?;
        diesel::sql_query("SELECT 1").execute(&mut *conn)?;
        Ok(())
    }

    /// Pool statistics `(connections, idle)` for metrics.
    pub fn pool_state(&self) -> (u32, u32) {
        let s = self.inner.pool.state();
        (s.connections, s.idle_connections)
    }

    /// Runs blocking store work on tokio's blocking pool, keeping the current
    /// tracing span, so async workers never wait on the database.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let store = self.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| f(&store)))
            .await
            .map_err(|e| StoreError::Database(format!("store task failed: {e}")))?
    }

    /// Waits until every write handed to the writer before this call has
    /// committed (or was refused), so a read on this node sees them.
    pub fn flush_writes(&self) {
        self.inner.writer.barrier();
    }

    /// Hands a write to the group-committing writer (see [`Committed`]).
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    ) -> Committed<T> {
        self.inner.writer.submit(op)
    }

    /// Like [`Self::submit`] for a write whose waiter does not mind a delay:
    /// it may linger up to [`crate::LINGER`] for company.
    pub(crate) fn submit_lazy<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    ) -> Committed<T> {
        self.inner.writer.submit_lazy(op)
    }

    /// Runs `op` as part of the writer's next group commit and blocks until
    /// that commit (blocking callers; async code awaits the `submit_*` methods).
    pub(crate) fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut AnyConnection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.inner.writer.submit(op).wait()
    }

    /// A pooled connection.
    pub(crate) fn conn(&self) -> Result<Conn> {
        Ok(self.inner.pool.get()?)
    }
}
