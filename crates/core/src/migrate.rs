//! Versioned SQL migrations, applied by the app itself on first use.
//!
//! The SQL lives in `migrations/NNNN_name.sql` at the repository root and is
//! embedded here at compile time. [`apply`] runs against any [`SqlExecutor`]
//! (Spin's SQLite in the components, a fake in tests), so the runner itself
//! performs no I/O.
//!
//! Guarantees:
//! - bookkeeping lives in `_dol_migrations(version, name, applied_at)`;
//! - each missing version runs in its own `BEGIN IMMEDIATE` … `COMMIT`
//!   together with its bookkeeping row, and is rolled back on any error;
//! - the "already applied?" check is repeated inside the transaction, so two
//!   instances racing on a fresh database apply each version exactly once;
//! - Spin's SQLite `execute` runs one statement per call, so every migration
//!   file is split into statements first ([`split_statements`]).

use std::collections::BTreeSet;

use crate::storage::{SqlExecutor, SqlValue};

/// One versioned migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Version number, strictly increasing through [`MIGRATIONS`].
    pub version: i64,
    /// Short name (the file name without number and extension).
    pub name: &'static str,
    /// The SQL text of the file; may hold several statements and comments.
    pub sql: &'static str,
}

/// Every migration of the application, in version order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "flags",
        sql: include_str!("../../../migrations/0002_flags.sql"),
    },
    Migration {
        version: 3,
        name: "gateway",
        sql: include_str!("../../../migrations/0003_gateway.sql"),
    },
    Migration {
        version: 4,
        name: "alerts",
        sql: include_str!("../../../migrations/0004_alerts.sql"),
    },
    Migration {
        version: 5,
        name: "flag_evaluations",
        sql: include_str!("../../../migrations/0005_flag_evaluations.sql"),
    },
    Migration {
        version: 6,
        name: "rollouts",
        sql: include_str!("../../../migrations/0006_rollouts.sql"),
    },
    Migration {
        version: 7,
        name: "experiments",
        sql: include_str!("../../../migrations/0007_experiments.sql"),
    },
    Migration {
        version: 8,
        name: "latency_buckets",
        sql: include_str!("../../../migrations/0008_latency_buckets.sql"),
    },
    Migration {
        version: 9,
        name: "usage_rollups",
        sql: include_str!("../../../migrations/0009_usage_rollups.sql"),
    },
    Migration {
        version: 10,
        name: "image_prices",
        sql: include_str!("../../../migrations/0010_image_prices.sql"),
    },
    Migration {
        version: 11,
        name: "video_jobs",
        sql: include_str!("../../../migrations/0011_video_jobs.sql"),
    },
    Migration {
        version: 12,
        name: "optimization",
        sql: include_str!("../../../migrations/0012_optimization.sql"),
    },
    Migration {
        version: 13,
        name: "orgs",
        sql: include_str!("../../../migrations/0013_orgs.sql"),
    },
    Migration {
        version: 15,
        name: "trust",
        sql: include_str!("../../../migrations/0015_trust.sql"),
    },
    Migration {
        version: 16,
        name: "alert_incidents",
        sql: include_str!("../../../migrations/0016_alert_incidents.sql"),
    },
    Migration {
        version: 17,
        name: "usage_by_org",
        sql: include_str!("../../../migrations/0017_usage_by_org.sql"),
    },
    Migration {
        version: 18,
        name: "video_health_remix",
        sql: include_str!("../../../migrations/0018_video_health_remix.sql"),
    },
    Migration {
        version: 19,
        name: "scan_leases",
        sql: include_str!("../../../migrations/0019_scan_leases.sql"),
    },
    Migration {
        version: 20,
        name: "recommendations",
        sql: include_str!("../../../migrations/0020_recommendations.sql"),
    },
    Migration {
        version: 21,
        name: "anomaly_alerts",
        sql: include_str!("../../../migrations/0021_anomaly_alerts.sql"),
    },
    Migration {
        version: 22,
        name: "video_inputs_models",
        sql: include_str!("../../../migrations/0022_video_inputs.sql"),
    },
    Migration {
        version: 23,
        name: "request_difficulty",
        sql: include_str!("../../../migrations/0023_request_difficulty.sql"),
    },
    Migration {
        version: 24,
        name: "bound_absurd_usage",
        sql: include_str!("../../../migrations/0024_bound_absurd_usage.sql"),
    },
    Migration {
        version: 25,
        name: "bound_event_values",
        sql: include_str!("../../../migrations/0025_bound_event_values.sql"),
    },
    Migration {
        version: 26,
        name: "catalog_stamp",
        sql: include_str!("../../../migrations/0026_catalog_stamp.sql"),
    },
    Migration {
        version: 27,
        name: "org_settings_stamp",
        sql: include_str!("../../../migrations/0027_org_settings_stamp.sql"),
    },
];

