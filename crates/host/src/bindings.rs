//! The host's one bindgen site: Rust bindings for every Spin interface the host
//! implements, generated from the project's WIT tree (`wit/host.wit`).

#![allow(missing_docs, reason = "bindgen-generated code")]

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "dol:platform/spin-host",
    // Outbound Redis and PostgreSQL wait on the network: their functions are async.
    imports: {
        "fermyon:spin/redis": async | trappable,
        "spin:postgres/postgres": async | trappable,
        default: trappable,
    },
    anyhow: true,
    with: {
        "fermyon:spin/key-value.store": crate::spin_apis::KeyValueStore,
        "fermyon:spin/sqlite.connection": crate::spin_apis::SqliteConnection,
        "fermyon:spin/redis.connection": crate::outbound_redis::RedisConnection,
        "spin:postgres/postgres.connection": crate::outbound_pg::PgConnection,
        "spin:sqlite/sqlite.connection": crate::spin_apis::SqliteConnection,
        "wasi:keyvalue/store.bucket": crate::spin_apis::KeyValueStore,
        "wasi:keyvalue/atomics.cas": crate::spin_apis::KeyValueCas,
    },
});

pub use fermyon::spin::{key_value, redis as redis_v2, sqlite as sqlite_v2, variables};
pub use fermyon::spin_cron::cron_types;
pub use spin::postgres::postgres as postgres_v4;
pub use spin::sqlite::sqlite as sqlite_v3;
pub use wasi::config::store as wasi_config;
pub use wasi::keyvalue::{atomics as wasi_kv_atomics, batch as wasi_kv_batch, store as wasi_kv};
