//! The two-backend connection enum, URL parsing and the r2d2 connection manager.

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{self, ManageConnection};
use diesel::{Connection, ConnectionError, PgConnection, RunQueryDsl, SqliteConnection};

use crate::error::{Result, StoreError};

/// A connection to either supported database; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    /// SQLite (bundled), the default.
    Sqlite(SqliteConnection),
    /// PostgreSQL, for several nodes sharing one database.
    Postgres(PgConnection),
}

/// Which database a [`crate::Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite file or in-memory database.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where to connect, decided from the URL scheme alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A database file (parent directory created when missing).
    SqliteFile(PathBuf),
    /// A private in-memory database (the pool holds exactly one connection).
    SqliteMemory,
    /// A libpq URL, with `connect_timeout` added when absent.
    Postgres(String),
}

/// Seconds libpq and the pool wait for a connection before failing.
pub(crate) const CONNECT_TIMEOUT_SECS: u64 = 5;

impl Target {
    /// Parses `sqlite://path`, `sqlite:path`, `sqlite::memory:`, `sqlite://:memory:`,
    /// `postgres://…` and `postgresql://…`.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if rest == ":memory:" {
                return Ok(Target::SqliteMemory);
            }
            // Drop `?mode=…`-style query strings: options are set per connection instead.
            let path = rest.split('?').next().unwrap_or(rest);
            if path.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "database url `{url}` names no file (use sqlite://path/to/file.db or sqlite::memory:)"
                )));
            }
            return Ok(Target::SqliteFile(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut u = url.to_owned();
            if !u.contains("connect_timeout=") {
                u.push(if u.contains('?') { '&' } else { '?' });
                u.push_str(&format!("connect_timeout={CONNECT_TIMEOUT_SECS}"));
            }
            return Ok(Target::Postgres(u));
        }
        Err(StoreError::Invalid(format!(
            "unsupported database url `{}` (expected sqlite://, sqlite::memory: or postgres://)",
            redact_url(url)
        )))
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Target::SqliteFile(_) | Target::SqliteMemory => Backend::Sqlite,
            Target::Postgres(_) => Backend::Postgres,
        }
    }
}

/// The URL with any password replaced, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((creds, host)) = rest.split_once('@') {
            if let Some((user, _)) = creds.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_owned()
}

const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000;\
     PRAGMA journal_mode = WAL;\
     PRAGMA synchronous = NORMAL;\
     PRAGMA foreign_keys = ON;";

/// r2d2 manager that opens the backend chosen by [`Target`] and applies the
/// per-connection SQLite settings (WAL, busy timeout, foreign keys).
#[derive(Debug, Clone)]
pub(crate) struct Manager {
    pub(crate) target: Target,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> std::result::Result<AnyConnection, r2d2::Error> {
        match &self.target {
            Target::SqliteFile(path) => {
                let p = path.to_string_lossy();
                let mut c =
                    SqliteConnection::establish(&p).map_err(r2d2::Error::ConnectionError)?;
                c.batch_execute(SQLITE_PRAGMAS)
                    .map_err(r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(c))
            }
            Target::SqliteMemory => {
                let mut c = SqliteConnection::establish(":memory:")
                    .map_err(r2d2::Error::ConnectionError)?;
                c.batch_execute(SQLITE_PRAGMAS)
                    .map_err(r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(c))
            }
            Target::Postgres(url) => PgConnection::establish(url)
                .map(AnyConnection::Postgres)
                .map_err(|e| {
                    r2d2::Error::ConnectionError(match e {
                        ConnectionError::BadConnection(m) => {
                            ConnectionError::BadConnection(m.trim().to_owned())
                        }
                        other => other,
                    })
                }),
        }
    }

