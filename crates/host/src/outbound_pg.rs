//! Outbound PostgreSQL (`spin:postgres/postgres@4.0.0`), as Spin's
//! outbound-pg factor serves it: `open` takes a URL or a `key=value`
//! connection string, and refuses it with `connection-failed("address
//! postgres://host:port is not permitted")` unless `allowed_outbound_hosts`
//! allows every host it names; queries map PostgreSQL types onto Spin's
//! `db-value`s (numeric as base-10 text, ranges, arrays, intervals), and a
//! result larger than 128 MiB fails instead of filling the guest's memory.
//!
//! Connections come from the app's pools ([`crate::pg_pool`]): `open` reuses
//! an idle connection to the same address, and dropping the connection (or
//! the instance ending, trap included) returns it, cleaned. Connections are
//! made without TLS (`sslmode` other than `disable` is not negotiated), which
//! is what the local databases the suites use expect.

use std::error::Error as StdError;
use std::fmt::Write as _;

use anyhow::Result;
use bytes::{BufMut, BytesMut};
use tokio_postgres::Row;
use tokio_postgres::config::Host;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use wasmtime::component::Resource;

use crate::bindings::postgres_v4 as v4;
use crate::instance::InstanceState;

/// Spin's limit on what one query may hand back to a guest (128 MiB).
const MAX_RESULT_BYTES: usize = 128 << 20;

type BoxError = Box<dyn StdError + Sync + Send>;

/// An open PostgreSQL connection handed to a guest (pooled).
pub struct PgConnection {
    client: crate::pg_pool::PooledClient,
}

impl InstanceState {
    /// The first `postgres://host:port` of `address` the component may not reach.
    ///
    /// Every `hostaddr` is checked as well as every `host`: the driver
    /// connects to `hostaddr` when it is set and uses `host` only to name the
    /// server for TLS, so a connection string naming an allowed `host` and
    /// any `hostaddr` (or only a `hostaddr`) reached addresses the manifest
    /// never granted. (Spin checks only the hosts; this is stricter, and a
    /// string that uses `hostaddr` needs each address allowed too.)
    fn denied_pg_host(&self, address: &str) -> Option<String> {
        let Ok(config) = address.parse::<tokio_postgres::Config>() else {
            return Some(address.to_owned());
        };
        let ports = config.get_ports();
        let port = |index: usize| ports.get(index).or(ports.first()).copied().unwrap_or(5432);
        let mut urls = Vec::new();
        for (index, host) in config.get_hosts().iter().enumerate() {
            let Host::Tcp(host) = host else {
                return Some(address.to_owned());
            };
            urls.push(format!("postgres://{host}:{}", port(index)));
        }
        for (index, ip) in config.get_hostaddrs().iter().enumerate() {
            let ip = match ip {
                std::net::IpAddr::V4(v4) => v4.to_string(),
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            };
            urls.push(format!("postgres://{ip}:{}", port(index)));
        }
        urls.into_iter()
            .find(|url| !crate::outbound::address_allowed(self.hooks.allowed(), url, "postgres"))
    }
}

fn query_failed(error: &tokio_postgres::Error) -> v4::Error {
    match error.as_db_error() {
        Some(db) => v4::Error::QueryFailed(v4::QueryError::DbError(v4::DbError {
            as_text: crate::pg_pool::describe(error),
            severity: db.severity().to_owned(),
            code: db.code().code().to_owned(),
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            extras: db_extras(db),
        })),
        None => v4::Error::QueryFailed(v4::QueryError::Text(crate::pg_pool::describe(error))),
    }
}

/// The optional fields of a server error, named as Spin names them in `extras`.
fn db_extras(db: &tokio_postgres::error::DbError) -> Vec<(String, String)> {
    let line = db.line().map(|line| line.to_string());
    [
        ("column", db.column()),
        ("constraint", db.constraint()),
        ("routine", db.routine()),
        ("hint", db.hint()),
        ("table", db.table()),
        ("datatype", db.datatype()),
        ("schema", db.schema()),
        ("file", db.file()),
        ("line", line.as_deref()),
        ("where_", db.where_()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name.to_owned(), value?.to_owned())))
    .collect()
}

impl v4::Host for InstanceState {}

