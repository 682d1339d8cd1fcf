//! The gateway's settings, read from Spin variables on every request (so a
//! changed variable applies without a restart).

use dol_core::gateway::catalog::ProviderSettings;
use dol_core::gateway::circuit::CircuitConfig;
use dol_core::gateway::engine::EngineConfig;
use dol_core::gateway::quality::QualityConfig;
use dol_core::gateway::retry::RetryPolicy;
use dol_core::gateway::tiers::PipelineConfig;

pub use dol_core::gateway::pipeline::Settings;

fn var(name: &str) -> String {
    spin_sdk::variables::get(name).unwrap_or_default()
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    let raw = var(name);
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(default);
    }
    raw.parse()
        .map_err(|_| format!("variable {name} must be a number, got {raw:?}"))
}

/// Reads the settings; an unparsable variable is named in the error.
pub fn load() -> Result<Settings, String> {
    let quality_threshold: f64 = number("gateway_quality_threshold", 7.0)?;
    if !(0.0..=10.0).contains(&quality_threshold) {
        return Err("variable gateway_quality_threshold must be between 0 and 10".to_owned());
    }
    let retry = RetryPolicy {
        max_attempts: number("gateway_retry_attempts", 3u32)?.max(1),
        base_delay_ms: number("gateway_retry_delay_ms", 2_000u64)?,
        max_delay_ms: 30_000,
        deadline_ms: number("gateway_timeout_ms", 120_000u64)?.max(1),
    };
    let pipeline = PipelineConfig {
        retry,
        quality_threshold,
        min_attempt_ms: number("gateway_min_attempt_ms", 1_000u64)?,
    };
    Ok(Settings {
        providers: ProviderSettings {
            openai_api_key: var("openai_api_key"),
            openai_base_url: var("openai_base_url"),
            anthropic_api_key: var("anthropic_api_key"),
            anthropic_base_url: var("anthropic_base_url"),
            gemini_api_key: var("gemini_api_key"),
            gemini_base_url: var("gemini_base_url"),
            local_base_url: var("local_base_url"),
            local_api_key: var("local_api_key"),
        },
        engine: EngineConfig {
            pipeline,
            attempt_timeout_ms: number("gateway_attempt_timeout_ms", 60_000u64)?.max(1),
        },
        quality: QualityConfig {
            threshold: quality_threshold,
            ..QualityConfig::default()
        },
        circuit: CircuitConfig {
            failure_threshold: number("gateway_circuit_failures", 5u32)?.max(1),
            cooldown_ms: number("gateway_circuit_cooldown_ms", 30_000u64)?,
        },
        cache_ttl_secs: number("gateway_cache_ttl_secs", 3_600u64)?,
        tier_flag: var("gateway_tier_flag"),
        bootstrap_key: var("bootstrap_api_key"),
    })
}
