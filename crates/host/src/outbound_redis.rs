//! Outbound Redis (`fermyon:spin/redis@2.0.0`), as Spin's outbound-redis
//! factor serves it: `open` refuses an address `allowed_outbound_hosts` does
//! not allow (`redis` is the default scheme) with `invalid-address` before any
//! connection is made; each command is one Redis command on a multiplexed
//! connection; failures are `other(message)`.

use anyhow::Result;
use redis::aio::MultiplexedConnection;
use wasmtime::component::Resource;

use crate::bindings::redis_v2 as v2;
use crate::instance::InstanceState;

/// Spin's limit on what one call may hand back to a guest (128 MiB).
const MAX_RESULT_BYTES: usize = 128 << 20;

fn too_large() -> v2::Error {
    v2::Error::Other(format!(
        "query result exceeds limit of {MAX_RESULT_BYTES} bytes"
    ))
}

/// An open Redis connection handed to a guest.
pub struct RedisConnection {
    connection: MultiplexedConnection,
}

fn other(error: impl std::fmt::Display) -> v2::Error {
    v2::Error::Other(error.to_string())
}

/// Spin maps a reply of the wrong type to `type-error`, anything else to `other`.
fn typed(error: redis::RedisError) -> v2::Error {
    if error.kind() == redis::ErrorKind::UnexpectedReturnType {
        v2::Error::TypeError
    } else {
        other(error)
    }
}

impl InstanceState {
    fn redis(&mut self, connection: &Resource<RedisConnection>) -> Result<MultiplexedConnection> {
        // A multiplexed connection is a cheap handle onto one shared pipe.
        Ok(self.table.get(connection)?.connection.clone())
    }
}

impl v2::Host for InstanceState {}

impl v2::HostConnection for InstanceState {
    async fn open(
        &mut self,
        address: String,
    ) -> Result<Result<Resource<RedisConnection>, v2::Error>> {
        if !crate::outbound::address_allowed(self.hooks.allowed(), &address, "redis") {
            tracing::warn!(
                "component {}: Redis connection to {address} denied: not in allowed_outbound_hosts",
                self.grants.id
            );
            return Ok(Err(v2::Error::InvalidAddress));
        }
        let client = match redis::Client::open(address.as_str()) {
            Ok(client) => client,
            Err(_) => return Ok(Err(v2::Error::InvalidAddress)),
        };
        // No per-reply timeout: the request's own time limit bounds a call, and
        // a large reply must reach the size check instead of timing out.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        let connection = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(connection) => connection,
            Err(error) => return Ok(Err(other(error))),
        };
        Ok(Ok(self.table.push(RedisConnection { connection })?))
    }

    async fn publish(
        &mut self,
        connection: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<Result<(), v2::Error>> {
        let mut connection = self.redis(&connection)?;
        Ok(redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut connection)
            .await
            .map(drop)
            .map_err(other))
    }

    async fn get(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> Result<Result<Option<Vec<u8>>, v2::Error>> {
        let mut connection = self.redis(&connection)?;
        let value: Option<Vec<u8>> = match redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
        {
            Ok(value) => value,
            Err(error) => return Ok(Err(other(error))),
        };
        // The redis crate buffers the reply; the limit still keeps an
        // oversized value out of the guest's memory.
        if value.as_ref().map_or(0, Vec::len) > MAX_RESULT_BYTES {
            return Ok(Err(too_large()));
        }
        Ok(Ok(value))
    }

    async fn set(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> Result<Result<(), v2::Error>> {
        let mut connection = self.redis(&connection)?;
        Ok(redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut connection)
            .await
            .map_err(other))
    }

    async fn incr(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> Result<Result<i64, v2::Error>> {
        let mut connection = self.redis(&connection)?;
        Ok(redis::cmd("INCRBY")
            .arg(key)
            .arg(1)
            .query_async(&mut connection)
            .await
            .map_err(other))
    }

    async fn del(
        &mut self,
        connection: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> Result<Result<u32, v2::Error>> {
        let mut connection = self.redis(&connection)?;
        Ok(redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await
            .map_err(other))
    }

    async fn sadd(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Result<Result<u32, v2::Error>> {
        let mut connection = self.redis(&connection)?;
        Ok(redis::cmd("SADD")
            .arg(key)
            .arg(values)
            .query_async(&mut connection)
            .await
            .map_err(typed))
    }

    async fn smembers(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> Result<Result<Vec<String>, v2::Error>> {
        let mut connection = self.redis(&connection)?;
        Ok(redis::cmd("SMEMBERS")
            .arg(key)
            .query_async(&mut connection)
            .await
            .map_err(other))
    }

    async fn srem(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Result<Result<u32, v2::Error>> {
        let mut connection = self.redis(&connection)?;
        Ok(redis::cmd("SREM")
            .arg(key)
            .arg(values)
            .query_async(&mut connection)
            .await
            .map_err(typed))
    }

    async fn execute(
        &mut self,
        connection: Resource<RedisConnection>,
        command: String,
        arguments: Vec<v2::RedisParameter>,
    ) -> Result<Result<Vec<v2::RedisResult>, v2::Error>> {
        let mut connection = self.redis(&connection)?;
        let mut cmd = redis::cmd(&command);
        for argument in arguments {
            match argument {
                v2::RedisParameter::Int64(value) => cmd.arg(value),
                v2::RedisParameter::Binary(value) => cmd.arg(value),
            };
        }
        let value = match cmd.query_async::<redis::Value>(&mut connection).await {
            Ok(value) => value,
            Err(error) => return Ok(Err(other(error))),
        };
        let mut results = Vec::new();
        let mut bytes = 0;
        Ok(flatten(value, &mut results, &mut bytes).map(|()| results))
    }

    async fn drop(&mut self, connection: Resource<RedisConnection>) -> Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

/// Spin's mapping of a reply onto `redis-result`s: arrays and sets are
/// flattened, `OK` is the status "OK", doubles are their text.
/// Fails once the results pass [`MAX_RESULT_BYTES`].
fn flatten(
    value: redis::Value,
    results: &mut Vec<v2::RedisResult>,
    bytes: &mut usize,
) -> Result<(), v2::Error> {
    use redis::Value;
    *bytes += std::mem::size_of::<v2::RedisResult>()
        + match &value {
            Value::BulkString(data) => data.len(),
            Value::SimpleString(text) => text.len(),
            Value::VerbatimString { text, .. } => text.len(),
            _ => 0,
        };
    if *bytes > MAX_RESULT_BYTES {
        return Err(too_large());
    }
    match value {
        Value::Nil => results.push(v2::RedisResult::Nil),
        Value::Int(value) => results.push(v2::RedisResult::Int64(value)),
        Value::BulkString(bytes) => results.push(v2::RedisResult::Binary(bytes)),
        Value::SimpleString(text) => results.push(v2::RedisResult::Status(text)),
        Value::Okay => results.push(v2::RedisResult::Status("OK".to_owned())),
        Value::Array(values) | Value::Set(values) => {
            for value in values {
                flatten(value, results, bytes)?;
            }
        }
        Value::Double(value) => {
            results.push(v2::RedisResult::Binary(value.to_string().into_bytes()))
        }
        Value::Boolean(value) => results.push(v2::RedisResult::Int64(i64::from(value))),
        Value::VerbatimString { text, .. } => {
            results.push(v2::RedisResult::Binary(text.into_bytes()))
        }
        Value::ServerError(error) => return Err(other(format!("{error:?}"))),
        other_value => {
            return Err(other(format!("unsupported Redis reply {other_value:?}")));
        }
    }
    Ok(())
}
