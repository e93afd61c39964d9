//! Change notices between nodes sharing one PostgreSQL database.
//!
//! Every write that makes a node's caches stale (publish, rollback, retire,
//! disable, key creation and revocation, secret changes) calls
//! [`record_change`] inside its transaction: on PostgreSQL that increments
//! the one-row `cluster_changes` sequence and sends
//! `NOTIFY flowgate_changes_<schema hash>, '<seq> <kind> <name>'`, which PostgreSQL
//! delivers to every listener when the transaction commits (never for a
//! rolled-back one). [`Store::listen_changes`] keeps a dedicated connection
//! listening (reconnecting with backoff) and hands each notice to a
//! callback; every few seconds it also reads the sequence on that connection
//! and reports [`Change::All`] when it moved past the notices it saw, so a
//! notification lost while the connection was down still invalidates.
//! The channel is named after the schema the tables live in, so deployments
//! sharing one database in different schemas never see each other's notices.
//! SQLite (one node) records nothing: the node that writes invalidates its
//! own caches directly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel::PgConnection;

use crate::conn::AnyConnection;
use crate::error::Result;
use crate::schema::cluster_changes;
use crate::Store;

/// The prefix of the PostgreSQL channel change notices travel on; the rest
/// names the connection's schema ([`CHANNEL_SQL`]).
pub const CHANNEL: &str = "flowgate_changes";

/// The channel of the connection's schema, as an SQL expression: the prefix
/// and 12 hex digits of the schema name's md5 (a plain identifier whatever
/// the schema is called, and short of PostgreSQL's 63-byte limit).
const CHANNEL_SQL: &str = "'flowgate_changes_' || left(md5(current_schema()), 12)";

/// What changed on some node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Change {
    /// A flow's live version, versions' status or disabled flag (its schedule too).
    Flow(String),
    /// An API key was created, revoked or changed (by key id).
    Key(String),
    /// A secret was set or deleted (by name).
    Secret(String),
    /// Unknown changes may have been missed: drop every cache.
    All,
}

impl Change {
    fn kind(&self) -> &'static str {
        match self {
            Change::Flow(_) => "flow",
            Change::Key(_) => "key",
            Change::Secret(_) => "secret",
            Change::All => "all",
        }
    }

    fn name(&self) -> &str {
        match self {
            Change::Flow(n) | Change::Key(n) | Change::Secret(n) => n,
            Change::All => "",
        }
    }

    /// The notification payload: `<seq> <kind> <name>`.
    fn payload(&self, seq: i64) -> String {
        format!("{seq} {} {}", self.kind(), self.name())
    }

    /// Reads a payload back; `None` for anything this version does not know
    /// (a newer node's kind: the caller then invalidates everything).
    fn parse(payload: &str) -> Option<(i64, Change)> {
        let mut parts = payload.splitn(3, ' ');
        let seq = parts.next()?.parse().ok()?;
        let kind = parts.next()?;
        let name = parts.next().unwrap_or("").to_owned();
        let change = match kind {
            "flow" => Change::Flow(name),
            "key" => Change::Key(name),
            "secret" => Change::Secret(name),
            "all" => Change::All,
            _ => return None,
        };
        Some((seq, change))
    }
}

/// Records `change` in the current transaction (PostgreSQL only): bumps the
/// change sequence and queues the notification, delivered on commit.
pub(crate) fn record_change(c: &mut AnyConnection, change: &Change) -> Result<()> {
    let AnyConnection::Postgres(pg) = c else {
        return Ok(());
    };
    let seq: i64 = diesel::update(cluster_changes::table.find(1))
        .set(cluster_changes::seq.eq(cluster_changes::seq + 1))
        .returning(cluster_changes::seq)
        .get_result(pg)?;
    diesel::sql_query(format!("SELECT pg_notify({CHANNEL_SQL}, $1)"))
        .bind::<Text, _>(change.payload(seq))
        .execute(pg)?;
    Ok(())
}

fn read_seq(pg: &mut PgConnection) -> QueryResult<i64> {
    cluster_changes::table
        .find(1)
        .select(cluster_changes::seq)
        .first(pg)
}

/// Tuning of [`Store::listen_changes`].
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// `application_name` of the listening connection (as `pg_stat_activity` shows it).
    pub name: String,
    /// How often the listening connection is read for notifications.
    pub poll: Duration,
    /// How often the change sequence is compared (the fallback for missed
    /// notifications; also how fast a silently dead connection is noticed).
    pub check_every: Duration,
}

impl Default for ListenOptions {
    fn default() -> Self {
        Self {
            name: "flowgate-listener".into(),
            poll: Duration::from_millis(20),
            check_every: Duration::from_secs(5),
        }
    }
}

/// The running listener; stops when dropped (or with [`ChangeListener::stop`]).
pub struct ChangeListener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ChangeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeListener")
            .field("stopped", &self.stop.load(Ordering::Relaxed))
            .finish()
    }
}

