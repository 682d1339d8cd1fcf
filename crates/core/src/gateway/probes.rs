//! Provider health probes feeding routing: the scans component's `probes`
//! scan (every 5 minutes) stores one [`ProbeResult`] per enabled provider
//! (a model-list call); the gateway folds new results into its
//! [`RoutingState`] before planning a request, so a provider that failed
//! its probe is skipped without a request paying for the discovery.
//!
//! Rules, per provider, for a probe newer than the last one applied:
//!
//! * **Failed probe** (provider unreachable, non-2xx, or an unreadable model
//!   list): every breaker of the provider's catalog entries opens, as of the
//!   probe's time. The usual cool-down then applies: once it has passed, the
//!   breaker reads half-open and one real request may test the provider.
//! * **Healthy probe**: an open breaker of the provider becomes half-open
//!   at once (one request may go through and close it), instead of waiting
//!   for its cool-down; a closed or half-open breaker is left alone. A
//!   model list answering does not prove chat completions work, so the
//!   probe never closes a breaker by itself.
//!
//! Each probe acts once ([`RoutingState::probes_applied`]): a breaker that
//! recovered through real traffic is not re-opened by the same old failed
//! probe on the next request.

use super::circuit::{CircuitConfig, CircuitState};
use super::engine::RoutingState;
use crate::observe::scans::ProbeResult;

/// What [`apply_probes`] changed: `provider/model` keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeEffects {
    /// Breakers opened by a failed probe.
    pub opened: Vec<String>,
    /// Open breakers made half-open by a healthy probe.
    pub half_opened: Vec<String>,
}

impl ProbeEffects {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.opened.is_empty() && self.half_opened.is_empty()
    }
}

/// Folds the probes newer than those already applied into `state`.
/// `catalog_keys` are the `provider/model` keys of the routable catalog
/// (a failed probe opens a breaker even for a model that has no routing
/// state yet); new entries get `circuit` as their tuning. Returns what
/// changed; the caller stores the state.
pub fn apply_probes(
    state: &mut RoutingState,
    probes: &[ProbeResult],
    catalog_keys: &[String],
    circuit: CircuitConfig,
) -> ProbeEffects {
    let mut fx = ProbeEffects::default();
    for p in probes {
        if state
            .probes_applied
            .get(&p.provider)
            .is_some_and(|at| *at >= p.at_ms)
        {
            continue;
        }
        state.probes_applied.insert(p.provider.clone(), p.at_ms);
        let prefix = format!("{}/", p.provider);
        let at_ms = u64::try_from(p.at_ms).unwrap_or(0);
        if p.up {
            for (key, e) in &mut state.entries {
                if key.starts_with(&prefix) && matches!(e.breaker.state, CircuitState::Open { .. })
                {
                    e.breaker.state = CircuitState::HalfOpen {
                        probe_in_flight: false,
                    };
                    fx.half_opened.push(key.clone());
                }
            }
        } else {
            for key in catalog_keys.iter().filter(|k| k.starts_with(&prefix)) {
                state.entries.entry(key.clone()).or_default().breaker.config = circuit;
            }
            for (key, e) in &mut state.entries {
                if key.starts_with(&prefix) {
                    e.breaker.state = CircuitState::Open {
                        opened_at_ms: at_ms,
                    };
                    fx.opened.push(key.clone());
                }
            }
        }
    }
    fx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::engine::EntryState;

    const CFG: CircuitConfig = CircuitConfig {
        failure_threshold: 5,
        cooldown_ms: 30_000,
    };

    fn probe(provider: &str, up: bool, at_ms: i64) -> ProbeResult {
        ProbeResult {
            provider: provider.into(),
            up,
            status: Some(if up { 200 } else { 503 }),
            latency_ms: 3,
            error: (!up).then(|| "HTTP 503".to_owned()),
            at_ms,
        }
    }

    fn keys() -> Vec<String> {
        ["openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude"]
            .map(str::to_owned)
            .to_vec()
    }

    #[test]
    fn a_failed_probe_opens_every_breaker_of_the_provider() {
        let mut s = RoutingState::default();
        let fx = apply_probes(&mut s, &[probe("openai", false, 1_000)], &keys(), CFG);
        assert_eq!(fx.opened, vec!["openai/gpt-4o", "openai/gpt-4o-mini"]);
        let b = s.entries["openai/gpt-4o"].breaker;
        assert_eq!(
            b.state,
            CircuitState::Open {
                opened_at_ms: 1_000
            }
        );
        assert_eq!(b.config, CFG);
        assert!(!b.allows(1_500));
        // Other providers untouched; the cool-down still applies.
        assert!(!s.entries.contains_key("anthropic/claude"));
        assert!(b.allows(31_000));
    }

    #[test]
    fn each_probe_acts_once() {
        let mut s = RoutingState::default();
        let failed = [probe("openai", false, 1_000)];
        apply_probes(&mut s, &failed, &keys(), CFG);
        // Recovered through real traffic meanwhile.
        for e in s.entries.values_mut() {
            e.breaker.record_success();
        }
        let fx = apply_probes(&mut s, &failed, &keys(), CFG);
        assert!(fx.is_empty());
        assert!(s.entries["openai/gpt-4o"].breaker.allows(1_001));
        // An older probe is ignored too; a newer failure acts.
        assert!(apply_probes(&mut s, &[probe("openai", false, 500)], &keys(), CFG).is_empty());
        let fx = apply_probes(&mut s, &[probe("openai", false, 2_000)], &keys(), CFG);
        assert_eq!(fx.opened.len(), 2);
    }

    #[test]
    fn a_healthy_probe_half_opens_open_breakers_only() {
        let mut s = RoutingState::default();
        let mut open = EntryState::default();
        open.breaker.state = CircuitState::Open { opened_at_ms: 900 };
        let mut counting = EntryState::default();
        counting.breaker.state = CircuitState::Closed {
            consecutive_failures: 2,
        };
        s.entries.insert("openai/gpt-4o".into(), open);
        s.entries.insert("openai/gpt-4o-mini".into(), counting);
        s.entries.insert("anthropic/claude".into(), open);
        let fx = apply_probes(&mut s, &[probe("openai", true, 1_000)], &keys(), CFG);
        assert_eq!(fx.half_opened, vec!["openai/gpt-4o"]);
        let b = s.entries["openai/gpt-4o"].breaker;
        // Within the cool-down, one request may now test the provider.
        assert!(b.allows(1_001));
        assert_eq!(
            s.entries["openai/gpt-4o-mini"].breaker.state,
            CircuitState::Closed {
                consecutive_failures: 2
            }
        );
        assert!(!s.entries["anthropic/claude"].breaker.allows(1_001));
        // The half-open trial succeeding closes it, as with any breaker.
        let mut b = b;
        assert!(b.try_acquire(1_002));
        b.record_success();
        assert!(matches!(b.state, CircuitState::Closed { .. }));
    }

    #[test]
    fn state_without_probe_markers_still_parses() {
        let s: RoutingState = serde_json::from_str(r#"{"entries":{}}"#).unwrap();
        assert!(s.probes_applied.is_empty());
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"entries":{}}"#);
    }
}