impl v4::HostConnection for InstanceState {
    async fn open(&mut self, address: String) -> Result<Result<Resource<PgConnection>, v4::Error>> {
        if let Some(denied) = self.denied_pg_host(&address) {
            tracing::warn!(
                "component {}: PostgreSQL connection to {denied} denied: not in allowed_outbound_hosts",
                self.grants.id
            );
            return Ok(Err(v4::Error::ConnectionFailed(format!(
                "address {denied} is not permitted"
            ))));
        }
        let client = match self.storage.postgres.get(&address).await {
            Ok(client) => client,
            Err(message) => {
                tracing::warn!(
                    "component {}: PostgreSQL connection failed: {message}",
                    self.grants.id
                );
                return Ok(Err(v4::Error::ConnectionFailed(message)));
            }
        };
        Ok(Ok(self.table.push(PgConnection { client })?))
    }

    async fn query(
        &mut self,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> Result<Result<v4::RowSet, v4::Error>> {
        let params = match params
            .into_iter()
            .map(Param::new)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(params) => params,
            Err(message) => return Ok(Err(v4::Error::BadParameter(message))),
        };
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let client = &self.table.get(&connection)?.client;
        let prepared = match client.prepare_cached(&statement).await {
            Ok(prepared) => prepared,
            Err(error) => return Ok(Err(query_failed(&error))),
        };
        let rows = match client.query(&prepared, &refs).await {
            Ok(rows) => rows,
            Err(error) => {
                client.forget(&statement);
                return Ok(Err(query_failed(&error)));
            }
        };
        let columns = prepared
            .columns()
            .iter()
            .map(|column| v4::Column {
                name: column.name().to_owned(),
                data_type: data_type(column.type_()),
            })
            .collect();
        let mut bytes = 0usize;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let values = match row_values(row) {
                Ok(values) => values,
                Err(error) => return Ok(Err(v4::Error::ValueConversionFailed(error.to_string()))),
            };
            bytes += values.iter().map(value_size).sum::<usize>();
            if bytes > MAX_RESULT_BYTES {
                return Ok(Err(v4::Error::QueryFailed(v4::QueryError::Text(format!(
                    "query result exceeds limit of {MAX_RESULT_BYTES} bytes"
                )))));
            }
            out.push(values);
        }
        Ok(Ok(v4::RowSet { columns, rows: out }))
    }

    async fn execute(
        &mut self,
        connection: Resource<PgConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> Result<Result<u64, v4::Error>> {
        let params = match params
            .into_iter()
            .map(Param::new)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(params) => params,
            Err(message) => return Ok(Err(v4::Error::BadParameter(message))),
        };
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let client = &self.table.get(&connection)?.client;
        let prepared = match client.prepare_cached(&statement).await {
            Ok(prepared) => prepared,
            Err(error) => return Ok(Err(query_failed(&error))),
        };
        Ok(client.execute(&prepared, &refs).await.map_err(|error| {
            client.forget(&statement);
            query_failed(&error)
        }))
    }

    async fn drop(&mut self, connection: Resource<PgConnection>) -> Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

fn data_type(ty: &Type) -> v4::DbDataType {
    use v4::DbDataType as D;
    match *ty {
        Type::BOOL => D::Boolean,
        Type::CHAR => D::Int8,
        Type::INT2 => D::Int16,
        Type::INT4 => D::Int32,
        Type::INT8 => D::Int64,
        Type::FLOAT4 => D::Floating32,
        Type::FLOAT8 => D::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => D::Str,
        Type::BYTEA => D::Binary,
        Type::DATE => D::Date,
        Type::TIME => D::Time,
        Type::TIMESTAMP => D::Datetime,
        Type::TIMESTAMPTZ => D::Timestamp,
        Type::UUID => D::Uuid,
        Type::JSONB | Type::JSON => D::Jsonb,
        Type::NUMERIC => D::Decimal,
        Type::INT4_RANGE => D::RangeInt32,
        Type::INT8_RANGE => D::RangeInt64,
        Type::NUM_RANGE => D::RangeDecimal,
        Type::INT4_ARRAY => D::ArrayInt32,
        Type::INT8_ARRAY => D::ArrayInt64,
        Type::NUMERIC_ARRAY => D::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => D::ArrayStr,
        Type::INTERVAL => D::Interval,
        ref other => D::Other(other.name().to_owned()),
    }
}