/// The bookkeeping table; created outside any transaction, idempotently.
pub const BOOKKEEPING_DDL: &str = "CREATE TABLE IF NOT EXISTS _dol_migrations (\
version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)";

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    /// Versions applied by this call, in order (empty when up to date).
    pub applied: Vec<i64>,
    /// The highest version recorded after this call (0 on an empty list).
    pub current_version: i64,
}

/// Why [`apply`] failed. The messages come from the database and may hold
/// internals: log them, do not send them to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateError {
    /// Creating or reading `_dol_migrations` failed.
    #[error("migration bookkeeping failed: {0}")]
    Bookkeeping(String),
    /// `BEGIN IMMEDIATE` or `COMMIT` failed (e.g. the database is busy).
    #[error("migration {version}: transaction failed: {message}")]
    Transaction {
        /// The migration being applied.
        version: i64,
        /// The database's message.
        message: String,
    },
    /// A statement of a migration failed; the migration was rolled back.
    #[error("migration {version}, statement {statement}: {message}")]
    Statement {
        /// The migration being applied.
        version: i64,
        /// 1-based index of the failing statement in the file.
        statement: usize,
        /// The database's message.
        message: String,
    },
    /// A migration file contains no statement, or a quote or comment is not
    /// closed.
    #[error("migration {version}: malformed SQL: {message}")]
    Malformed {
        /// The malformed migration.
        version: i64,
        /// What is wrong.
        message: String,
    },
}

/// Brings the database up to the latest of [`MIGRATIONS`].
///
/// `now_ms` (Unix epoch milliseconds) is stored as `applied_at`.
pub fn apply(exec: &mut impl SqlExecutor, now_ms: i64) -> Result<MigrationReport, MigrateError> {
    apply_list(exec, MIGRATIONS, now_ms)
}

/// [`apply`] with an explicit migration list (for tests and tools).
pub fn apply_list(
    exec: &mut impl SqlExecutor,
    migrations: &[Migration],
    now_ms: i64,
) -> Result<MigrationReport, MigrateError> {
    // The common case is a current database: one aggregate row decides it
    // (every request of every component runs this). Only a database without
    // the book-keeping table (a fresh one) pays for the DDL.
    let summary = applied_summary(exec, migrations);
    if let Ok(summary) = &summary
        && let Some(current_version) = all_applied(summary, migrations)
    {
        return Ok(MigrationReport {
            applied: Vec::new(),
            current_version,
        });
    }
    let done = match summary.and_then(|_| applied_versions(exec)) {
        Ok(done) => done,
        Err(_) => {
            // Replicas starting together on a fresh PostgreSQL race on this
            // DDL (`IF NOT EXISTS` is not atomic there): the loser's error
            // means the table now exists, so read it again before failing.
            let created = exec.execute(BOOKKEEPING_DDL, &[]);
            match (created, applied_versions(exec)) {
                (_, Ok(done)) => done,
                (Err(message), Err(_)) => return Err(MigrateError::Bookkeeping(message)),
                (Ok(_), Err(e)) => return Err(e),
            }
        }
    };
    let mut report = MigrationReport {
        applied: Vec::new(),
        current_version: done.last().copied().unwrap_or(0),
    };
    for migration in migrations.iter().filter(|m| !done.contains(&m.version)) {
        if apply_one(exec, migration, now_ms)? {
            report.applied.push(migration.version);
        }
        report.current_version = report.current_version.max(migration.version);
    }
    Ok(report)
}

