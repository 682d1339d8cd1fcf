//! The app's PostgreSQL connection pools: one per connection string, shared
//! by every instance of the app, as Spin's outbound-pg factor keeps them
//! (`PooledTokioClientFactory`: a deadpool-postgres pool of at most 64
//! connections per address, at most 16 addresses).
//!
//! A guest's `open` takes an idle connection (no round trip) or makes a new
//! one; its drop — or the end of its instance, trap included — hands the
//! connection back. Before it is idle again it is made clean, off the request
//! path: a transaction the guest left open (or aborted) is rolled back, and
//! the session state Spin's `RecyclingMethod::Clean` resets is reset (cursors,
//! `SET`s, `LISTEN`s, session advisory locks, temporary tables, sequence
//! caches). Spin resets the session too, but at the next checkout and without
//! the rollback, so there a transaction a trapped guest left open follows the
//! connection to the next guest; here it never does. A connection that broke,
//! or whose clean-up failed, is closed instead of kept.
//!
//! Each connection keeps the statements guests prepared on it ([`Conn`]),
//! as deadpool-postgres's statement cache does: a statement that comes again
//! (an app sends the same few dozen texts on every request) is bound and run
//! in one round trip instead of being parsed first in another. `Clean`
//! recycling keeps prepared statements, so the cache outlives each guest.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, Statement};

/// Connections per address, in use and idle together (Spin's figure).
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;

/// Addresses whose pools are kept; the least recently used goes first (Spin's figure).
const MAX_ADDRESSES: usize = 16;

/// How long `open` waits for a connection when all of an address's are in use.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a new connection may take when the address sets no `connect_timeout`,
/// so an unreachable database fails the guest's `open` instead of hanging it.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An idle connection older than this is closed rather than reused.
const MAX_IDLE: Duration = Duration::from_secs(300);

/// What deadpool-postgres's `Clean` recycling runs (`DISCARD ALL` without
/// `DEALLOCATE ALL`, which may not run in the simple query's implicit transaction).
const RESET_SESSION: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
     UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

/// The reset, preceded by a probe of whether it ran inside a transaction the
/// guest left open: `now()` is the transaction's start, which equals the
/// statement's start only in the first statement of a transaction.
const PROBE_AND_RESET: &str = "SELECT now() = statement_timestamp(); CLOSE ALL; \
     SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

/// Statements kept per connection; past this the cache starts over (a guest
/// sending ever new texts must not grow the server's memory without bound).
const MAX_CACHED_STATEMENTS: usize = 512;

/// One pooled connection and the statements prepared on it.
pub struct Conn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

impl Conn {
    /// `sql` prepared on this connection: from the cache, or prepared now
    /// (one round trip) and kept.
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.cache().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED_STATEMENTS {
            // Dropping a statement closes it on the server.
            cache.clear();
        }
        cache.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Drops `sql` from the cache: it failed, perhaps because its table
    /// changed under the prepared plan, so the next use prepares it afresh.
    pub fn forget(&self, sql: &str) {
        self.cache().remove(sql);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        self.statements.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

/// Every address's pool.
#[derive(Default)]
pub struct PgPools {
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

struct Pool {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<(Arc<Conn>, Instant)>>,
    permits: Arc<Semaphore>,
    last_used: Mutex<Instant>,
}

/// A connection lent to a guest; returned to its pool (clean) when dropped.
pub struct PooledClient {
    // Shared only so `Drop` can hand it to the clean-up task.
    client: Arc<Conn>,
    pool: Arc<Pool>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Deref for PooledClient {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.client
    }
}

impl PgPools {
    /// A connection to `address`: an idle pooled one, or a new one. The error
    /// is the message for Spin's `connection-failed` (PostgreSQL's own words
    /// when the server refused the connection).
    pub async fn get(&self, address: &str) -> Result<PooledClient, String> {
        let pool = self.pool(address)?;
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, pool.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                format!(
                    "timed out after {}s waiting for one of the {MAX_CONNECTIONS_PER_ADDRESS} \
                     connections to this database",
                    ACQUIRE_TIMEOUT.as_secs()
                )
            })?
            .map_err(|_| "connection pool closed".to_owned())?;
        let client = match pool.take_idle() {
            Some(client) => client,
            None => pool.connect().await?,
        };
        Ok(PooledClient {
            client,
            pool,
            permit: Some(permit),
        })
    }

    fn pool(&self, address: &str) -> Result<Arc<Pool>, String> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(address) {
            *pool.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            return Ok(pool.clone());
        }
        let mut config = address
            .parse::<tokio_postgres::Config>()
            .map_err(|error| format!("invalid connection string: {error}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if pools.len() >= MAX_ADDRESSES {
            // Connections in use keep their pool alive until they are dropped.
            let oldest = pools
                .iter()
                .min_by_key(|(_, pool)| *pool.last_used.lock().unwrap_or_else(|p| p.into_inner()))
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                pools.remove(&oldest);
            }
        }
        let pool = Arc::new(Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS_PER_ADDRESS)),
            last_used: Mutex::new(Instant::now()),
        });
        pools.insert(address.to_owned(), pool.clone());
        Ok(pool)
    }
}