fn row_values(row: &Row) -> Result<Vec<v4::DbValue>, tokio_postgres::Error> {
    (0..row.len())
        .map(|index| db_value(row, index, row.columns()[index].type_()))
        .collect()
}

fn db_value(row: &Row, i: usize, ty: &Type) -> Result<v4::DbValue, tokio_postgres::Error> {
    use v4::DbValue as V;
    fn get<'a, T: FromSql<'a>>(
        row: &'a Row,
        i: usize,
        wrap: impl FnOnce(T) -> v4::DbValue,
    ) -> Result<v4::DbValue, tokio_postgres::Error> {
        Ok(row
            .try_get::<_, Option<T>>(i)?
            .map_or(v4::DbValue::DbNull, wrap))
    }
    match *ty {
        Type::BOOL => get(row, i, V::Boolean),
        Type::CHAR => get(row, i, V::Int8),
        Type::INT2 => get(row, i, V::Int16),
        Type::INT4 => get(row, i, V::Int32),
        Type::INT8 => get(row, i, V::Int64),
        Type::FLOAT4 => get(row, i, V::Floating32),
        Type::FLOAT8 => get(row, i, V::Floating64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => get(row, i, V::Str),
        Type::BYTEA => get(row, i, V::Binary),
        Type::DATE => get(row, i, |d: chrono::NaiveDate| {
            use chrono::Datelike;
            V::Date((d.year(), month_day(d.month()), month_day(d.day())))
        }),
        Type::TIME => get(row, i, |t: chrono::NaiveTime| V::Time(time_parts(t))),
        Type::TIMESTAMP => get(row, i, |dt: chrono::NaiveDateTime| {
            use chrono::Datelike;
            let (h, m, s, ns) = time_parts(dt.time());
            V::Datetime((
                dt.year(),
                month_day(dt.month()),
                month_day(dt.day()),
                h,
                m,
                s,
                ns,
            ))
        }),
        Type::TIMESTAMPTZ => get(row, i, |dt: chrono::DateTime<chrono::Utc>| {
            V::Timestamp(dt.timestamp())
        }),
        Type::UUID => get(row, i, |u: uuid::Uuid| V::Uuid(u.to_string())),
        Type::JSONB | Type::JSON => get(row, i, |j: Json| V::Jsonb(j.0)),
        Type::NUMERIC => get(row, i, |n: Numeric| V::Decimal(n.0)),
        Type::INT4_RANGE => get(row, i, |r: Range<i32>| V::RangeInt32(r.0)),
        Type::INT8_RANGE => get(row, i, |r: Range<i64>| V::RangeInt64(r.0)),
        Type::NUM_RANGE => get(row, i, |r: Range<Numeric>| {
            let (lower, upper) = r.0;
            V::RangeDecimal((lower.map(|(n, k)| (n.0, k)), upper.map(|(n, k)| (n.0, k))))
        }),
        Type::INT4_ARRAY => get(row, i, V::ArrayInt32),
        Type::INT8_ARRAY => get(row, i, V::ArrayInt64),
        Type::NUMERIC_ARRAY => get(row, i, |a: Vec<Option<Numeric>>| {
            V::ArrayDecimal(a.into_iter().map(|n| n.map(|n| n.0)).collect())
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => get(row, i, V::ArrayStr),
        Type::INTERVAL => get(row, i, |iv: Interval| V::Interval(iv.0)),
        _ => get(row, i, |raw: Raw| V::Unsupported(raw.0)),
    }
}

/// Month and day numbers (1..=31) always fit a `u8`.
fn month_day(value: u32) -> u8 {
    u8::try_from(value).unwrap_or(u8::MAX)
}

fn time_parts(t: chrono::NaiveTime) -> (u8, u8, u8, u32) {
    use chrono::Timelike;
    (
        month_day(t.hour()),
        month_day(t.minute()),
        month_day(t.second()),
        t.nanosecond(),
    )
}

fn value_size(value: &v4::DbValue) -> usize {
    use v4::DbValue as V;
    std::mem::size_of::<v4::DbValue>()
        + match value {
            V::Str(s) | V::Uuid(s) | V::Decimal(s) => s.len(),
            V::Binary(b) | V::Jsonb(b) | V::Unsupported(b) => b.len(),
            V::ArrayInt32(a) => a.len() * 8,
            V::ArrayInt64(a) => a.len() * 16,
            V::ArrayDecimal(a) | V::ArrayStr(a) => a
                .iter()
                .map(|s| 24 + s.as_ref().map_or(0, String::len))
                .sum(),
            _ => 0,
        }
}

/// A guest parameter, encoded for whatever type the statement expects.
#[derive(Debug)]
enum Param {
    Null,
    Value(v4::ParameterValue),
}

impl Param {
    /// Refuses a value the database would refuse only obscurely, with the
    /// message for Spin's `bad-parameter`.
    fn new(value: v4::ParameterValue) -> Result<Self, String> {
        let bad = |what: &str, detail: String| format!("{what}: {detail}");
        // Values the database would refuse only obscurely are checked here.
        match &value {
            v4::ParameterValue::DbNull => return Ok(Self::Null),
            v4::ParameterValue::Uuid(text) => {
                uuid::Uuid::parse_str(text).map_err(|e| bad("uuid", e.to_string()))?;
            }
            v4::ParameterValue::Decimal(text) => {
                encode_numeric(text).map_err(|e| bad("decimal", e.to_string()))?;
            }
            _ => {}
        }
        Ok(Self::Value(value))
    }
}

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        use v4::ParameterValue as P;
        let Self::Value(value) = self else {
            return Ok(IsNull::Yes);
        };
        match value {
            P::Boolean(v) => v.to_sql(ty, out),
            P::Int8(v) => v.to_sql(ty, out),
            P::Int16(v) => v.to_sql(ty, out),
            P::Int32(v) => v.to_sql(ty, out),
            P::Int64(v) => v.to_sql(ty, out),
            P::Floating32(v) => v.to_sql(ty, out),
            P::Floating64(v) => v.to_sql(ty, out),
            P::Str(v) => v.to_sql(ty, out),
            P::Binary(v) => v.to_sql(ty, out),
            P::Date((y, m, d)) => chrono::NaiveDate::from_ymd_opt(*y, u32::from(*m), u32::from(*d))
                .ok_or("invalid date")?
                .to_sql(ty, out),
            P::Time((h, m, s, ns)) => naive_time(*h, *m, *s, *ns)?.to_sql(ty, out),
            P::Datetime((y, mo, d, h, mi, s, ns)) => {
                let date = chrono::NaiveDate::from_ymd_opt(*y, u32::from(*mo), u32::from(*d))
                    .ok_or("invalid date")?;
                let datetime = date.and_time(naive_time(*h, *mi, *s, *ns)?);
                if *ty == Type::TIMESTAMPTZ {
                    datetime.and_utc().to_sql(ty, out)
                } else {
                    datetime.to_sql(ty, out)
                }
            }
            P::Timestamp(secs) => {
                let datetime =
                    chrono::DateTime::from_timestamp(*secs, 0).ok_or("invalid timestamp")?;
                if *ty == Type::TIMESTAMP {
                    datetime.naive_utc().to_sql(ty, out)
                } else {
                    datetime.to_sql(ty, out)
                }
            }
            P::Uuid(text) => uuid::Uuid::parse_str(text)?.to_sql(ty, out),
            P::Jsonb(bytes) => {
                // jsonb's binary form is a version byte and the JSON text.
                if *ty == Type::JSONB {
                    out.put_u8(1);
                }
                out.put_slice(bytes);
                Ok(IsNull::No)
            }
            P::Decimal(text) => {
                out.put_slice(&encode_numeric(text)?);
                Ok(IsNull::No)
            }
            P::RangeInt32((lower, upper)) => {
                encode_range(out, *lower, *upper, |v, out| out.put_i32(v));
                Ok(IsNull::No)
            }
            P::RangeInt64((lower, upper)) => {
                encode_range(out, *lower, *upper, |v, out| out.put_i64(v));
                Ok(IsNull::No)
            }
            P::RangeDecimal((lower, upper)) => {
                let lower = lower
                    .as_ref()
                    .map(|(v, k)| encode_numeric(v).map(|b| (b, *k)))
                    .transpose()?;
                let upper = upper
                    .as_ref()
                    .map(|(v, k)| encode_numeric(v).map(|b| (b, *k)))
                    .transpose()?;
                encode_range(out, lower, upper, |v: Vec<u8>, out| out.put_slice(&v));
                Ok(IsNull::No)
            }
            P::ArrayInt32(values) => values.to_sql(ty, out),
            P::ArrayInt64(values) => values.to_sql(ty, out),
            P::ArrayDecimal(values) => values
                .iter()
                .map(|v| v.as_ref().map(|text| Numeric(text.clone())))
                .collect::<Vec<_>>()
                .to_sql(ty, out),
            P::ArrayStr(values) => values.to_sql(ty, out),
            P::Interval(interval) => {
                out.put_i64(interval.micros);
                out.put_i32(interval.days);
                out.put_i32(interval.months);
                Ok(IsNull::No)
            }
            P::DbNull => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Each value encodes itself for the statement's parameter type.
        true
    }

    to_sql_checked!();
}

fn naive_time(h: u8, m: u8, s: u8, ns: u32) -> Result<chrono::NaiveTime, BoxError> {
    Ok(
        chrono::NaiveTime::from_hms_nano_opt(u32::from(h), u32::from(m), u32::from(s), ns)
            .ok_or("invalid time")?,
    )
}

/// Writes a range in PostgreSQL's binary form (flags, then each finite bound
/// with its length).
fn encode_range<T>(
    out: &mut BytesMut,
    lower: Option<(T, v4::RangeBoundKind)>,
    upper: Option<(T, v4::RangeBoundKind)>,
    write: impl Fn(T, &mut BytesMut),
) {
    const LB_INC: u8 = 0x02;
    const UB_INC: u8 = 0x04;
    const LB_INF: u8 = 0x08;
    const UB_INF: u8 = 0x10;
    let mut flags = 0;
    match &lower {
        None => flags |= LB_INF,
        Some((_, v4::RangeBoundKind::Inclusive)) => flags |= LB_INC,
        Some(_) => {}
    }
    match &upper {
        None => flags |= UB_INF,
        Some((_, v4::RangeBoundKind::Inclusive)) => flags |= UB_INC,
        Some(_) => {}
    }
    out.put_u8(flags);
    for (value, _) in [lower, upper].into_iter().flatten() {
        let mut bound = BytesMut::new();
        write(value, &mut bound);
        out.put_i32(i32::try_from(bound.len()).unwrap_or(i32::MAX));
        out.put_slice(&bound);
    }
}

/// jsonb or json as its JSON text.
struct Json(Vec<u8>);

impl<'a> FromSql<'a> for Json {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, rest)) => rest,
                _ => return Err("unsupported jsonb version".into()),
            }
        } else {
            raw
        };
        Ok(Self(text.to_vec()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSONB | Type::JSON)
    }
}

