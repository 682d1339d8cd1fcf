//! The `probes` scan (every 5 minutes): one model-list call per enabled
//! provider, recorded up/down with latency under [`PROBES_KEY`] in
//! key-value (read by the `alerts` scan and the gateway's routing), and
//! one cheap call per configured video platform
//! (`dol_core::video::discovery::probe_all`) under [`VIDEO_PROBES_KEY`]
//! (read by the video health). A failed probe is logged and recorded,
//! never silent.

use dol_core::gateway::catalog::enabled_providers;
use dol_core::gateway::providers::{ProviderConfig, models_request, parse_models};
use dol_core::observe::scans::{PROBES_KEY, ProbeResult};
use dol_core::video::discovery::{VIDEO_PROBES_KEY, probe_all};
use dol_core::video::platforms::VideoSettings;
use dol_spin_platform::net::BlockingNet;
use serde_json::{Value, json};
use spin_sdk::key_value::Store;

use crate::net;
use dol_spin_platform::now_ms;

/// Probes one provider.
pub fn probe(cfg: &ProviderConfig, at_ms: i64) -> ProbeResult {
    let started = now_ms();
    let answer = net::send(&models_request(cfg));
    let latency_ms = u64::try_from(now_ms().saturating_sub(started)).unwrap_or(0);
    let (up, status, error) = match answer {
        Ok(a) if (200..300).contains(&a.status) => match parse_models(cfg.kind, &a.body) {
            Ok(_) => (true, Some(a.status), None),
            Err(f) => (false, Some(a.status), Some(f.to_string())),
        },
        Ok(a) => (false, Some(a.status), Some(format!("HTTP {}", a.status))),
        Err(e) => (false, None, Some(e)),
    };
    if let Some(e) = &error {
        eprintln!("scans: probe of {} failed: {e}", cfg.name);
    }
    ProbeResult {
        provider: cfg.name.clone(),
        up,
        status,
        latency_ms,
        error,
        at_ms,
    }
}

/// Runs the scan at `now_ms`; returns its summary.
pub fn run(now_ms_: i64) -> anyhow::Result<Value> {
    let results: Vec<ProbeResult> = enabled_providers(&crate::config::providers())
        .iter()
        .map(|cfg| probe(cfg, now_ms_))
        .collect();
    let settings = VideoSettings::from_variables(dol_spin_platform::var)?;
    let video = probe_all(&mut BlockingNet, &settings, now_ms_, &mut now_ms);
    for p in video.iter().filter(|p| !p.up) {
        eprintln!(
            "scans: probe of video platform {} failed: {}",
            p.provider,
            p.error.as_deref().unwrap_or("")
        );
    }
    let store = Store::open_default()?;
    store.set_json(PROBES_KEY, &results)?;
    store.set_json(VIDEO_PROBES_KEY, &video)?;
    Ok(json!({ "probes": results, "video": video }))
}