    /// Run on every check-out. A PostgreSQL connection can die with its
    /// server or network, so it is asked `SELECT 1`; an open SQLite
    /// connection is a file handle that cannot go stale, and the probe (a
    /// statement parsed anew each time) cost every read and every group
    /// commit for nothing.
    fn is_valid(&self, conn: &mut AnyConnection) -> std::result::Result<(), r2d2::Error> {
        match conn {
            AnyConnection::Sqlite(_) => Ok(()),
            AnyConnection::Postgres(_) => diesel::sql_query("SELECT 1")
                .execute(conn)
                .map(|_| ())
                .map_err(r2d2::Error::QueryError),
        }
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

/// Runs `f` in a write transaction: `BEGIN IMMEDIATE` on SQLite (takes the write
/// lock up front, so the busy timeout applies and no read→write upgrade can fail),
/// a plain transaction on PostgreSQL. Rolls back when `f` fails.
pub(crate) fn write_tx<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> Result<T>,
) -> Result<T> {
    match conn {
        AnyConnection::Postgres(_) => conn.transaction(f),
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
            let out = f(conn);
            let AnyConnection::Sqlite(c) = conn else {
                return Err(StoreError::Database("connection changed backend".into()));
            };
            match out {
                Ok(v) => match AnsiTransactionManager::commit_transaction(c) {
                    Ok(()) => Ok(v),
                    Err(e) => {
                        let _ = AnsiTransactionManager::rollback_transaction(c);
                        Err(e.into())
                    }
                },
                Err(e) => {
                    AnsiTransactionManager::rollback_transaction(c)?;
                    Err(e)
                }
            }
        }
    }
}

/// Multi-row `INSERT … VALUES (…), (…)` on the concrete backend (the
/// multi-backend query builder has no batch insert): `batch_insert!(conn, table, &rows)`.
macro_rules! batch_insert {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let rows = $rows;
        let n: usize = match $conn {
            $crate::conn::AnyConnection::Postgres(pg) => {
                diesel::insert_into($table).values(rows).execute(pg)?
            }
            $crate::conn::AnyConnection::Sqlite(sq) => {
                diesel::insert_into($table).values(rows).execute(sq)?
            }
        };
        n
    }};
}
pub(crate) use batch_insert;

/// [`batch_insert!`] for the hot tables: on SQLite the rows go in statements
/// of 16, 4 and 1 rows, whose shapes are fixed so their prepared statements
/// are cached (a slice of any length is parsed again every time).
macro_rules! batch_insert_cached {
    ($conn:expr, $table:expr, $rows:expr) => {
        $crate::conn::batch_insert_chunked!($conn, $table, $rows, |head| {
            diesel::insert_into($table).values(head)
        })
    };
}
pub(crate) use batch_insert_cached;

/// The body of [`batch_insert_cached!`] and [`batch_insert_rows!`]: one
/// diesel insert on PostgreSQL; on SQLite the statement `|head| …` builds for
/// fixed chunks of 16, 4 and 1 rows.
macro_rules! batch_insert_chunked {
    ($conn:expr, $table:expr, $rows:expr, |$head:ident| $stmt:expr) => {{
        let rows = $rows;
        match $conn {
            $crate::conn::AnyConnection::Postgres(pg) => {
                diesel::insert_into($table).values(rows).execute(pg)?;
            }
            $crate::conn::AnyConnection::Sqlite(sq) => {
                let mut rest = rows;
                while !rest.is_empty() {
                    if let Some(($head, tail)) = rest.split_first_chunk::<16>() {
                        $stmt.execute(sq)?;
                        rest = tail;
                    } else if let Some(($head, tail)) = rest.split_first_chunk::<4>() {
                        $stmt.execute(sq)?;
                        rest = tail;
                    } else if let Some(($head, tail)) = rest.split_first_chunk::<1>() {
                        $stmt.execute(sq)?;
                        rest = tail;
                    }
                }
            }
        }
    }};
}
pub(crate) use batch_insert_chunked;

/// A value bound to a [`Fixed`] statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Bind<'a> {
    /// `INTEGER`, nullable.
    Int(Option<i32>),
    /// `BIGINT`, nullable.
    Big(Option<i64>),
    /// `TEXT`, nullable.
    Text(Option<&'a str>),
}

/// The SQL text of a [`Fixed`] statement: `PARTS` around its values, placeholders
/// written by the backend (`?` or `$n`). One type per statement, declared with
/// [`fixed_sql!`]: diesel keeps the prepared form keyed by that type.
pub(crate) trait FixedSql: 'static {
    /// The text around the bound values (one more part than values).
    const PARTS: &'static [&'static str];
}

