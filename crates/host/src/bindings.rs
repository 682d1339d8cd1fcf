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

/// The WASI 0.2.0-rc-2023-10-18 HTTP world (`wit/wasi-2023-10-18.wit`). Its
/// resources are the current implementation's host types, so a stream, a body
/// or a request lives in the same resource table whichever version a guest
/// speaks; `crate::wasi_2023_10_18` forwards the functions.
pub mod wasi_2023_10_18 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "dol:platform/wasi-http-2023-10-18",
        imports: {
            "wasi:io/poll.poll-list": async | trappable,
            "wasi:io/poll.poll-one": async | trappable,
            "wasi:io/streams.[method]input-stream.blocking-read": async | trappable,
            "wasi:io/streams.[method]input-stream.blocking-skip": async | trappable,
            "wasi:io/streams.[drop]input-stream": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-write-and-flush": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-flush": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-write-zeroes-and-flush": async | trappable,
            "wasi:io/streams.[method]output-stream.blocking-splice": async | trappable,
            "wasi:io/streams.[method]output-stream.forward": async | trappable,
            "wasi:io/streams.[drop]output-stream": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "wasi:io/poll.pollable": wasmtime_wasi::p2::DynPollable,
            "wasi:io/streams.input-stream": wasmtime_wasi::p2::DynInputStream,
            "wasi:io/streams.output-stream": wasmtime_wasi::p2::DynOutputStream,
            "wasi:io/streams.error": wasmtime_wasi::p2::IoError,
            "wasi:http/types.fields": wasmtime_wasi_http::FieldMap,
            "wasi:http/types.incoming-request": wasmtime_wasi_http::p2::types::HostIncomingRequest,
            "wasi:http/types.outgoing-request": wasmtime_wasi_http::p2::types::HostOutgoingRequest,
            "wasi:http/types.response-outparam": wasmtime_wasi_http::p2::types::HostResponseOutparam,
            "wasi:http/types.incoming-response": wasmtime_wasi_http::p2::types::HostIncomingResponse,
            "wasi:http/types.incoming-body": wasmtime_wasi_http::p2::body::HostIncomingBody,
            "wasi:http/types.future-trailers": wasmtime_wasi_http::p2::body::HostFutureTrailers,
            "wasi:http/types.outgoing-response": wasmtime_wasi_http::p2::types::HostOutgoingResponse,
            "wasi:http/types.outgoing-body": wasmtime_wasi_http::p2::body::HostOutgoingBody,
            "wasi:http/types.future-incoming-response": wasmtime_wasi_http::p2::types::HostFutureIncomingResponse,
        },
        trappable_error_type: {
            "wasi:io/streams.stream-error" => wasmtime_wasi::p2::StreamError,
        },
    });
}
