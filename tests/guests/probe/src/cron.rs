//! The cron export (`fermyon:spin-cron@2.0.0`): writes the trigger's
//! timestamp to key `probe:cron` in the default key-value store.

// The generated canonical-ABI glue and the `export!` expansion use raw
// pointers and `#[export_name]`, which need `unsafe`; wit-bindgen's code only.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "dol:platform/cron-guest",
        generate_all,
    });

    use super::Cron;
    export!(Cron with_types_in self);
}

use bindings::fermyon::spin_cron::cron_types::{Error, Metadata};
use spin_sdk::key_value::Store;

/// The probe's cron handler.
struct Cron;

impl bindings::Guest for Cron {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        Store::open_default()
            .and_then(|store| store.set("probe:cron", metadata.timestamp.to_string().as_bytes()))
            .map_err(|err| Error::Other(err.to_string()))
    }
}