/// Declares a [`FixedSql`] statement: `fixed_sql!(Name, ["UPDATE … = ", " WHERE id = ", ""]);`
macro_rules! fixed_sql {
    ($(#[$meta:meta])* $name:ident, [$($part:expr),* $(,)?]) => {
        $(#[$meta])*
        pub(crate) struct $name;
        impl $crate::conn::FixedSql for $name {
            const PARTS: &'static [&'static str] = &[$($part),*];
        }
    };
}
pub(crate) use fixed_sql;

/// A statement whose SQL text never changes ([`FixedSql`]), with its values bound.
///
/// Diesel never keeps the prepared form of an `UPDATE` (a changeset with
/// `Option` fields changes its SQL with the values), so each update of the
/// run lifecycle was parsed again on every call. A `Fixed` statement is kept
/// per connection, keyed by its type: diesel neither walks it to decide whether
/// it may be kept nor writes its SQL text again to look it up.
#[derive(Debug)]
pub(crate) struct Fixed<'a, S, const N: usize> {
    binds: [Bind<'a>; N],
    sql: std::marker::PhantomData<S>,
}

impl<'a, S: FixedSql, const N: usize> Fixed<'a, S, N> {
    /// `S`'s statement with `binds`; a programming error when their count
    /// differs from its parts (the statement fails with a query-builder
    /// error, nothing panics).
    pub(crate) fn new(_: S, binds: [Bind<'a>; N]) -> Self {
        Fixed {
            binds,
            sql: std::marker::PhantomData,
        }
    }

    /// Runs the statement on the concrete connection (through the
    /// multi-backend wrapper diesel would write its SQL text on every call).
    pub(crate) fn run(self, c: &mut AnyConnection) -> diesel::QueryResult<usize> {
        match c {
            AnyConnection::Sqlite(sq) => self.execute(sq),
            AnyConnection::Postgres(pg) => self.execute(pg),
        }
    }
}

impl<S: FixedSql, const N: usize> diesel::query_builder::QueryId for Fixed<'_, S, N> {
    type QueryId = S;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB: ColBackend, S: FixedSql, const N: usize> diesel::query_builder::QueryFragment<DB>
    for Fixed<'_, S, N>
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        let parts = S::PARTS;
        if parts.len() != N + 1 {
            return Err(diesel::result::Error::QueryBuilderError(
                format!("a fixed statement has {} parts for {N} values", parts.len()).into(),
            ));
        }
        for (part, bind) in parts.iter().zip(&self.binds) {
            out.push_sql(part);
            DB::push_col(
                &mut out,
                match bind {
                    Bind::Int(v) => Col::IntOpt(v),
                    Bind::Big(v) => Col::BigOpt(v),
                    Bind::Text(v) => Col::StrOpt(v),
                },
            )?;
        }
        if let Some(last) = parts.last() {
            out.push_sql(last);
        }
        Ok(())
    }

    fn is_safe_to_cache_prepared(&self, _: &DB) -> diesel::QueryResult<bool> {
        Ok(true)
    }
}

impl<C, S, const N: usize> RunQueryDsl<C> for Fixed<'_, S, N> {}

/// A value bound by reference: a column of an [`InsertRow`], or a [`Bind`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Col<'a> {
    /// `INTEGER NOT NULL`.
    Int(&'a i32),
    /// `INTEGER`.
    IntOpt(&'a Option<i32>),
    /// `BIGINT NOT NULL`.
    Big(&'a i64),
    /// `BIGINT`.
    BigOpt(&'a Option<i64>),
    /// `TEXT NOT NULL`.
    Text(&'a str),
    /// `TEXT`.
    TextOpt(&'a Option<String>),
    /// `TEXT`, borrowed.
    StrOpt(&'a Option<&'a str>),
}

/// A backend that binds every [`Col`]: the bounds [`Fixed`] and [`Rows`]
/// share, stated once.
pub(crate) trait ColBackend: diesel::backend::Backend {
    /// Binds `col` as the next placeholder of `out`.
    fn push_col<'b>(
        out: &mut diesel::query_builder::AstPass<'_, 'b, Self>,
        col: Col<'b>,
    ) -> diesel::QueryResult<()>;
}

impl<DB> ColBackend for DB
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::Integer>
        + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>,
    i32: diesel::serialize::ToSql<diesel::sql_types::Integer, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
{
    fn push_col<'b>(
        out: &mut diesel::query_builder::AstPass<'_, 'b, Self>,
        col: Col<'b>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::{BigInt, Integer, Nullable, Text};
        match col {
            Col::Int(v) => out.push_bind_param::<Integer, _>(v),
            Col::IntOpt(v) => out.push_bind_param::<Nullable<Integer>, _>(v),
            Col::Big(v) => out.push_bind_param::<BigInt, _>(v),
            Col::BigOpt(v) => out.push_bind_param::<Nullable<BigInt>, _>(v),
            Col::Text(v) => out.push_bind_param::<Text, _>(v),
            Col::TextOpt(v) => out.push_bind_param::<Nullable<Text>, _>(v),
            Col::StrOpt(v) => out.push_bind_param::<Nullable<Text>, _>(v),
        }
    }
}

/// A row of a hot table that [`Rows`] inserts: its `INSERT … VALUES ` head
/// and its values in the order of that column list.
pub(crate) trait InsertRow: 'static {
    /// `INSERT INTO table (a, b, …) VALUES `.
    const INSERT: &'static str;
    /// The row's values in the order of [`Self::INSERT`]'s columns.
    fn columns(&self) -> impl Iterator<Item = Col<'_>>;
}

/// A multi-row `INSERT` of `K` rows whose SQL text depends on `R` and `K`
/// alone (every `None` binds `NULL`), kept prepared per connection by that
/// type. Diesel's own batch insert walks every row three times per
/// statement (to decide whether it may keep it, to bind, and per column to
/// skip default values); this walks them once, to bind.
pub(crate) struct Rows<'a, R, const K: usize>(pub(crate) &'a [R; K]);

/// The type that keys a [`Rows`] statement.
pub(crate) struct RowsKey<R, const K: usize>(std::marker::PhantomData<R>);

impl<R: InsertRow, const K: usize> diesel::query_builder::QueryId for Rows<'_, R, K> {
    type QueryId = RowsKey<R, K>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB: ColBackend, R: InsertRow, const K: usize> diesel::query_builder::QueryFragment<DB>
    for Rows<'_, R, K>
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        out.push_sql(R::INSERT);
        for (i, row) in self.0.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            for (j, col) in row.columns().enumerate() {
                if j > 0 {
                    out.push_sql(", ");
                }
                DB::push_col(&mut out, col)?;
            }
            out.push_sql(")");
        }
        Ok(())
    }

    fn is_safe_to_cache_prepared(&self, _: &DB) -> diesel::QueryResult<bool> {
        Ok(true)
    }
}

