//! The `video-jobs` scan (every minute): `dol_core::video::service::advance_due`
//! over the wall clock — job times are stamped by the videos component's
//! wall clock, so "due" and "late" are judged on the same clock whatever
//! tick triggered the scan.

use dol_core::video::platforms::VideoSettings;
use dol_core::video::service;
use dol_spin_platform::Db;
use serde_json::Value;

use dol_spin_platform::net::BlockingNet;
use dol_spin_platform::{self as platform, SpinSql};

/// Runs the scan; returns its summary.
pub fn run(db: &Db) -> anyhow::Result<Value> {
    let settings = VideoSettings::from_variables(platform::var)?;
    let now = u64::try_from(platform::now_ms()).unwrap_or(0);
    let summary = service::advance_due(&mut SpinSql(db), &mut BlockingNet, &settings, now)
        .map_err(|e| anyhow::anyhow!("{}: {}", e.message, e.internal.unwrap_or_default()))?;
    for e in &summary.errors {
        eprintln!("scans: video-jobs: {e}");
    }
    Ok(serde_json::to_value(&summary)?)
}
