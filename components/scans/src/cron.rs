//! The cron export: the Spin cron plugin's `handle-cron-event`
//! (`fermyon:spin-cron@2.0.0`, bindgen from `wit/guests.wit`).
//!
//! The plugin passes only the tick's time, so each tick runs the scans
//! `dol_core::observe::scans::due_scans` names for it, each claimed once
//! (several `[[trigger.cron]]` entries fire together at 03:00).

// The generated canonical-ABI glue and the `export!` expansion read and write
// linear memory through raw pointers and use `#[export_name]`, which needs
// `unsafe`; the allow covers wit-bindgen's code only.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "dol:platform/cron-guest",
        generate_all,
    });

    use super::Cron;
    export!(Cron with_types_in self);
}

use bindings::fermyon::spin_cron::cron_types::{Error, Metadata};
use dol_core::observe::scans::due_scans;

/// The component's cron handler.
struct Cron;

impl bindings::Guest for Cron {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        let mut failed = Vec::new();
        for name in due_scans(metadata.timestamp) {
            match crate::scan::claim(name, metadata.timestamp) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(err) => {
                    eprintln!("scans: claiming {name} failed: {err:#}");
                    failed.push(name);
                    continue;
                }
            }
            if let Err(err) = crate::scan::run(
                name,
                i64::try_from(metadata.timestamp)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1_000),
            ) {
                eprintln!("scans: cron {name} failed: {err:#}");
                failed.push(name);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::Other(format!("scans failed: {}", failed.join(", "))))
        }
    }
}
