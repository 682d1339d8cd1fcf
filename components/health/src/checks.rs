//! Opening storage and the round trips of `dol_core::observe::system`
//! (the same ones the `alerts` scan makes, so both score alike). Failures
//! are logged here; responses show only "unavailable".

use dol_core::observe::system::{self, HEALTH_PROBE_KEY, StorageCheck};
use dol_spin_platform::Db;

use dol_spin_platform::{SpinKv, SpinSql, now_ms, open_db};

/// The stores a request opened (or why not) and their round trips.
pub struct Storage {
    /// The default key-value store.
    pub kv: Result<SpinKv, String>,
    /// The app's database (SQLite or PostgreSQL), migrated.
    pub db: Result<std::rc::Rc<Db>, String>,
    /// The `key-value` round trip.
    pub key_value: StorageCheck,
    /// The database round trip (named `sqlite` or `postgres`).
    pub sqlite: StorageCheck,
}

fn logged(check: StorageCheck) -> StorageCheck {
    if let Some(err) = &check.error {
        eprintln!("health: {} check failed: {err}", check.result.name);
    }
    check
}

impl Storage {
    /// Opens the default key-value store and database (migrations on
    /// first use) and makes both round trips.
    pub fn check() -> Self {
        let mut kv = SpinKv::open_default().map_err(|e| format!("open: {e:#}"));
        let key_value = logged(system::key_value_check(
            kv.as_mut().map_err(|e| e.clone()),
            HEALTH_PROBE_KEY,
            &mut now_ms,
        ));
        let db = open_db().map_err(|e| format!("open: {e:#}"));
        let mut sql = db.as_ref().map(|db| SpinSql(db)).map_err(Clone::clone);
        let sqlite = logged(system::database_check(
            Db::backend(),
            sql.as_mut().map_err(|e| e.clone()),
            &mut now_ms,
        ));
        Self {
            kv,
            db,
            key_value,
            sqlite,
        }
    }
}

/// `_dol_migrations` holds every version of `dol_core::migrate::MIGRATIONS`.
/// Opens the database without migrating, so a failed migration shows as
/// the versions missing.
pub fn migrations() -> dol_core::health::CheckResult {
    let db = dol_spin_platform::connection().map_err(|e| format!("open: {e:#}"));
    let mut sql = db.as_ref().map(|db| SpinSql(db)).map_err(Clone::clone);
    logged(system::migrations_check(
        sql.as_mut().map_err(|e| e.clone()),
        &mut now_ms,
    ))
    .result
}

/// The `credentials` check: the BYOK master key (secret variables) parses
/// and decrypts the stored credentials; no credentials need no key.
pub fn credentials() -> dol_core::health::CheckResult {
    let started = now_ms();
    let ring = dol_spin_platform::key_ring();
    let latency = |now: i64| u64::try_from(now - started).unwrap_or(0);
    let result = match open_db() {
        Ok(db) => dol_core::orgs::store::credentials_check(
            &mut SpinSql(&db),
            ring.as_ref(),
            latency(now_ms()),
        ),
        Err(e) => {
            eprintln!("health: credentials check: open: {e:#}");
            dol_core::health::CheckResult {
                ok: false,
                error: Some("unavailable".to_owned()),
                ..dol_core::health::CheckResult::pass("credentials", latency(now_ms()))
            }
        }
    };
    if let Some(err) = &result.error {
        eprintln!("health: credentials check failed: {err}");
    }
    result
}