impl<C, R, const K: usize> RunQueryDsl<C> for Rows<'_, R, K> {}

/// [`batch_insert_cached!`] for the rows of an [`InsertRow`] table: on
/// SQLite in [`Rows`] statements of 16, 4 and 1 rows.
macro_rules! batch_insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        $crate::conn::batch_insert_chunked!($conn, $table, $rows, |head| {
            $crate::conn::Rows(head)
        })
    };
}
pub(crate) use batch_insert_rows;

fixed_sql!(Savepoint, ["SAVEPOINT flowgate_write"]);
fixed_sql!(Release, ["RELEASE flowgate_write"]);
fixed_sql!(RollbackTo, ["ROLLBACK TO flowgate_write"]);

/// Runs `op` in a savepoint of the open transaction: its writes are undone
/// when it fails, the transaction's others kept. On SQLite the savepoint
/// statements are prepared once per connection (diesel's nested
/// transactions parse `SAVEPOINT …` text again on every call).
pub(crate) fn in_savepoint<T>(
    c: &mut AnyConnection,
    op: impl FnOnce(&mut AnyConnection) -> Result<T>,
) -> Result<T> {
    if !matches!(c, AnyConnection::Sqlite(_)) {
        return c.transaction(op);
    }
    Fixed::new(Savepoint, []).run(c)?;
    let out = op(c).and_then(|v| Ok(Fixed::new(Release, []).run(c).map(|_| v)?));
    if out.is_err() {
        // When SQLite already ended the transaction these fail too and the
        // commit that follows reports it.
        let _ = Fixed::new(RollbackTo, []).run(c);
        let _ = Fixed::new(Release, []).run(c);
    }
    out
}

