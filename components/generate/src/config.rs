//! The gateway's settings, from Spin variables (each read once per instance,
//! `dol_spin_platform::variables`, so a changed variable reaches the
//! instances made after it); parsing is `dol_core::gateway::settings`.

pub use dol_core::gateway::pipeline::Settings;
use dol_core::gateway::settings::SettingsError;

/// Reads the settings; an unparsable variable is named in the error.
pub fn load() -> Result<Settings, SettingsError> {
    Settings::from_variables(dol_spin_platform::var)
}