/// A value of a type Spin has no variant for: its raw bytes.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Self(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// An interval: microseconds, days, months.
struct Interval(v4::Interval);

impl<'a> FromSql<'a> for Interval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let micros = i64::from_be_bytes(raw.get(0..8).ok_or("short interval")?.try_into()?);
        let days = i32::from_be_bytes(raw.get(8..12).ok_or("short interval")?.try_into()?);
        let months = i32::from_be_bytes(raw.get(12..16).ok_or("short interval")?.try_into()?);
        Ok(Self(v4::Interval {
            micros,
            days,
            months,
        }))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

/// One bound of a range: absent (infinite) or a value with its kind.
type Bound<T> = Option<(T, v4::RangeBoundKind)>;

/// A range of `T`: lower and upper bound.
struct Range<T>((Bound<T>, Bound<T>));

impl<'a, T: FromSql<'a>> FromSql<'a> for Range<T> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let element = match ty.kind() {
            tokio_postgres::types::Kind::Range(element) => element.clone(),
            _ => return Err("not a range".into()),
        };
        let (&flags, mut rest) = raw.split_first().ok_or("empty range value")?;
        if flags & 0x01 != 0 {
            return Ok(Self((None, None)));
        }
        let mut bound = |infinite: u8, inclusive: u8| -> Result<Bound<T>, BoxError> {
            if flags & infinite != 0 {
                return Ok(None);
            }
            let len = i32::from_be_bytes(rest.get(0..4).ok_or("short range")?.try_into()?);
            let len = usize::try_from(len)?;
            let bytes = rest.get(4..4 + len).ok_or("short range")?;
            rest = &rest[4 + len..];
            let kind = if flags & inclusive != 0 {
                v4::RangeBoundKind::Inclusive
            } else {
                v4::RangeBoundKind::Exclusive
            };
            Ok(Some((T::from_sql(&element, bytes)?, kind)))
        };
        let lower = bound(0x08, 0x02)?;
        let upper = bound(0x10, 0x04)?;
        Ok(Self((lower, upper)))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), tokio_postgres::types::Kind::Range(element) if T::accepts(element))
    }
}

