//! The scans' settings, read from Spin variables on every run.

use dol_core::gateway::catalog::ProviderSettings;

/// A variable's value; unset or unreadable is empty.
pub fn var(name: &str) -> String {
    spin_sdk::variables::get(name).unwrap_or_default()
}

/// Provider keys and URLs, from the same variables as the generate component.
pub fn providers() -> ProviderSettings {
    ProviderSettings {
        openai_api_key: var("openai_api_key"),
        openai_base_url: var("openai_base_url"),
        anthropic_api_key: var("anthropic_api_key"),
        anthropic_base_url: var("anthropic_base_url"),
        gemini_api_key: var("gemini_api_key"),
        gemini_base_url: var("gemini_base_url"),
        local_base_url: var("local_base_url"),
        local_api_key: var("local_api_key"),
    }
}

/// Where notifications go; empty strings are "not configured".
pub struct Channels {
    /// Slack incoming webhook URL.
    pub slack_webhook_url: String,
    /// Generic JSON webhook URL.
    pub notify_webhook_url: String,
    /// HMAC-SHA256 secret for the generic webhook.
    pub webhook_secret: String,
}

/// The notification channels.
pub fn channels() -> Channels {
    Channels {
        slack_webhook_url: var("slack_webhook_url").trim().to_owned(),
        notify_webhook_url: var("notify_webhook_url").trim().to_owned(),
        webhook_secret: var("webhook_secret"),
    }
}
