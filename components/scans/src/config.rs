//! The scans' settings, read from Spin variables on every run.

use dol_core::gateway::catalog::ProviderSettings;

pub use dol_spin_platform::var;

/// Provider keys and URLs, from the same variables as the generate component.
pub fn providers() -> ProviderSettings {
    ProviderSettings::from_variables(var)
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
