//! The `discovery` scan (every 6 hours): each enabled provider's model list
//! (fetched here) handed to `dol_core::observe::scan_store::discover`,
//! which diffs it against the `models` catalog, records new models with
//! source `discovered`, tier `basic` and no price, and queues a message
//! listing new, removed and changed models; the `ModelsWithoutPrice` rule
//! alerts on the unpriced ones at the next `alerts` scan. Then the video
//! platforms' model lists, through `dol_core::video::discovery::discover`
//! (new video models recorded unpriced, their own message).

use dol_core::gateway::catalog::enabled_providers;
use dol_core::gateway::providers::{models_request, parse_models};
use dol_core::observe::scan_store::{self, Listing};
use dol_spin_platform::Db;
use serde_json::Value;

use crate::net;
use dol_core::video::discovery::discover;
use dol_core::video::platforms::VideoSettings;
use dol_spin_platform::SpinSql;
use dol_spin_platform::net::BlockingNet;

/// Runs the scan at `now_ms`; returns its summary.
pub fn run(db: &Db, now_ms: i64) -> anyhow::Result<Value> {
    // Seeds an empty catalog first (as generate does on its first request),
    // so discovery never reports the seed as new models.
    dol_core::gateway::store::seed_catalog(&mut SpinSql(db), now_ms)?;
    let listings: Vec<Listing> = enabled_providers(&crate::config::providers())
        .iter()
        .map(|cfg| {
            let listed = net::send(&models_request(cfg)).and_then(|a| {
                if (200..300).contains(&a.status) {
                    parse_models(cfg.kind, &a.body).map_err(|f| f.to_string())
                } else {
                    Err(format!("HTTP {}", a.status))
                }
            });
            if let Err(e) = &listed {
                eprintln!("scans: discovery for {} failed: {e}", cfg.name);
            }
            (cfg.name.clone(), listed)
        })
        .collect();
    let found = scan_store::discover(&mut SpinSql(db), &listings, now_ms)?;
    let settings = VideoSettings::from_variables(dol_spin_platform::var)?;
    let video = discover(&mut SpinSql(db), &mut BlockingNet, &settings, now_ms)?;
    for f in &video.failures {
        eprintln!("scans: discovery for {} failed: {}", f.provider, f.error);
    }
    let mut summary = serde_json::to_value(found)?;
    summary["video"] = serde_json::to_value(video)?;
    Ok(summary)
}
