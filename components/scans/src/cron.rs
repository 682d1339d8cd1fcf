//! The cron export: the Spin cron plugin's `handle-cron-event`
//! (`fermyon:spin-cron@2.0.0`, bindgen from `wit/guests.wit`).

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

/// The component's cron handler.
struct Cron;

impl bindings::Guest for Cron {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        crate::scan::heartbeat(metadata.timestamp)
            .map(drop)
            .map_err(|err| {
                eprintln!("scans: cron heartbeat failed: {err:#}");
                Error::Other("heartbeat failed".to_owned())
            })
    }
}