impl Pool {
    /// The most recently returned idle connection that is still open and fresh.
    fn take_idle(&self) -> Option<Arc<Conn>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((client, since)) = idle.pop() {
            if !client.is_closed() && since.elapsed() < MAX_IDLE {
                return Some(client);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Arc<Conn>, String> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|error| describe(&error))?;
        // The connection task ends when the client is dropped or the server goes away.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!("PostgreSQL connection closed: {error}");
            }
        });
        Ok(Arc::new(Conn {
            client,
            statements: Mutex::new(HashMap::new()),
        }))
    }

    fn put_idle(&self, client: Arc<Conn>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push((client, Instant::now()));
    }
}

/// An error's message with the server's own words: tokio-postgres's `Display`
/// of a server error says only "db error".
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("db error: {db}"),
        None => error.to_string(),
    }
}

/// Makes `client` clean for the next guest, or fails (the caller closes it).
/// One round trip when the guest closed its transactions, three when not.
async fn clean(client: &Client) -> Result<(), tokio_postgres::Error> {
    let in_transaction = match client.simple_query(PROBE_AND_RESET).await {
        Ok(messages) => !matches!(
            messages.iter().find(|m| matches!(m, SimpleQueryMessage::Row(_))),
            Some(SimpleQueryMessage::Row(row)) if row.get(0) == Some("t")
        ),
        // Only an aborted transaction refuses these statements.
        Err(error) if error.as_db_error().is_some() => true,
        Err(error) => return Err(error),
    };
    if in_transaction {
        // The reset ran inside the guest's transaction: roll both back, then reset.
        client.batch_execute("ROLLBACK").await?;
        client.batch_execute(RESET_SESSION).await?;
    }
    Ok(())
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let client = self.client.clone();
        if client.is_closed() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to clean it on: closing it is the clean choice.
            return;
        };
        let pool = self.pool.clone();
        runtime.spawn(async move {
            match clean(&client).await {
                Ok(()) => pool.put_idle(client),
                Err(error) => tracing::debug!("PostgreSQL connection not reused: {error}"),
            }
            // The slot frees only once the connection is idle (or closed).
            drop(permit);
        });
    }
}

#[cfg(test)]
impl PgPools {
    /// Idle connections kept for `address` (tests wait on the background clean-up).
    fn idle_count(&self, address: &str) -> usize {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.get(address).map_or(0, |pool| {
            pool.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
        })
    }

