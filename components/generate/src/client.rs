//! The pipeline's Spin adapters: the HTTP client of a request (a whole JSON
//! answer or an SSE stream), the wall clock and the in-process flag evaluator.

use dol_core::gateway::pipeline::{Client, Clock, FlagEvaluator};
use dol_core::gateway::tiers::EntryTier;
use serde_json::Value;

use crate::net::{self, SseClient};
use dol_spin_platform as platform;

impl Client for SseClient {
    async fn complete(&mut self, status: u16, headers: Vec<(String, String)>, body: Value) {
        let Some(out) = self.take_unstarted() else {
            return;
        };
        let headers: Vec<(&str, String)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        net::respond(out, platform::json_with(status, &body, &headers)).await;
    }
}

/// The host's wall clock.
pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(platform::now_ms()).unwrap_or(0)
    }
}

/// Flags evaluated through the composed flag-evaluate component.
pub struct InProcessFlags;

impl FlagEvaluator for InProcessFlags {
    fn entry_tier(
        &mut self,
        flag: &str,
        targeting_key: &str,
        key_id: &str,
        model: &str,
    ) -> Option<(EntryTier, String)> {
        crate::flags::entry_tier(flag, targeting_key, key_id, model)
    }
}