/// How long the pool waits for a free connection.
pub(crate) fn pool_timeout() -> Duration {
    Duration::from_secs(CONNECT_TIMEOUT_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.cargo/config.toml` builds the bundled SQLite with the query planner
    /// stability guarantee; without it every cached statement with a bound
    /// `LIMIT` (each `.first()`) is compiled again on every execution.
    #[test]
    fn bundled_sqlite_keeps_one_plan_per_statement() {
        #[derive(diesel::QueryableByName)]
        struct Used {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            used: i32,
        }
        let mut c = diesel::SqliteConnection::establish(":memory:").expect("in-memory SQLite");
        let r: Used = diesel::sql_query("SELECT sqlite_compileoption_used('ENABLE_QPSG') AS used")
            .get_result(&mut c)
            .expect("compile options");
        assert_eq!(r.used, 1, "SQLite was built without SQLITE_ENABLE_QPSG");
    }

    /// `.cargo/config.toml` keeps statement journals in memory up to 1 MiB
    /// (with SQLite's 64 KiB a batch of run records made a temporary file),
    /// and turns off the global mutexes of memory statistics and of
    /// serialized mode.
    #[test]
    fn bundled_sqlite_keeps_a_batch_statement_journal_in_memory() {
        #[derive(diesel::QueryableByName)]
        struct Opt {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            opt: Option<String>,
        }
        let mut c = diesel::SqliteConnection::establish(":memory:").expect("in-memory SQLite");
        let opts: Vec<Opt> =
            diesel::sql_query("SELECT compile_options AS opt FROM pragma_compile_options")
                .load(&mut c)
                .expect("compile options");
        for want in [
            "STMTJRNL_SPILL=1048576",
            "THREADSAFE=2",
            "DEFAULT_MEMSTATUS=0",
        ] {
            assert!(
                opts.iter().any(|o| o.opt.as_deref() == Some(want)),
                "SQLite was built without SQLITE_{want} (see .cargo/config.toml)"
            );
        }
    }

    /// Records the SQL of each statement a connection prepares to keep.
    #[derive(Default, Clone)]
    struct Kept(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl diesel::connection::Instrumentation for Kept {
        fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
            if let diesel::connection::InstrumentationEvent::CacheQuery { sql, .. } = event {
                if let Ok(mut v) = self.0.lock() {
                    v.push(sql.to_owned());
                }
            }
        }
    }

    #[test]
    fn a_fixed_statement_is_prepared_once_and_binds_every_value() {
        fixed_sql!(Set, ["UPDATE t SET n = ", ", s = ", " WHERE id = ", ""]);
        let mut c = AnyConnection::Sqlite(
            diesel::SqliteConnection::establish(":memory:").expect("in-memory SQLite"),
        );
        c.batch_execute("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, s TEXT); INSERT INTO t VALUES ('a', 0, 'x')")
            .expect("table");
        let kept = Kept::default();
        c.set_instrumentation(kept.clone());
        for i in 1..=3i64 {
            let s = (i < 3).then(|| format!("v{i}"));
            let n = Fixed::new(
                Set,
                [
                    Bind::Big(Some(i)),
                    Bind::Text(s.as_deref()),
                    Bind::Text(Some("a")),
                ],
            )
            .execute(&mut c)
            .expect("update");
            assert_eq!(n, 1);
        }
        let sql = kept.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(sql.len(), 1, "prepared to keep: {sql:?}");
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            s: Option<String>,
        }
        let row: Row = diesel::sql_query("SELECT n, s FROM t WHERE id = 'a'")
            .get_result(&mut c)
            .expect("row");
        assert_eq!((row.n, row.s), (3, None), "the last values, NULL included");
        let short = Fixed::new(Set, [Bind::Big(Some(1))]).run(&mut c);
        assert!(
            short.is_err(),
            "parts and values that do not match are refused"
        );
    }

    #[test]
    fn a_failed_savepoint_undoes_its_own_writes_only() {
        let mut c = AnyConnection::Sqlite(
            diesel::SqliteConnection::establish(":memory:").expect("in-memory SQLite"),
        );
        c.batch_execute("CREATE TABLE t (id TEXT PRIMARY KEY)")
            .expect("table");
        let insert = |c: &mut AnyConnection, id: &str| -> Result<()> {
            diesel::sql_query(format!("INSERT INTO t VALUES ('{id}')")).execute(c)?;
            Ok(())
        };
        c.transaction(|c| -> Result<()> {
            in_savepoint(c, |c| insert(c, "a"))?;
            let failed = in_savepoint(c, |c| {
                insert(c, "b")?;
                // A nested savepoint that succeeds is undone with its parent.
                in_savepoint(c, |c| insert(c, "c"))?;
                insert(c, "a")
            });
            assert!(failed.is_err(), "the duplicate key is refused");
            in_savepoint(c, |c| {
                let nested = in_savepoint(c, |c| insert(c, "a"));
                assert!(nested.is_err());
                insert(c, "d")
            })?;
            Ok(())
        })
        .expect("the transaction commits");
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Text)]
            id: String,
        }
        let ids: Vec<String> = diesel::sql_query("SELECT id FROM t ORDER BY id")
            .load::<Id>(&mut c)
            .expect("rows")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a", "d"]);
    }

    /// `Rows` writes the same rows diesel's own insert writes, `NULL`s and
    /// all, for each table it serves.
    #[test]
    fn rows_insert_what_diesel_inserts() {
        use crate::models::{audit::AuditRow, run_logs::RunLogRow, runs::RunRow};
        use crate::schema::{audit, run_logs, runs};
        use diesel::prelude::*;
        use diesel_migrations::MigrationHarness;
        let mut sq = SqliteConnection::establish(":memory:").expect("in-memory SQLite");
        sq.run_pending_migrations(crate::store::SQLITE_MIGRATIONS)
            .expect("migrations");
        let run = |id: &str, full: bool| RunRow {
            id: id.to_owned(),
            flow: "f".into(),
            version: 3,
            trigger_kind: "http".into(),
            status: "succeeded".into(),
            attempt: 1,
            max_attempts: 5,
            input: "{\"a\":1}".into(),
            available_at: 11,
            lease_owner: full.then(|| "node".into()),
            lease_expires_at: full.then_some(12),
            started_at: full.then_some(13),
            finished_at: full.then_some(14),
            duration_ms: full.then_some(15),
            response_status: full.then_some(201),
            response: full.then(|| "{}".into()),
            error: full.then(|| "e".into()),
            scheduled_at: full.then_some(16),
            event_id: full.then(|| "ev".into()),
            idempotency_key: full.then(|| "k".into()),
            created_at: 17,
            http_calls: full.then(|| "[]".into()),
        };
        // `make`'s rows inserted as `Rows` (ids `a…`) and by diesel (`b…`),
        // read back in key order and compared pairwise, the key's first
        // letter left out.
        macro_rules! same_rows {
            ($table:ident, $row:ident, $key:ident, $make:expr) => {{
                let make = $make;
                Rows(&[make("a1", true), make("a2", false)])
                    .execute(&mut sq)
                    .expect("rows");
                diesel::insert_into($table::table)
                    .values(&[make("b1", true), make("b2", false)])
                    .execute(&mut sq)
                    .expect("diesel");
                let got: Vec<$row> = $table::table
                    .order($table::$key)
                    .select($row::as_select())
                    .load(&mut sq)
                    .expect(stringify!($table));
                let shown = |r: &$row| {
                    format!(
                        "{:?}",
                        $row {
                            $key: r.$key[1..].into(),
                            ..r.clone()
                        }
                    )
                };
                assert_eq!(got.len(), 4);
                assert_eq!(shown(&got[0]), shown(&got[2]));
                assert_eq!(shown(&got[1]), shown(&got[3]));
            }};
        }
        same_rows!(runs, RunRow, id, run);
        let entry = |id: &str, full: bool| AuditRow {
            id: id.to_owned(),
            time: 1,
            request_id: "r".into(),
            caller: full.then(|| "c".into()),
            flow: full.then(|| "f".into()),
            version: full.then_some(2),
            method: "POST".into(),
            path: "/p".into(),
            status: 200,
            duration_ms: 4,
            idempotency_key: full.then(|| "k".into()),
        };
        same_rows!(audit, AuditRow, id, entry);
        let line = |run_id: &str, _: bool| RunLogRow {
            run_id: run_id.to_owned(),
            seq: 7,
            time: 8,
            level: "info".into(),
            message: "m".into(),
            attempt: 1,
        };
        same_rows!(run_logs, RunLogRow, run_id, line);
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            Target::parse("sqlite::memory:").ok(),
            Some(Target::SqliteMemory)
        );
        assert_eq!(
            Target::parse("sqlite://:memory:").ok(),
            Some(Target::SqliteMemory)
        );
        assert_eq!(
            Target::parse("sqlite://./data/flowgate.db").ok(),
            Some(Target::SqliteFile(PathBuf::from("./data/flowgate.db")))
        );
        assert_eq!(
            Target::parse("sqlite:///var/lib/fg.db").ok(),
            Some(Target::SqliteFile(PathBuf::from("/var/lib/fg.db")))
        );
        assert_eq!(
            Target::parse("postgres://u:p@h/db").ok(),
            Some(Target::Postgres(
                "postgres://u:p@h/db?connect_timeout=5".into()
            ))
        );
        assert_eq!(
            Target::parse("postgresql://h/db?sslmode=disable").ok(),
            Some(Target::Postgres(
                "postgresql://h/db?sslmode=disable&connect_timeout=5".into()
            ))
        );
        assert!(Target::parse("mysql://x").is_err());
        assert!(Target::parse("sqlite://").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }
}
