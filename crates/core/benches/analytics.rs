//! The 30-day (and 7-day) `/api/metrics` overview over a SQLite file holding
//! 60 days of gateway telemetry, about 1.04 million requests per 30 days
//! (24 requests a minute in 8 series: 2 providers × 2 outcomes × 2
//! variants), read from the hour rollups (`read_overview`, migration 9)
//! and, in the same run, from minute rows alone (`read_overview_minutes`,
//! the baseline). The rollups are built by the real fold
//! (`scan_store::fold_usage`), timed once.
//!
//! `cargo bench -p dol-core --bench analytics`; `DOL_BENCH_DAYS=365` holds a
//! year of telemetry instead of 60 days (the same windows are read).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dol_core::gateway::telemetry::{latency_bucket, latency_column};
use dol_core::observe::scan_store::fold_usage;
use dol_core::observe::system::{read_overview, read_overview_minutes};
use dol_core::observe::usage::{USAGE_BUCKETS, Window};
use dol_core::storage::{SqlExecutor, SqlValue};

/// [`SqlExecutor`] over a rusqlite file connection with a statement cache,
/// like the host's pooled connections.
struct Db(rusqlite::Connection);

fn to_sql(v: &SqlValue) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        SqlValue::Null => V::Null,
        SqlValue::Integer(i) => V::Integer(*i),
        SqlValue::Real(r) => V::Real(*r),
        SqlValue::Text(t) => V::Text(t.clone()),
        SqlValue::Blob(b) => V::Blob(b.clone()),
    }
}

impl SqlExecutor for Db {
    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, String> {
        use rusqlite::types::ValueRef as V;
        let mut stmt = self.0.prepare_cached(sql).map_err(|e| e.to_string())?;
        let columns = stmt.column_count();
        let params: Vec<rusqlite::types::Value> = params.iter().map(to_sql).collect();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(|e| e.to_string())? {
                    V::Null => SqlValue::Null,
                    V::Integer(i) => SqlValue::Integer(i),
                    V::Real(r) => SqlValue::Real(r),
                    V::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                    V::Blob(b) => SqlValue::Blob(b.to_vec()),
                });
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// 2027-01-15 08:00:05 UTC.
const NOW_MS: i64 = 1_800_000_005_000;
/// Days of telemetry held: `DOL_BENCH_DAYS`, default 60.
fn days() -> i64 {
    std::env::var("DOL_BENCH_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .filter(|d| (31..=730).contains(d))
        .unwrap_or(60)
}

/// Builds the file: every minute of the last [`days`] days gets the
/// `usage_minute` rows `gateway::store::record` would leave for 24
/// requests (3 per series, latencies spread over the histogram).
fn build() -> (Db, u64) {
    let path = std::env::temp_dir().join("dol-analytics-bench.db");
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
        .unwrap();
    let mut db = Db(conn);
    dol_core::migrate::apply(&mut db, NOW_MS).unwrap();
    let buckets: Vec<&str> = (0..USAGE_BUCKETS).map(latency_column).collect();
    let insert = format!(
        "INSERT INTO usage_minute (minute, tier, provider, model, outcome, variant, requests, \
         errors, fallbacks, cache_hits, latency_sum_ms, quality_sum, quality_n, prompt_tokens, \
         completion_tokens, cost_micros, cost_unknown, {}) VALUES ({})",
        buckets.join(", "),
        vec!["?"; 17 + USAGE_BUCKETS].join(", ")
    );
    let last = NOW_MS / 60_000 * 60;
    let mut requests = 0_u64;
    let tx = db.0.transaction().unwrap();
    {
        let mut stmt = tx.prepare(&insert).unwrap();
        for m in 0..days() * 1_440 {
            let minute = last - m * 60;
            for s in 0..8_i64 {
                let provider = ["openai", "anthropic"][(s & 1) as usize];
                let outcome = ["success", "offline"][(s >> 1 & 1) as usize];
                let variant = ["on", "off"][(s >> 2 & 1) as usize];
                let n = 3_i64;
                let mut hist = vec![0_i64; USAGE_BUCKETS];
                for k in 0..n {
                    // 2 ms to ~40 s, varying by minute and series.
                    let ms = 2_u64 << ((m + s * 3 + k * 5) % 15);
                    hist[latency_bucket(ms)] += 1;
                }
                let errors = if outcome == "offline" { n } else { 0 };
                let mut params: Vec<rusqlite::types::Value> = vec![
                    minute.into(),
                    "enhanced".to_owned().into(),
                    provider.to_owned().into(),
                    "m".to_owned().into(),
                    outcome.to_owned().into(),
                    variant.to_owned().into(),
                    n.into(),
                    errors.into(),
                    (m % 2).into(),
                    0_i64.into(),
                    (n * 300).into(),
                    (n as f64 * 7.5).into(),
                    n.into(),
                    (n * 100).into(),
                    (n * 200).into(),
                    (n * 150).into(),
                    0_i64.into(),
                ];
                params.extend(hist.into_iter().map(rusqlite::types::Value::from));
                stmt.execute(rusqlite::params_from_iter(params)).unwrap();
                requests += n as u64;
            }
        }
    }
    tx.commit().unwrap();
    (db, requests)
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn bench(c: &mut Criterion) {
    let ((mut db, requests), built) = time(build);
    let (fold, folded) = time(|| fold_usage(&mut db, NOW_MS).unwrap());
    println!(
        "analytics: {requests} requests over {} days ({} per 30 days) in {} minute rows, \
         built in {built:.1?}; first fold into {} hour rows took {folded:.1?}",
        days(),
        requests * 30 / days().unsigned_abs(),
        days() * 1_440 * 8,
        fold.hour_rows
    );
    let now_s = NOW_MS / 1_000;
    for window in [Window::Month, Window::Week] {
        let (rolled, t_rolled) = time(|| read_overview(&mut db, window, now_s).unwrap());
        let (minutes, t_minutes) = time(|| read_overview_minutes(&mut db, window, now_s).unwrap());
        assert_eq!(rolled, minutes, "the rollups must give the minute figures");
        println!(
            "analytics: {window:?} overview ({} requests): rollups {t_rolled:.1?}, \
             minute rows only {t_minutes:.1?} ({:.0}× faster), same figures",
            rolled.totals.requests + rolled.previous.requests,
            t_minutes.as_secs_f64() / t_rolled.as_secs_f64()
        );
    }
    let mut group = c.benchmark_group("overview");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, window) in [("30d", Window::Month), ("7d", Window::Week)] {
        group.bench_function(format!("{name}/rollups"), |b| {
            b.iter(|| read_overview(&mut db, black_box(window), now_s).unwrap())
        });
        group.bench_function(format!("{name}/minutes-only"), |b| {
            b.iter(|| read_overview_minutes(&mut db, black_box(window), now_s).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
