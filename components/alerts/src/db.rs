//! The app's SQLite database (migrated once per instance by
//! `dol_spin_platform::open_db`), handed to `dol_core::observe::store`
//! functions.

use dol_core::observe::store::StoreError;

use crate::error::Rejection;
use dol_spin_platform::{self as platform, SpinSql};

/// Runs `f` against the default database. Called only after a request is
/// verified, so a refused request never touches storage.
pub fn with<T>(f: impl FnOnce(&mut SpinSql<'_>) -> Result<T, StoreError>) -> Result<T, Rejection> {
    let conn = platform::open_db().map_err(|e| Rejection::Internal(format!("{e:#}")))?;
    f(&mut SpinSql(&conn)).map_err(Rejection::from)
}
