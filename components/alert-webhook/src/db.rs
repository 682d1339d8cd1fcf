//! The app's SQLite database with the migrations applied (once per
//! instance), handed to `dol_core::observe::store` functions.

use std::cell::Cell;

use dol_core::migrate;
use dol_core::observe::store::StoreError;
use spin_sdk::sqlite::Connection;

use crate::error::Rejection;
use dol_spin_platform::{SpinSql, now_ms};

thread_local! {
    static MIGRATED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` against the default database. Called only after a request is
/// verified, so a refused request never touches storage.
pub fn with<T>(f: impl FnOnce(&mut SpinSql<'_>) -> Result<T, StoreError>) -> Result<T, Rejection> {
    let conn = Connection::open_default()
        .map_err(|e| Rejection::Internal(format!("opening sqlite: {e}")))?;
    let mut sql = SpinSql(&conn);
    if !MIGRATED.get() {
        migrate::apply(&mut sql, now_ms())
            .map_err(|e| Rejection::Internal(format!("migrating: {e}")))?;
        MIGRATED.set(true);
    }
    f(&mut sql).map_err(Rejection::from)
}
