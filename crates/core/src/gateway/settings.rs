//! The gateway's settings from configuration variables (Spin variables in
//! the components), read through a lookup so every component parses them
//! the same way and a test can feed any set.

use super::catalog::ProviderSettings;
use super::circuit::CircuitConfig;
use super::engine::EngineConfig;
use super::pipeline::{Byok, Settings};
use super::quality::QualityConfig;
use super::retry::RetryPolicy;
use super::tiers::PipelineConfig;
use crate::orgs::crypto::KeyRing;

/// A variable that does not parse; nothing is served with a guess.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// The variable must be a number.
    #[error("variable {name} must be a number, got {value:?}")]
    NotANumber {
        /// The variable's name.
        name: &'static str,
        /// What it holds.
        value: String,
    },
    /// The number is outside the range the variable takes.
    #[error("variable {name} must be between {min} and {max}")]
    OutOfRange {
        /// The variable's name.
        name: &'static str,
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
}

/// Reads a number; an unset or blank variable is `default`.
pub(crate) fn number<T: std::str::FromStr>(
    var: &impl Fn(&str) -> String,
    name: &'static str,
    default: T,
) -> Result<T, SettingsError> {
    let raw = var(name);
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(default);
    }
    raw.parse().map_err(|_| SettingsError::NotANumber {
        name,
        value: raw.to_owned(),
    })
}

impl ProviderSettings {
    /// Provider keys and URLs from the `*_api_key` / `*_base_url` variables
    /// (`var` answers "" for an unset one).
    pub fn from_variables(var: impl Fn(&str) -> String) -> Self {
        Self {
            openai_api_key: var("openai_api_key"),
            openai_base_url: var("openai_base_url"),
            anthropic_api_key: var("anthropic_api_key"),
            anthropic_base_url: var("anthropic_base_url"),
            gemini_api_key: var("gemini_api_key"),
            gemini_base_url: var("gemini_base_url"),
            local_base_url: var("local_base_url"),
            local_api_key: var("local_api_key"),
            org_credentials: Default::default(),
        }
    }
}

impl Settings {
    /// Every gateway setting from the `gateway_*` variables and the provider
    /// variables (`var` answers "" for an unset one); the first variable that
    /// does not parse is named in the error.
    pub fn from_variables(var: impl Fn(&str) -> String) -> Result<Self, SettingsError> {
        let quality_threshold: f64 = number(&var, "gateway_quality_threshold", 7.0)?;
        if !(0.0..=10.0).contains(&quality_threshold) {
            return Err(SettingsError::OutOfRange {
                name: "gateway_quality_threshold",
                min: 0.0,
                max: 10.0,
            });
        }
        let retry = RetryPolicy {
            max_attempts: number(&var, "gateway_retry_attempts", 3u32)?.max(1),
            base_delay_ms: number(&var, "gateway_retry_delay_ms", 2_000u64)?,
            max_delay_ms: 30_000,
            deadline_ms: number(&var, "gateway_timeout_ms", 120_000u64)?.max(1),
        };
        let pipeline = PipelineConfig {
            retry,
            quality_threshold,
            min_attempt_ms: number(&var, "gateway_min_attempt_ms", 1_000u64)?,
        };
        Ok(Self {
            engine: EngineConfig {
                pipeline,
                attempt_timeout_ms: number(&var, "gateway_attempt_timeout_ms", 60_000u64)?.max(1),
            },
            quality: QualityConfig {
                threshold: quality_threshold,
                ..QualityConfig::default()
            },
            circuit: CircuitConfig {
                failure_threshold: number(&var, "gateway_circuit_failures", 5u32)?.max(1),
                cooldown_ms: number(&var, "gateway_circuit_cooldown_ms", 30_000u64)?,
            },
            cache_ttl_secs: number(&var, "gateway_cache_ttl_secs", 3_600u64)?,
            tier_flag: var("gateway_tier_flag"),
            savings_baseline: var("gateway_savings_baseline").trim().to_owned(),
            bootstrap_key: var("bootstrap_api_key"),
            byok: Byok(KeyRing::from_lookup(&var)),
            providers: ProviderSettings::from_variables(var),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> String {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| map.get(name).cloned().unwrap_or_default()
    }

    #[test]
    fn unset_variables_give_the_documented_defaults() {
        let s = Settings::from_variables(lookup(&[])).unwrap();
        assert_eq!(s.engine.pipeline.retry.max_attempts, 3);
        assert_eq!(s.engine.pipeline.retry.base_delay_ms, 2_000);
        assert_eq!(s.engine.pipeline.retry.deadline_ms, 120_000);
        assert_eq!(s.engine.pipeline.min_attempt_ms, 1_000);
        assert_eq!(s.engine.attempt_timeout_ms, 60_000);
        assert!((s.quality.threshold - 7.0).abs() < f64::EPSILON);
        assert_eq!(s.circuit.failure_threshold, 5);
        assert_eq!(s.circuit.cooldown_ms, 30_000);
        assert_eq!(s.cache_ttl_secs, 3_600);
        assert_eq!(s.providers, ProviderSettings::default());
    }

    #[test]
    fn variables_are_read_trimmed_and_floored() {
        let s = Settings::from_variables(lookup(&[
            ("gateway_retry_attempts", " 0 "),
            ("gateway_timeout_ms", "6000"),
            ("gateway_quality_threshold", "5.5"),
            ("openai_api_key", "sk-x"),
            ("gateway_tier_flag", "generation_pipeline"),
        ]))
        .unwrap();
        // Zero attempts would serve nothing: at least one.
        assert_eq!(s.engine.pipeline.retry.max_attempts, 1);
        assert_eq!(s.engine.pipeline.retry.deadline_ms, 6_000);
        assert!((s.quality.threshold - 5.5).abs() < f64::EPSILON);
        assert_eq!(s.providers.openai_api_key, "sk-x");
        assert_eq!(s.tier_flag, "generation_pipeline");
    }

    #[test]
    fn a_bad_variable_is_named() {
        let err =
            Settings::from_variables(lookup(&[("gateway_cache_ttl_secs", "soon")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "variable gateway_cache_ttl_secs must be a number, got \"soon\""
        );
        let err =
            Settings::from_variables(lookup(&[("gateway_quality_threshold", "11")])).unwrap_err();
        assert_eq!(
            err,
            SettingsError::OutOfRange {
                name: "gateway_quality_threshold",
                min: 0.0,
                max: 10.0
            }
        );
        assert_eq!(
            err.to_string(),
            "variable gateway_quality_threshold must be between 0 and 10"
        );
    }
}