    /// Waits (bounded) until `address` has `count` idle connections.
    pub(crate) async fn wait_idle(&self, address: &str, count: usize) {
        for _ in 0..500 {
            if self.idle_count(address) == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{address}: never got {count} idle connection(s)");
    }
}

/// The PostgreSQL server host tests use: `DOL_TEST_POSTGRES_URL` when set (as
/// for the core's store tests), else a throw-away server of this test process
/// ([`crate::test_postgres`]); `None`, said loudly, where PostgreSQL is not
/// installed, except in CI, where that fails.
#[cfg(test)]
pub(crate) fn test_postgres_url(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var("DOL_TEST_POSTGRES_URL")
        && !url.is_empty()
    {
        return Some(url);
    }
    match crate::test_postgres::url() {
        Ok(url) => Some(url),
        Err(error) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: PostgreSQL is needed in CI: {error}"
            );
            eprintln!("SKIPPING {test}: no PostgreSQL: {error}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pid(client: &Client) -> i32 {
        client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// A connection outside the pools, to watch pooled ones from.
    async fn observer(url: &str) -> Client {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// `pg_stat_activity.state` of backend `pid` (`idle`, `idle in transaction`, …).
    async fn state(observer: &Client, pid: i32) -> String {
        observer
            .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .get(0)
    }

    #[tokio::test]
    async fn a_returned_connection_is_reused_without_the_guests_transaction_or_session_state() {
        let Some(url) = test_postgres_url("pool reuse") else {
            return;
        };
        let pools = PgPools::default();
        let table = format!("pool_reuse_{}", std::process::id());
        let client = pools.get(&url).await.unwrap();
        client
            .batch_execute(&format!("CREATE TABLE IF NOT EXISTS {table} (v int)"))
            .await
            .unwrap();
        let first = pid(&client).await;
        // What a guest that traps mid-transaction leaves behind.
        client
            .batch_execute(&format!(
                "BEGIN; INSERT INTO {table} VALUES (1); SET application_name = 'guest'; \
                 SELECT pg_advisory_lock(4242)"
            ))
            .await
            .unwrap();
        drop(client);
        pools.wait_idle(&url, 1).await;

        let client = pools.get(&url).await.unwrap();
        assert_eq!(pid(&client).await, first, "the idle connection is reused");
        assert_eq!(state(&observer(&url).await, first).await, "idle");
        let row = client
            .query_one(
                &format!(
                    "SELECT current_setting('application_name'), \
                     (SELECT count(*) FROM {table}), \
                     (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                      AND pid = pg_backend_pid())"
                ),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "", "SETs are reset");
        assert_eq!(
            row.get::<_, i64>(1),
            0,
            "the open transaction was rolled back"
        );
        assert_eq!(
            row.get::<_, i64>(2),
            0,
            "session advisory locks are released"
        );
        client
            .batch_execute(&format!("DROP TABLE {table}"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_connection_left_in_an_aborted_transaction_is_reused_clean() {
        let Some(url) = test_postgres_url("pool aborted transaction") else {
            return;
        };
        let pools = PgPools::default();
        let client = pools.get(&url).await.unwrap();
        let first = pid(&client).await;
        client.batch_execute("BEGIN").await.unwrap();
        assert!(client.batch_execute("SELECT 1/0").await.is_err());
        drop(client);
        pools.wait_idle(&url, 1).await;
        let client = pools.get(&url).await.unwrap();
        assert_eq!(pid(&client).await, first);
        assert_eq!(state(&observer(&url).await, first).await, "idle");
        client.query_one("SELECT 1", &[]).await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_never_handed_out() {
        let Some(url) = test_postgres_url("pool broken connection") else {
            return;
        };
        let pools = PgPools::default();
        let client = pools.get(&url).await.unwrap();
        let first = pid(&client).await;
        drop(client);
        pools.wait_idle(&url, 1).await;
        observer(&url)
            .await
            .execute("SELECT pg_terminate_backend($1)", &[&first])
            .await
            .unwrap();
        // The connection task notices the server's close on its own.
        for _ in 0..500 {
            let closed = pools.pools.lock().unwrap()[&url]
                .idle
                .lock()
                .unwrap()
                .iter()
                .all(|(client, _)| client.is_closed());
            if closed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let client = pools.get(&url).await.unwrap();
        assert_ne!(
            pid(&client).await,
            first,
            "a new connection replaces the dead one"
        );
    }

    #[tokio::test]
    async fn connections_are_bounded_per_address_and_freed_when_returned() {
        let Some(url) = test_postgres_url("pool bound") else {
            return;
        };
        let pools = PgPools::default();
        let pool = pools.pool(&url).unwrap();
        assert_eq!(
            pool.permits.available_permits(),
            MAX_CONNECTIONS_PER_ADDRESS
        );
        let client = pools.get(&url).await.unwrap();
        assert_eq!(
            pool.permits.available_permits(),
            MAX_CONNECTIONS_PER_ADDRESS - 1
        );
        drop(client);
        pools.wait_idle(&url, 1).await;
        assert_eq!(
            pool.permits.available_permits(),
            MAX_CONNECTIONS_PER_ADDRESS
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_with_the_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let pools = PgPools::default();
        let message = pools
            .get(&format!("postgres://postgres@127.0.0.1:{port}/db"))
            .await
            .err()
            .unwrap();
        assert!(message.contains("error connecting to server"), "{message}");
        let message = pools.get("postgres://[bad").await.err().unwrap();
        assert!(
            message.starts_with("invalid connection string"),
            "{message}"
        );
    }

    /// Not a check: prints what one request's open + query + close costs on
    /// a fresh connection (before pooling) and on a pooled one.
    /// `DOL_TEST_POSTGRES_URL=… cargo test -p dol-host --lib pg_pool -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, run by hand"]
    async fn measure_open_query_close() {
        let Some(url) = test_postgres_url("pool measurement") else {
            return;
        };
        const N: u32 = 300;
        let start = Instant::now();
        for _ in 0..N {
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
            tokio::spawn(connection);
            client.query_one("SELECT 1", &[]).await.unwrap();
        }
        let fresh = start.elapsed() / N;
        let pools = PgPools::default();
        let start = Instant::now();
        for _ in 0..N {
            let client = pools.get(&url).await.unwrap();
            client.query_one("SELECT 1", &[]).await.unwrap();
        }
        let pooled = start.elapsed() / N;
        let client = pools.get(&url).await.unwrap();
        let start = Instant::now();
        for _ in 0..N {
            client.query_one("SELECT 1", &[]).await.unwrap();
        }
        let query_only = start.elapsed() / N;
        println!(
            "open + SELECT 1 + close, mean of {N}: fresh connection {fresh:?}, pooled {pooled:?} \
             (the SELECT alone on an open connection: {query_only:?})"
        );
    }
}