/// How many versions `_dol_migrations` records, and how many of them are
/// in the migration list asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AppliedSummary {
    count: i64,
    listed: i64,
}

/// [`AppliedSummary`] of the book-keeping table against `migrations`, in
/// one row. The versions are the build's own constants, written into the
/// statement as ranges (`version BETWEEN 1 AND 13 OR …`): its text is the
/// same on every request, so it stays prepared, and SQLite tests each row
/// against the ranges (an `IN (…)` list made it build a temporary index on
/// every run).
fn applied_summary(
    exec: &mut impl SqlExecutor,
    migrations: &[Migration],
) -> Result<AppliedSummary, MigrateError> {
    let rows = exec
        .execute(
            &format!(
                "SELECT count(*), sum(CASE WHEN {} THEN 1 ELSE 0 END) FROM _dol_migrations",
                version_ranges(migrations)
            ),
            &[],
        )
        .map_err(MigrateError::Bookkeeping)?;
    let row = rows.first().map(Vec::as_slice).unwrap_or_default();
    let int = |index: usize| row.get(index).and_then(SqlValue::as_i64).unwrap_or(0);
    Ok(AppliedSummary {
        count: int(0),
        listed: int(1),
    })
}

/// A SQL condition true for exactly the versions of `migrations`: their
/// runs of consecutive versions as `version BETWEEN a AND b`, joined by
/// `OR`; `0 = 1` for none.
fn version_ranges(migrations: &[Migration]) -> String {
    let mut versions: Vec<i64> = migrations.iter().map(|m| m.version).collect();
    versions.sort_unstable();
    versions.dedup();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for version in versions {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == version => *end = version,
            _ => runs.push((version, version)),
        }
    }
    if runs.is_empty() {
        return "0 = 1".to_owned();
    }
    runs.iter()
        .map(|(start, end)| format!("version BETWEEN {start} AND {end}"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The current version when `summary` proves that exactly `migrations` are
/// applied: versions are unique (the table's key), so a table holding as
/// many versions as the list, all of them in the list, holds the list.
/// `None` otherwise (something is missing, or a version this build does not
/// know is there): the caller reads the versions.
fn all_applied(summary: &AppliedSummary, migrations: &[Migration]) -> Option<i64> {
    let len = i64::try_from(migrations.len()).ok()?;
    let last = migrations.iter().map(|m| m.version).max()?;
    (summary.count == len && summary.listed == len).then_some(last)
}

/// The versions recorded in `_dol_migrations`.
fn applied_versions(exec: &mut impl SqlExecutor) -> Result<BTreeSet<i64>, MigrateError> {
    let rows = exec
        .execute("SELECT version FROM _dol_migrations", &[])
        .map_err(MigrateError::Bookkeeping)?;
    Ok(rows
        .iter()
        .filter_map(|row| row.first().and_then(SqlValue::as_i64))
        .collect())
}

/// Applies one migration in its own transaction. Returns `false` when another
/// instance applied it first.
fn apply_one(
    exec: &mut impl SqlExecutor,
    migration: &Migration,
    now_ms: i64,
) -> Result<bool, MigrateError> {
    let version = migration.version;
    let statements =
        split_statements(migration.sql).map_err(|message| MigrateError::Malformed {
            version,
            message: message.to_owned(),
        })?;
    if statements.is_empty() {
        return Err(MigrateError::Malformed {
            version,
            message: "no statements".to_owned(),
        });
    }
    let tx_err = |message| MigrateError::Transaction { version, message };
    exec.execute("BEGIN IMMEDIATE", &[]).map_err(tx_err)?;
    let result = run_in_transaction(exec, migration, &statements, now_ms);
    match result {
        Ok(applied) => {
            exec.execute("COMMIT", &[]).map_err(|message| {
                // A failed COMMIT may leave the transaction open; end it.
                let _ = exec.execute("ROLLBACK", &[]);
                tx_err(message)
            })?;
            Ok(applied)
        }
        Err(err) => {
            // The original error matters more than a failed rollback.
            let _ = exec.execute("ROLLBACK", &[]);
            Err(err)
        }
    }
}

/// The body of a migration's transaction: re-check, statements, bookkeeping.
fn run_in_transaction(
    exec: &mut impl SqlExecutor,
    migration: &Migration,
    statements: &[String],
    now_ms: i64,
) -> Result<bool, MigrateError> {
    let version = migration.version;
    let already = exec
        .execute(
            "SELECT 1 FROM _dol_migrations WHERE version = ?",
            &[SqlValue::Integer(version)],
        )
        .map_err(MigrateError::Bookkeeping)?;
    if !already.is_empty() {
        return Ok(false);
    }
    for (index, sql) in statements.iter().enumerate() {
        exec.execute(sql, &[])
            .map_err(|message| MigrateError::Statement {
                version,
                statement: index + 1,
                message,
            })?;
    }
    exec.execute(
        "INSERT INTO _dol_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        &[
            SqlValue::Integer(version),
            SqlValue::Text(migration.name.to_owned()),
            SqlValue::Integer(now_ms),
        ],
    )
    .map_err(MigrateError::Bookkeeping)?;
    Ok(true)
}

/// Splits SQL text into single statements at top-level `;`.
///
/// Understands `'…'` strings (with `''` escapes), `"…"`, `` `…` `` and `[…]`
/// identifiers, `--` line comments and `/* … */` block comments. Comments are
/// dropped, statements are trimmed and empty ones skipped. Not supported:
/// `CREATE TRIGGER … BEGIN …; END` bodies (their inner `;` would split).
pub fn split_statements(sql: &str) -> Result<Vec<String>, &'static str> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' | '[' => {
                let close = if c == '[' { ']' } else { c };
                current.push(c);
                loop {
                    let Some(d) = chars.next() else {
                        return Err("unterminated quote");
                    };
                    current.push(d);
                    if d == close {
                        // A doubled quote is an escaped quote, not the end.
                        if close != ']' && chars.peek() == Some(&close) {
                            chars.next();
                            current.push(close);
                            continue;
                        }
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
                current.push('\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = '\0';
                let mut closed = false;
                for d in chars.by_ref() {
                    if prev == '*' && d == '/' {
                        closed = true;
                        break;
                    }
                    prev = d;
                }
                if !closed {
                    return Err("unterminated block comment");
                }
                current.push(' ');
            }
            ';' => push_statement(&mut statements, &mut current),
            _ => current.push(c),
        }
    }
    push_statement(&mut statements, &mut current);
    Ok(statements)
}

/// Moves the trimmed `current` into `statements` unless it is empty.
fn push_statement(statements: &mut Vec<String>, current: &mut String) {
    let trimmed = current.trim();
    if !trimmed.is_empty() {
        statements.push(trimmed.to_owned());
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny in-memory stand-in for SQLite: it logs statements, keeps
    /// `_dol_migrations` rows, honours transactions for that table, and can be
    /// told to fail a statement containing a given text.
    #[derive(Default)]
    struct FakeDb {
        log: Vec<String>,
        /// Whether `_dol_migrations` exists (the book-keeping DDL creates it).
        has_table: bool,
        versions: Vec<i64>,
        snapshot: Option<Vec<i64>>,
        fail_on: Option<String>,
        /// Versions "another instance" commits right after our BEGIN.
        racer: Vec<i64>,
    }

    impl SqlExecutor for FakeDb {
        fn execute(
            &mut self,
            sql: &str,
            params: &[SqlValue],
        ) -> Result<Vec<Vec<SqlValue>>, String> {
            self.log.push(sql.to_owned());
            if self.fail_on.as_deref().is_some_and(|f| sql.contains(f)) {
                return Err(format!("boom: {sql}"));
            }
            let first_int = params.first().and_then(SqlValue::as_i64);
            match sql {
                "BEGIN IMMEDIATE" => {
                    self.versions.append(&mut self.racer);
                    self.snapshot = Some(self.versions.clone());
                }
                "COMMIT" => self.snapshot = None,
                "ROLLBACK" => {
                    if let Some(s) = self.snapshot.take() {
                        self.versions = s;
                    }
                }
                BOOKKEEPING_DDL => self.has_table = true,
                SUMMARY_OF_TWO => {
                    if !self.has_table {
                        return Err("no such table: _dol_migrations".to_owned());
                    }
                    let in_list = self.versions.iter().filter(|v| [1, 2].contains(*v)).count();
                    return Ok(vec![vec![
                        SqlValue::Integer(self.versions.len() as i64),
                        SqlValue::Integer(in_list as i64),
                    ]]);
                }
                "SELECT version FROM _dol_migrations" => {
                    if !self.has_table {
                        return Err("no such table: _dol_migrations".to_owned());
                    }
                    return Ok(self
                        .versions
                        .iter()
                        .map(|v| vec![SqlValue::Integer(*v)])
                        .collect());
                }
                s if s.starts_with("SELECT 1 FROM _dol_migrations") => {
                    let hit = first_int.is_some_and(|v| self.versions.contains(&v));
                    return Ok(if hit {
                        vec![vec![SqlValue::Integer(1)]]
                    } else {
                        vec![]
                    });
                }
                s if s.starts_with("INSERT INTO _dol_migrations") => {
                    self.versions.extend(first_int);
                }
                _ => {}
            }
            Ok(Vec::new())
        }
    }

    /// The one-row check [`apply_list`] runs first for [`TWO`].
    const SUMMARY_OF_TWO: &str = "SELECT count(*), sum(CASE WHEN version BETWEEN 1 AND 2 THEN 1 ELSE 0 END) FROM _dol_migrations";

    const TWO: &[Migration] = &[
        Migration {
            version: 1,
            name: "one",
            sql: "CREATE TABLE a (x TEXT);",
        },
        Migration {
            version: 2,
            name: "two",
            sql: "CREATE TABLE b (y);\nCREATE INDEX bi ON b (y);",
        },
    ];

    #[test]
    fn embedded_migrations_are_ordered_and_split() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert!(MIGRATIONS.iter().all(|m| m.version > 0));
        for m in MIGRATIONS {
            let statements = split_statements(m.sql).expect("well-formed");
            assert!(!statements.is_empty(), "migration {} is empty", m.version);
        }
        let init = split_statements(MIGRATIONS[0].sql).expect("well-formed");
        assert_eq!(init.len(), 3);
        assert!(init[0].starts_with("CREATE TABLE scan_runs"));
        assert!(init[0].contains("CHECK (outcome IN ('ok', 'error'))"));
    }

    #[test]
    fn fresh_database_gets_everything_in_order() {
        let mut db = FakeDb::default();
        let report = apply_list(&mut db, TWO, 42).expect("applies");
        assert_eq!(
            report,
            MigrationReport {
                applied: vec![1, 2],
                current_version: 2
            }
        );
        assert_eq!(db.versions, vec![1, 2]);
        let expected = [
            SUMMARY_OF_TWO,
            BOOKKEEPING_DDL,
            "SELECT version FROM _dol_migrations",
            "BEGIN IMMEDIATE",
            "SELECT 1 FROM _dol_migrations WHERE version = ?",
            "CREATE TABLE a (x TEXT)",
            "INSERT INTO _dol_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            "COMMIT",
            "BEGIN IMMEDIATE",
            "SELECT 1 FROM _dol_migrations WHERE version = ?",
            "CREATE TABLE b (y)",
            "CREATE INDEX bi ON b (y)",
            "INSERT INTO _dol_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            "COMMIT",
        ];
        assert_eq!(db.log, expected);
    }

    #[test]
    fn second_run_is_a_no_op() {
        let mut db = FakeDb::default();
        apply_list(&mut db, TWO, 1).expect("first");
        db.log.clear();
        let report = apply_list(&mut db, TWO, 2).expect("second");
        assert_eq!(
            report,
            MigrationReport {
                applied: vec![],
                current_version: 2
            }
        );
        // A current database costs one read of one row, no DDL.
        assert_eq!(db.log, [SUMMARY_OF_TWO]);
    }

    #[test]
    fn the_one_row_check_decides_only_what_it_can_prove() {
        let summary = |count, listed| AppliedSummary { count, listed };
        // Exactly the list: current.
        assert_eq!(all_applied(&summary(2, 2), TWO), Some(2));
        // Missing one, an empty table, a version the list does not know
        // (a newer DOL wrote it): read the versions.
        assert_eq!(all_applied(&summary(1, 1), TWO), None);
        assert_eq!(all_applied(&summary(0, 0), TWO), None);
        assert_eq!(all_applied(&summary(3, 2), TWO), None);
        assert_eq!(all_applied(&summary(2, 1), TWO), None);
        assert_eq!(all_applied(&summary(0, 0), &[]), None);
    }

    #[test]
    fn versions_become_ranges_of_consecutive_runs() {
        let list = |versions: &[i64]| -> Vec<Migration> {
            versions
                .iter()
                .map(|&version| Migration {
                    version,
                    name: "m",
                    sql: "SELECT 1;",
                })
                .collect()
        };
        assert_eq!(version_ranges(&list(&[])), "0 = 1");
        assert_eq!(version_ranges(&list(&[4])), "version BETWEEN 4 AND 4");
        assert_eq!(
            version_ranges(&list(&[1, 2, 3, 5, 6, 9])),
            "version BETWEEN 1 AND 3 OR version BETWEEN 5 AND 6 OR version BETWEEN 9 AND 9"
        );
        // The embedded list has one gap (14 was never released).
        assert!(
            version_ranges(MIGRATIONS)
                .starts_with("version BETWEEN 1 AND 13 OR version BETWEEN 15 AND ")
        );
    }

    #[test]
    fn the_one_row_check_runs_on_the_real_database() {
        let mut db = crate::test_db::db();
        let report = apply(&mut db, 1).expect("current");
        assert!(report.applied.is_empty());
        let last = MIGRATIONS.iter().map(|m| m.version).max();
        assert_eq!(Some(report.current_version), last);
        let summary = applied_summary(&mut db, MIGRATIONS).expect("reads");
        assert_eq!(all_applied(&summary, MIGRATIONS), last);
        // One version gone: not current, and the next apply puts it back.
        let missing = MIGRATIONS[3].version;
        db.execute(
            "DELETE FROM _dol_migrations WHERE version = ?",
            &[SqlValue::Integer(missing)],
        )
        .expect("deletes");
        let summary = applied_summary(&mut db, MIGRATIONS).expect("reads");
        assert_eq!(all_applied(&summary, MIGRATIONS), None);
    }

    #[test]
    fn a_database_with_a_version_this_build_does_not_know_reads_them_all() {
        let mut db = FakeDb {
            has_table: true,
            versions: vec![1, 2, 9],
            ..FakeDb::default()
        };
        let report = apply_list(&mut db, TWO, 1).expect("reads");
        assert_eq!(report.applied, Vec::<i64>::new());
        assert_eq!(report.current_version, 9);
        assert_eq!(
            db.log,
            [SUMMARY_OF_TWO, "SELECT version FROM _dol_migrations"]
        );
    }

    #[test]
    fn only_missing_versions_run() {
        let mut db = FakeDb {
            versions: vec![1],
            ..FakeDb::default()
        };
        let report = apply_list(&mut db, TWO, 1).expect("applies");
        assert_eq!(report.applied, vec![2]);
        assert!(!db.log.iter().any(|s| s.contains("CREATE TABLE a")));
    }

    #[test]
    fn racing_instance_wins_and_we_skip_inside_the_transaction() {
        let mut db = FakeDb {
            racer: vec![1],
            ..FakeDb::default()
        };
        let report = apply_list(&mut db, &TWO[..1], 1).expect("applies");
        assert_eq!(
            report,
            MigrationReport {
                applied: vec![],
                current_version: 1
            }
        );
        assert!(!db.log.iter().any(|s| s.contains("CREATE TABLE a")));
        assert_eq!(db.versions, vec![1]);
    }

    /// Replicas starting together on one fresh database (separate
    /// connections, on SQLite or PostgreSQL): every version is applied once,
    /// and no replica fails.
    #[test]
    fn replicas_starting_together_apply_each_version_once() {
        const REPLICAS: usize = 4;
        let open = crate::test_db::shared("migrate-race");
        let barrier = std::sync::Barrier::new(REPLICAS);
        let applied: Vec<Vec<i64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..REPLICAS)
                .map(|_| {
                    // Opened here, not in the thread: a connection that
                    // fails to open fails the test instead of leaving the
                    // others waiting at the barrier for ever.
                    let (mut db, barrier) = (open(), &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        apply(&mut db, 1).unwrap().applied
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<i64> = applied.into_iter().flatten().collect();
        all.sort_unstable();
        let expected: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(all, expected, "each version applied by exactly one replica");
        let mut db = open();
        assert_eq!(
            crate::test_db::count(&mut db, "_dol_migrations"),
            i64::try_from(MIGRATIONS.len()).unwrap()
        );
    }

    #[test]
    fn failing_statement_rolls_back_and_stops() {
        let mut db = FakeDb {
            fail_on: Some("CREATE INDEX".into()),
            ..FakeDb::default()
        };
        let err = apply_list(&mut db, TWO, 1).expect_err("fails");
        assert!(matches!(
            err,
            MigrateError::Statement {
                version: 2,
                statement: 2,
                ..
            }
        ));
        assert_eq!(db.log.last().map(String::as_str), Some("ROLLBACK"));
        assert_eq!(db.versions, vec![1]);
    }

    #[test]
    fn busy_begin_is_a_transaction_error() {
        let mut db = FakeDb {
            fail_on: Some("BEGIN".into()),
            ..FakeDb::default()
        };
        let err = apply_list(&mut db, TWO, 1).expect_err("fails");
        assert!(matches!(err, MigrateError::Transaction { version: 1, .. }));
        assert!(db.versions.is_empty());
    }

    #[test]
    fn failing_commit_rolls_back() {
        let mut db = FakeDb {
            fail_on: Some("COMMIT".into()),
            ..FakeDb::default()
        };
        let err = apply_list(&mut db, TWO, 1).expect_err("fails");
        assert!(matches!(err, MigrateError::Transaction { version: 1, .. }));
        assert_eq!(db.log.last().map(String::as_str), Some("ROLLBACK"));
        assert!(db.versions.is_empty());
    }

    #[test]
    fn empty_migration_is_malformed() {
        let empty = [Migration {
            version: 7,
            name: "e",
            sql: "-- nothing\n ; ;",
        }];
        let err = apply_list(&mut FakeDb::default(), &empty, 1).expect_err("fails");
        assert!(matches!(err, MigrateError::Malformed { version: 7, .. }));
    }

    #[test]
    fn splitter_respects_quotes_and_comments() {
        let sql = "INSERT INTO t VALUES ('a;b', 'it''s; fine'); -- c; d\n\
                   /* x; y */ SELECT \"we;ird\", [sq;], `bt;` FROM t;\n\
                   SELECT '--not a comment', '/*nor this*/';  ";
        let got = split_statements(sql).expect("well-formed");
        assert_eq!(
            got,
            [
                "INSERT INTO t VALUES ('a;b', 'it''s; fine')",
                "SELECT \"we;ird\", [sq;], `bt;` FROM t",
                "SELECT '--not a comment', '/*nor this*/'",
            ]
        );
    }

    #[test]
    fn splitter_handles_missing_final_semicolon_and_blank_input() {
        assert_eq!(split_statements("SELECT 1").expect("ok"), ["SELECT 1"]);
        assert!(
            split_statements("  \n-- only a comment")
                .expect("ok")
                .is_empty()
        );
    }

    #[test]
    fn splitter_rejects_unterminated_input() {
        assert_eq!(split_statements("SELECT 'oops"), Err("unterminated quote"));
        assert_eq!(
            split_statements("SELECT 1 /* x"),
            Err("unterminated block comment")
        );
    }
}