impl ChangeListener {
    /// Asks the listener thread to end (it notices within one poll interval).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for ChangeListener {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Store {
    /// On PostgreSQL, starts a thread that LISTENs for change notices of every
    /// node (this one included) and calls `on_change` for each; `None` on
    /// SQLite. See the module documentation for the fallback.
    pub fn listen_changes(
        &self,
        opts: ListenOptions,
        on_change: impl Fn(Change) + Send + 'static,
    ) -> Option<ChangeListener> {
        let base = self.inner.pg_url.clone()?;
        let sep = if base.contains('?') { '&' } else { '?' };
        let app: String = opts
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let url = format!("{base}{sep}application_name={app}");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("flowgate-listen".into())
            .spawn(move || listen_loop(&url, &opts, &flag, &on_change))
            .map_err(|e| tracing::warn!(error = %e, "cannot start the change listener"))
            .ok()?;
        Some(ChangeListener {
            stop,
            thread: Some(thread),
        })
    }
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

fn listen_loop(url: &str, opts: &ListenOptions, stop: &AtomicBool, on_change: &dyn Fn(Change)) {
    let mut last_seq: Option<i64> = None;
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        match listen_once(url, opts, stop, on_change, &mut last_seq, &mut backoff) {
            Ok(()) if stop.load(Ordering::Relaxed) => return,
            Ok(()) => {}
            Err(e) => {
                metrics::counter!("flowgate_change_listener_reconnects_total").increment(1);
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "change listener lost its connection; reconnecting");
                sleep_unless_stopped(backoff, stop);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One connection's life: LISTEN, then drain notifications and compare the
/// sequence until `stop` (`Ok`) or a connection error (`Err`).
fn listen_once(
    url: &str,
    opts: &ListenOptions,
    stop: &AtomicBool,
    on_change: &dyn Fn(Change),
    last_seq: &mut Option<i64>,
    backoff: &mut Duration,
) -> std::result::Result<(), String> {
    let mut pg = PgConnection::establish(url).map_err(|e| e.to_string())?;
    let channel = diesel::select(diesel::dsl::sql::<Text>(CHANNEL_SQL))
        .get_result::<String>(&mut pg)
        .map_err(|e| e.to_string())?;
    if !channel
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!("unexpected channel name {channel:?}"));
    }
    diesel::sql_query(format!("LISTEN {channel}"))
        .execute(&mut pg)
        .map_err(|e| e.to_string())?;
    *backoff = Duration::from_millis(100);
    tracing::debug!("change listener connected");
    // Changes made while there was no listener (first start: none to catch up).
    check_seq(&mut pg, &channel, on_change, last_seq)?;
    let mut checked = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        drain(&mut pg, &channel, on_change, last_seq)?;
        if checked.elapsed() >= opts.check_every {
            check_seq(&mut pg, &channel, on_change, last_seq)?;
            checked = Instant::now();
        }
        std::thread::sleep(opts.poll);
    }
    Ok(())
}

fn drain(
    pg: &mut PgConnection,
    channel: &str,
    on_change: &dyn Fn(Change),
    last_seq: &mut Option<i64>,
) -> std::result::Result<(), String> {
    for n in pg.notifications_iter() {
        let n = n.map_err(|e| e.to_string())?;
        if n.channel != channel {
            continue;
        }
        metrics::counter!("flowgate_change_notices_total").increment(1);
        match Change::parse(&n.payload) {
            Some((seq, change)) => {
                *last_seq = Some(last_seq.map_or(seq, |l| l.max(seq)));
                on_change(change);
            }
            None => on_change(Change::All),
        }
    }
    Ok(())
}

fn check_seq(
    pg: &mut PgConnection,
    channel: &str,
    on_change: &dyn Fn(Change),
    last_seq: &mut Option<i64>,
) -> std::result::Result<(), String> {
    let seq = read_seq(pg).map_err(|e| e.to_string())?;
    // Notices that arrived with the answer are not "missed".
    drain(pg, channel, on_change, last_seq)?;
    match *last_seq {
        Some(l) if seq > l => {
            metrics::counter!("flowgate_change_fallback_flushes_total").increment(1);
            tracing::debug!(seq, seen = l, "change sequence moved past the notices seen");
            on_change(Change::All);
            *last_seq = Some(seq);
        }
        Some(_) => {}
        None => *last_seq = Some(seq),
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        for c in [
            Change::Flow("orders".into()),
            Change::Key("k_123".into()),
            Change::Secret("with space".into()),
            Change::All,
        ] {
            assert_eq!(Change::parse(&c.payload(7)), Some((7, c)));
        }
        assert_eq!(Change::parse("x flow a"), None);
        assert_eq!(Change::parse("3 widget a"), None);
    }
}
