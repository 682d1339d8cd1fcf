//! The host's one bindgen site: Rust bindings for every Spin interface the host
//! implements, generated from the project's WIT tree (`wit/host.wit`).

#![allow(missing_docs, reason = "bindgen-generated code")]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "dol:platform/spin-host",
    imports: { default: trappable },
    anyhow: true,
    with: {
        "fermyon:spin/key-value.store": crate::spin_apis::KeyValueStore,
        "fermyon:spin/sqlite.connection": crate::spin_apis::SqliteConnection,
        "spin:sqlite/sqlite.connection": crate::spin_apis::SqliteConnection,
    },
});

pub use fermyon::spin::{key_value, sqlite as sqlite_v2, variables};
pub use fermyon::spin_cron::cron_types;
pub use spin::sqlite::sqlite as sqlite_v3;