/// A numeric as base-10 text (Spin's `decimal`).
#[derive(Debug)]
struct Numeric(String);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        decode_numeric(raw).map(Self)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

impl ToSql for Numeric {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_slice(&encode_numeric(&self.0)?);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;

/// PostgreSQL's binary numeric (base-10000 digits, weight, sign, scale) as text.
fn decode_numeric(raw: &[u8]) -> Result<String, BoxError> {
    let word = |at: usize| -> Result<u16, BoxError> {
        Ok(u16::from_be_bytes(
            raw.get(at..at + 2).ok_or("short numeric")?.try_into()?,
        ))
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    let digits = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<Vec<_>, _>>()?;
    if sign == NUMERIC_NAN {
        return Ok("NaN".to_owned());
    }
    let digit = |index: i32| -> u16 {
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == NUMERIC_NEG {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for index in 0..=weight {
            if index == 0 {
                write!(text, "{}", digit(index))?;
            } else {
                write!(text, "{:04}", digit(index))?;
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut index = weight + 1;
        while fraction.len() < dscale {
            write!(fraction, "{:04}", digit(index))?;
            index += 1;
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Ok(text)
}

/// Base-10 text (`-123.4500`) as PostgreSQL's binary numeric.
fn encode_numeric(text: &str) -> Result<Vec<u8>, BoxError> {
    let text = text.trim();
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(format!("{text:?} is not a base-10 number").into());
    }
    let dscale = u16::try_from(frac_part.len())?;
    let int_part = int_part.trim_start_matches('0');
    let group = |chunk: &str| -> Result<u16, BoxError> { Ok(chunk.parse::<u16>()?) };
    let mut digits = Vec::new();
    let lead = int_part.len() % 4;
    if lead > 0 {
        digits.push(group(&int_part[..lead])?);
    }
    for start in (lead..int_part.len()).step_by(4) {
        digits.push(group(&int_part[start..start + 4])?);
    }
    let mut weight = i16::try_from(digits.len())? - 1;
    let mut padded = frac_part.to_owned();
    while padded.len() % 4 != 0 {
        padded.push('0');
    }
    for start in (0..padded.len()).step_by(4) {
        digits.push(group(&padded[start..start + 4])?);
    }
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    let mut out = Vec::with_capacity(8 + 2 * digits.len());
    out.extend_from_slice(&u16::try_from(digits.len())?.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    let sign = if negative && !digits.is_empty() {
        NUMERIC_NEG
    } else {
        0
    };
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for digit in digits {
        out.extend_from_slice(&digit.to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_round_trip_through_the_binary_form() {
        for text in [
            "0",
            "1",
            "-1",
            "123456789.123456789",
            "10000",
            "0.0001",
            "-0.5",
            "12.3400",
            "99999999.00000001",
        ] {
            let encoded = encode_numeric(text).unwrap();
            assert_eq!(decode_numeric(&encoded).unwrap(), text, "{text}");
        }
        assert!(encode_numeric("1e5").is_err());
        assert!(encode_numeric("").is_err());
        assert!(encode_numeric("12a").is_err());
    }
}

#[cfg(test)]
mod guest_tests {
    use std::sync::Arc;

    use v4::HostConnection as _;

    use super::*;
    use crate::instance::NoDispatch;
    use crate::pg_pool::test_postgres_url;

    fn state(allowed: &str) -> InstanceState {
        InstanceState::for_tests(&[allowed], Arc::new(NoDispatch))
    }

    /// `url` with its user, password or database replaced where given.
    fn altered(url: &str, user: Option<&str>, password: Option<&str>, db: Option<&str>) -> String {
        let config = url.parse::<tokio_postgres::Config>().unwrap();
        let Host::Tcp(host) = &config.get_hosts()[0] else {
            panic!("{url}: a TCP host is needed");
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = user.or(config.get_user()).unwrap_or("postgres");
        let password = password
            .map(str::to_owned)
            .or_else(|| {
                config
                    .get_password()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
            })
            .unwrap_or_default();
        let db = db.or(config.get_dbname()).unwrap_or("postgres");
        format!("postgres://{user}:{password}@{host}:{port}/{db}")
    }

    async fn open_error(state: &mut InstanceState, address: &str) -> v4::Error {
        match state.open(address.to_owned()).await.unwrap() {
            Ok(_) => panic!("{address}: opened"),
            Err(error) => error,
        }
    }

    #[tokio::test]
    async fn an_unreachable_database_is_connection_failed_not_a_trap() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut state = state("postgres://127.0.0.1:*");
        let address = format!("postgres://postgres@127.0.0.1:{port}/dol");
        let v4::Error::ConnectionFailed(message) = open_error(&mut state, &address).await else {
            panic!("not connection-failed");
        };
        assert!(message.contains("error connecting to server"), "{message}");
    }

    #[tokio::test]
    async fn a_host_not_allowed_is_refused_before_connecting() {
        let mut state = state("postgres://db.internal");
        let error = open_error(&mut state, "postgres://u@127.0.0.1:5432/dol").await;
        assert!(
            matches!(&error, v4::Error::ConnectionFailed(m)
                if m == "address postgres://127.0.0.1:5432 is not permitted"),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_hostaddr_not_allowed_is_refused_before_connecting() {
        // The driver connects to `hostaddr`; `host` only names the server.
        for (address, denied) in [
            (
                "postgres://u@db.internal:5432/dol?hostaddr=127.0.0.1",
                "postgres://127.0.0.1:5432",
            ),
            (
                "hostaddr=10.0.0.5 port=6379 user=x",
                "postgres://10.0.0.5:6379",
            ),
            ("hostaddr=::1 user=x", "postgres://[::1]:5432"),
        ] {
            let mut state = state("postgres://db.internal");
            let error = open_error(&mut state, address).await;
            assert!(
                matches!(&error, v4::Error::ConnectionFailed(m)
                    if *m == format!("address {denied} is not permitted")),
                "{address}: {error:?}"
            );
        }
        // An address the manifest names is still reachable by its address.
        let state = state("postgres://127.0.0.1:5432");
        assert_eq!(state.denied_pg_host("hostaddr=127.0.0.1 user=x"), None);
    }

    #[tokio::test]
    async fn an_unknown_database_is_connection_failed_with_postgresqls_message() {
        let Some(url) = test_postgres_url("unknown database") else {
            return;
        };
        let mut state = state("postgres://*:*");
        let address = altered(&url, None, None, Some("dol_no_such_db"));
        let v4::Error::ConnectionFailed(message) = open_error(&mut state, &address).await else {
            panic!("not connection-failed");
        };
        assert!(
            message.contains("database \"dol_no_such_db\" does not exist"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_wrong_password_is_connection_failed_with_postgresqls_message() {
        // The test process's own server checks passwords (a shared one may trust).
        let url = match crate::test_postgres::url() {
            Ok(url) => url,
            Err(error) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "PostgreSQL is needed in CI: {error}"
                );
                eprintln!("SKIPPING wrong password: no PostgreSQL: {error}");
                return;
            }
        };
        let mut state = state("postgres://*:*");
        let address = altered(&url, None, Some("not-the-password"), None);
        let v4::Error::ConnectionFailed(message) = open_error(&mut state, &address).await else {
            panic!("not connection-failed");
        };
        assert!(
            message.contains("password authentication failed for user \"postgres\""),
            "{message}"
        );
        // The right one opens.
        let address = altered(&url, None, Some(crate::test_postgres::PASSWORD), None);
        assert!(state.open(address).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_failed_statement_is_query_failed_with_the_db_error_breakdown() {
        let Some(url) = test_postgres_url("db error breakdown") else {
            return;
        };
        let mut state = state("postgres://*:*");
        let connection = state.open(url).await.unwrap().unwrap();
        let table = format!("guest_errors_{}", std::process::id());
        let run = |sql: String| (sql, Vec::new());
        for sql in [
            format!("CREATE TEMP TABLE {table} (id int CONSTRAINT {table}_pk PRIMARY KEY)"),
            format!("INSERT INTO {table} VALUES (1)"),
        ] {
            let (sql, params) = run(sql);
            let conn = Resource::new_borrow(connection.rep());
            state.execute(conn, sql, params).await.unwrap().unwrap();
        }
        let conn = Resource::new_borrow(connection.rep());
        let error = state
            .execute(conn, format!("INSERT INTO {table} VALUES (1)"), Vec::new())
            .await
            .unwrap()
            .unwrap_err();
        let v4::Error::QueryFailed(v4::QueryError::DbError(db)) = error else {
            panic!("not a db-error: {error:?}");
        };
        assert_eq!(db.code, "23505");
        assert_eq!(db.severity, "ERROR");
        assert!(db.message.contains("duplicate key"), "{}", db.message);
        assert!(
            db.extras
                .contains(&("constraint".to_owned(), format!("{table}_pk"))),
            "{:?}",
            db.extras
        );
        let v4::Error::QueryFailed(v4::QueryError::DbError(_)) = state
            .query(
                Resource::new_borrow(connection.rep()),
                "SELECT * FROM no_such_table_here".into(),
                Vec::new(),
            )
            .await
            .unwrap()
            .unwrap_err()
        else {
            panic!("a missing table is a db-error");
        };
        v4::HostConnection::drop(&mut state, connection)
            .await
            .unwrap();
    }

    /// A statement that comes again is run from the connection's cache (one
    /// prepared statement on the server, however often it runs), and one
    /// whose table changed under its plan fails once and is prepared afresh.
    #[tokio::test]
    async fn repeated_statements_are_prepared_once_and_a_stale_one_again() {
        let Some(url) = test_postgres_url("statement cache") else {
            return;
        };
        let mut state = state("postgres://*:*");
        let connection = state.open(url).await.unwrap().unwrap();
        let conn = || Resource::new_borrow(connection.rep());
        let table = format!("guest_cache_{}", std::process::id());
        state
            .execute(
                conn(),
                format!("CREATE TEMP TABLE {table} (id int)"),
                Vec::new(),
            )
            .await
            .unwrap()
            .unwrap();
        let insert = format!("INSERT INTO {table} VALUES ($1::INT)");
        let select = format!("SELECT * FROM {table}");
        for i in 0..3 {
            state
                .execute(conn(), insert.clone(), vec![v4::ParameterValue::Int32(i)])
                .await
                .unwrap()
                .unwrap();
            let rows = state
                .query(conn(), select.clone(), Vec::new())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(rows.rows.len(), usize::try_from(i + 1).unwrap());
        }
        let prepared = state
            .query(
                conn(),
                "SELECT count(*)::INT FROM pg_prepared_statements WHERE statement = $1::TEXT \
                 OR statement = $2::TEXT"
                    .into(),
                vec![
                    v4::ParameterValue::Str(insert.clone()),
                    v4::ParameterValue::Str(select.clone()),
                ],
            )
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(prepared.rows[0][0], v4::DbValue::Int32(2)),
            "{:?}",
            prepared.rows[0][0]
        );

        // The table gains a column: `SELECT *`'s cached plan is stale.
        state
            .execute(
                conn(),
                format!("ALTER TABLE {table} ADD COLUMN note text"),
                Vec::new(),
            )
            .await
            .unwrap()
            .unwrap();
        let first = state
            .query(conn(), select.clone(), Vec::new())
            .await
            .unwrap();
        let again = state
            .query(conn(), select.clone(), Vec::new())
            .await
            .unwrap();
        let rows = again.unwrap_or_else(|e| panic!("prepared afresh: {e:?} (first: {first:?})"));
        assert_eq!(rows.columns.len(), 2);
        v4::HostConnection::drop(&mut state, connection)
            .await
            .unwrap();
    }
}
