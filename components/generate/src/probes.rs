//! The scans' provider health probes (key-value `dol:scans:probes`, written
//! every 5 minutes) folded into the routing state before a request is
//! planned; the rules are `dol_core::gateway::probes`.

use dol_core::gateway::circuit::CircuitConfig;
use dol_core::gateway::engine::RoutingState;
use dol_core::gateway::probes::apply_probes;
use dol_core::gateway::routing::CatalogEntry;
use dol_core::observe::scans::{PROBES_KEY, ProbeResult};
use spin_sdk::key_value::Store;

/// Applies the probes not yet applied to `routing` (one small key-value
/// read; absent or unreadable probes change nothing). The caller stores the
/// routing state as usual after the request.
pub fn apply(
    kv: &Store,
    routing: &mut RoutingState,
    catalog: &[CatalogEntry],
    circuit: CircuitConfig,
) {
    let probes: Vec<ProbeResult> = match kv.get_json(PROBES_KEY) {
        Ok(Some(p)) => p,
        Ok(None) => return,
        Err(err) => {
            eprintln!("generate: reading provider probes failed: {err}");
            return;
        }
    };
    let keys: Vec<String> = catalog.iter().map(CatalogEntry::key).collect();
    let fx = apply_probes(routing, &probes, &keys, circuit);
    if !fx.opened.is_empty() {
        eprintln!(
            "generate: failed health probe opened breakers: {}",
            fx.opened.join(", ")
        );
    }
}
