//! The gateway's settings, read from Spin variables on every request (so a
//! changed variable applies without a restart); parsing is
//! `dol_core::gateway::settings`.

pub use dol_core::gateway::pipeline::Settings;
use dol_core::gateway::settings::SettingsError;

/// Reads the settings; an unparsable variable is named in the error.
pub fn load() -> Result<Settings, SettingsError> {
    Settings::from_variables(dol_spin_platform::var)
}
