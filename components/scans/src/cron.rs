//! The cron export: the Spin cron plugin's `handle-cron-event`
//! (`fermyon:spin-cron@2.0.0`, bindgen from `wit/guests.wit`).
//!
//! The plugin passes only the tick's time, so each tick runs the scans
//! `dol_core::observe::scans::due_scans` names for it, each under its
//! lease (`dol_core::observe::scan_lease`): once per tick across every
//! replica and every `[[trigger.cron]]` entry firing together at 03:00.

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
use dol_core::observe::scan_lease::{Acquired, Trigger};
use dol_core::observe::scans::due_scans;

/// The component's cron handler.
struct Cron;

impl bindings::Guest for Cron {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        let mut failed = Vec::new();
        crate::scan::await_trailing_bookings();
        for name in due_scans(metadata.timestamp) {
            let lease = match crate::scan::acquire(name, Trigger::Tick(metadata.timestamp)) {
                Ok(Acquired::Granted(lease)) => lease,
                Ok(Acquired::TickDone) => continue,
                Ok(Acquired::Held(held)) => {
                    // A run of this scan (a manual one, or a slow earlier
                    // tick) is still going: this tick skips it.
                    eprintln!(
                        "scans: {name} skipped at tick {}: a run holds the lease until {}",
                        metadata.timestamp, held.expires_at
                    );
                    continue;
                }
                Err(err) => {
                    eprintln!("scans: claiming {name} failed: {err:#}");
                    failed.push(name);
                    continue;
                }
            };
            let now = i64::try_from(metadata.timestamp)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000);
            if let Err(err) = crate::scan::run_leased(&lease, now) {
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
