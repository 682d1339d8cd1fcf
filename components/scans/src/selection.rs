//! The `selection` scan (every minute, and `POST /admin/scans/selection`):
//! learns the auto entry tier's quality table from the last day's
//! `requests` rows and stores it in key-value under one key
//! (`dol_core::optimize::auto_entry::relearn`), where the gateway reads it.

use dol_core::optimize::auto_entry;
use dol_spin_platform::Db;
use serde_json::{Value, json};

use dol_spin_platform::{SpinKv, SpinSql};

/// Runs the scan at `now_ms`; returns its summary.
pub fn run(db: &Db, now_ms: i64) -> anyhow::Result<Value> {
    let mut kv = SpinKv::open_default()?;
    let learned = auto_entry::relearn(&mut SpinSql(db), &mut kv, now_ms)
        .map_err(|e| anyhow::anyhow!("learning the selection table: {e}"))?;
    Ok(json!({
        "rows": learned.rows,
        "autoEntered": learned.auto_entered,
        "cells": learned.table.cells.len(),
    }))
}
