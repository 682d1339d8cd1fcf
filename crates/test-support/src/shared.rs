//! Shared PostgreSQL and Redis for tests that run several replicas: each
//! test gets a fresh PostgreSQL database and its own, emptied Redis
//! database on the servers `scripts/test` starts (named by
//! [`POSTGRES_URL`] and [`REDIS_URL`]), and hosts started with
//! [`SharedBackends::apply`] keep their state there instead of in their
//! own state directories, as replicas of one deployment do.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::TestHostBuilder;

/// The PostgreSQL server of the tests, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL: &str = "DOL_TEST_POSTGRES_URL";
/// The Redis server of the tests, e.g. `redis://127.0.0.1:6379`.
pub const REDIS_URL: &str = "DOL_TEST_REDIS_URL";

/// One test's share of the servers.
pub struct SharedBackends {
    /// The connection string of this test's database (`database_url`).
    pub database_url: String,
    database_host: String,
    runtime_config: PathBuf,
    _dir: tempfile::TempDir,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl SharedBackends {
    /// A fresh database named after `test` and Redis database `redis_db`
    /// (distinct per test; `scripts/test` starts Redis with 64), emptied.
    /// `None` — said loudly — when the servers are not configured, which
    /// fails the test under `CI=true` instead.
    pub async fn fresh(test: &str, redis_db: u8) -> Option<Self> {
        let (Some(server), Some(redis)) = (env(POSTGRES_URL), env(REDIS_URL)) else {
            let message = format!(
                "{test}: SKIPPED — {POSTGRES_URL} and {REDIS_URL} are not set (scripts/test \
                 starts PostgreSQL and Redis and sets them)"
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{message}; CI must run it"
            );
            eprintln!("!!! {message}");
            return None;
        };
        let database = format!("dol_{test}_{}", std::process::id());
        let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL}={server}: {e}"));
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {database}"))
            .await
            .unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .unwrap();
        let config: tokio_postgres::Config = server.parse().unwrap();
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => panic!("{POSTGRES_URL} must name a TCP host"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres");
        let password = config
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        flush_redis(&redis, redis_db);
        let dir = tempfile::tempdir().unwrap();
        let runtime_config = dir.path().join("runtime-config.toml");
        std::fs::write(
            &runtime_config,
            format!(
                "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}/{redis_db}\"\n",
                redis.trim_end_matches('/')
            ),
        )
        .unwrap();
        Some(Self {
            database_url: format!("postgres://{user}{password}@{host}:{port}/{database}"),
            database_host: format!("{host}:{port}"),
            runtime_config,
            _dir: dir,
        })
    }

    /// `builder` as a replica on these backends.
    pub fn apply(&self, builder: TestHostBuilder) -> TestHostBuilder {
        let [(url, url_value), (host, host_value)] = self.variables();
        builder
            .runtime_config(&self.runtime_config)
            .variable(url, url_value)
            .variable(host, host_value)
    }

    /// The runtime config file naming the shared Redis key-value store, for
    /// a replica started outside [`Self::apply`] (a child process).
    pub fn runtime_config(&self) -> &Path {
        &self.runtime_config
    }

    /// The variables (as `dol up` reads them from the environment) that
    /// point a replica at the shared database.
    pub fn variables(&self) -> [(&'static str, &str); 2] {
        [
            ("SPIN_VARIABLE_DATABASE_URL", &self.database_url),
            ("SPIN_VARIABLE_DATABASE_HOST", &self.database_host),
        ]
    }

    /// A connection to this test's database, to check what replicas wrote.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        client
    }
}

/// Empties Redis database `db` (RESP over a plain socket: two commands).
fn flush_redis(url: &str, db: u8) {
    let address = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream =
        std::net::TcpStream::connect(&address).unwrap_or_else(|e| panic!("{REDIS_URL}={url}: {e}"));
    let db = db.to_string();
    let command = format!(
        "*2\r\n$6\r\nSELECT\r\n${}\r\n{db}\r\n*1\r\n$7\r\nFLUSHDB\r\n",
        db.len()
    );
    stream.write_all(command.as_bytes()).unwrap();
    let mut answer = [0u8; 10];
    let mut read = 0;
    // Two `+OK\r\n` answers.
    while read < answer.len() {
        let n = stream.read(&mut answer[read..]).unwrap();
        assert!(n > 0, "Redis closed the connection");
        read += n;
    }
    assert_eq!(&answer, b"+OK\r\n+OK\r\n", "Redis SELECT {db} / FLUSHDB");
}
