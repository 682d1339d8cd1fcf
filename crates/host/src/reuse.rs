//! Instance reuse for WASI 0.3 HTTP components (`wasi:http/handler@0.3.0`),
//! as Spin serves them: an instance answers up to
//! [`InstanceReuse::max_requests`] requests, up to
//! [`InstanceReuse::max_concurrent`] at a time, and is dropped after
//! [`InstanceReuse::idle_timeout`] without one. WASI 0.2 components keep one
//! instance per request (their `incoming-handler` cannot be called twice),
//! on Spin and here.
//!
//! The dispatch is wasmtime-wasi-http's `handler::ProxyHandler` (the one
//! Spin's HTTP trigger uses); this module supplies what it asks of a host:
//! how to make an instance, when it may take another request, and when it
//! expires. Each serving thread has its own handler per component, so an
//! instance and its requests stay on the thread that owns the connection.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::StoreContextMut;
use wasmtime::component::GuestTaskId;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, Proxy, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpView, handler::ProxyHandler};

use crate::app::LoadedApp;
use crate::instance::InstanceState;

/// How WASI 0.3 instances are reused: Spin's `spin up` options
/// `--max-instance-reuse-count`, `--max-instance-concurrent-reuse-count` and
/// `--idle-instance-timeout`, with Spin's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Requests one instance answers before it is dropped (at least 1).
    pub max_requests: usize,
    /// Requests one instance answers at the same time (at least 1).
    pub max_concurrent: usize,
    /// How long an idle instance is kept for the next request.
    pub idle_timeout: IdleTimeout,
}

impl Default for InstanceReuse {
    fn default() -> Self {
        // Spin 4.1's defaults for WASIp3 components (`spin up --help`).
        Self {
            max_requests: 128,
            max_concurrent: 16,
            idle_timeout: IdleTimeout::fixed(Duration::from_secs(1)),
        }
    }
}

/// How long an idle instance is kept: one duration, or a range from which
/// each new instance draws its own (so instances made together do not all
/// expire together), as Spin's `--idle-instance-timeout` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeout {
    /// The shortest.
    pub min: Duration,
    /// The longest (equal to `min` for one duration).
    pub max: Duration,
}

impl IdleTimeout {
    /// Always `duration`.
    pub fn fixed(duration: Duration) -> Self {
        Self {
            min: duration,
            max: duration,
        }
    }

    /// A duration in the range for a new instance; `seed` spreads them.
    fn draw(self, seed: u64) -> Duration {
        let span = self.max.saturating_sub(self.min).as_nanos();
        if span == 0 {
            return self.min;
        }
        // splitmix64: a well-spread draw from any seed, no RNG needed.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let offset = u64::try_from(u128::from(z) % (span + 1)).unwrap_or(0);
        self.min + Duration::from_nanos(offset)
    }
}

impl std::str::FromStr for IdleTimeout {
    type Err = String;

    /// `2`, `2s`, `500ms`, `250us`/`250μs`, `100ns`, or a range `1..8s`
    /// (a bound without a unit takes the other bound's).
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let Some((low, high)) = text.split_once("..") else {
            return duration(text, None).map(Self::fixed);
        };
        let high_unit = unit_of(high.trim());
        let (min, max) = (
            duration(low.trim(), high_unit)?,
            duration(high.trim(), None)?,
        );
        if min > max {
            return Err(format!(
                "the range {text:?} runs backwards: write the shorter duration first"
            ));
        }
        Ok(Self { min, max })
    }
}

/// The units a duration may end in, longest first (so `ms` is not read as `s`).
const UNITS: [(&str, u64); 5] = [
    ("ms", 1_000_000),
    ("us", 1_000),
    ("\u{3bc}s", 1_000),
    ("ns", 1),
    ("s", 1_000_000_000),
];

/// The unit `text` ends in, if any.
fn unit_of(text: &str) -> Option<&'static str> {
    UNITS
        .iter()
        .find(|(unit, _)| text.ends_with(unit))
        .map(|(unit, _)| *unit)
}

/// `text` as a duration: a whole number with one of [`UNITS`], or with
/// `default_unit` (seconds when there is none) when it has no unit.
fn duration(text: &str, default_unit: Option<&str>) -> Result<Duration, String> {
    let (digits, unit) = match unit_of(text) {
        Some(unit) => (&text[..text.len() - unit.len()], unit),
        None => (text, default_unit.unwrap_or("s")),
    };
    let nanos_per = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map_or(1_000_000_000, |(_, nanos)| *nanos);
    let count: u64 = digits.parse().map_err(|_| {
        format!(
            "expected a whole number of seconds, or one suffixed by `s`, `ms`, `us`, `\u{3bc}s` \
             or `ns`, or a range such as `1..8s`; got {text:?}"
        )
    })?;
    count
        .checked_mul(nanos_per)
        .map(Duration::from_nanos)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Makes the instances of one WASI 0.3 component for one serving thread.
pub(crate) struct Reuse {
    /// The app, weakly: it owns the handlers that own this.
    app: Weak<LoadedApp>,
    component: String,
    pre: ServicePre<InstanceState>,
    /// One request per instance, dropped as soon as it is done.
    single_use: bool,
}

/// The per-thread request dispatcher of one WASI 0.3 component.
pub(crate) type Handler = ProxyHandler<Reuse>;

/// A dispatcher for `component` of `app`, which instantiates `pre`. With
/// `single_use` (requests off the serving threads) its instance takes one
/// request only and is dropped when that is done.
pub(crate) fn handler(
    app: &Arc<LoadedApp>,
    component: &str,
    pre: ServicePre<InstanceState>,
    single_use: bool,
) -> Handler {
    ProxyHandler::new(Reuse {
        app: Arc::downgrade(app),
        component: component.to_owned(),
        pre,
        single_use,
    })
}

impl HandlerState for Reuse {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiration, Worker>> {
        let app = self
            .app
            .upgrade()
            .ok_or_else(|| wasmtime::format_err!("the app has stopped"))?;
        let component = app
            .components
            .get(&self.component)
            .ok_or_else(|| wasmtime::format_err!("no component {} in the app", self.component))?;
        tracing::debug!("component {}: new instance", self.component);
        let mut store = app.new_store(component);
        let limits = &app.limits;
        // Instantiation is bounded like a request: a start function that
        // never returns must not hold the worker.
        let proxy = tokio::time::timeout(
            limits.request_timeout,
            self.pre.instantiate_async(&mut store),
        )
        .await
        .map_err(|_| {
            wasmtime::format_err!(
                "instantiation exceeded the request time limit of {:?}",
                limits.request_timeout
            )
        })??;
        let mut reuse = limits.reuse.clone();
        if self.single_use {
            reuse.max_requests = 1;
            reuse.idle_timeout = IdleTimeout::fixed(Duration::ZERO);
        }
        let overdue = store.data().overdue.clone();
        Ok(Instance {
            store,
            proxy: Proxy::P3(proxy),
            view: InstanceState::http,
            expiration: Expiration::new(
                limits.request_timeout,
                reuse.idle_timeout.draw(instance_seed()),
                overdue.clone(),
            ),
            state: Worker {
                component: self.component.clone(),
                reuse,
                request_timeout: limits.request_timeout,
                overdue,
            },
        })
    }
}

/// A different number for every instance made in this process.
fn instance_seed() -> u64 {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    made ^ (u64::from(clock) << 32)
}

/// wasmtime's message for an instance whose worker task was dropped
/// (`handler.rs`'s `Dropper`).
const WORKER_DROPPED: &str = "worker panicked";

/// One instance's reuse bookkeeping.
pub(crate) struct Worker {
    component: String,
    reuse: InstanceReuse,
    request_timeout: Duration,
    /// The instance's [`InstanceState::overdue`].
    overdue: Arc<AtomicBool>,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse.max_requests {
            ShouldAccept::Never
        } else if concurrent >= self.reuse.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, InstanceState>,
        (): (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        // The epoch callback's yield and transaction budgets count per
        // request, not per instance.
        store.data_mut().request_started();
        // Past its limit the request gets its 500 (the dispatcher's doing)
        // and the instance is marked overdue, which stops it with whatever
        // it still runs for that request (a WASI 0.3 task goes on after an
        // expiry otherwise, and could still write, e.g. settle a charge,
        // after the client was told it failed).
        let (limit, overdue) = (self.request_timeout, self.overdue.clone());
        Box::pin(async move {
            tokio::time::sleep(limit).await;
            overdue.store(true, Ordering::Relaxed);
        })
    }

    fn drop(&self, store: wasmtime::Store<InstanceState>, result: wasmtime::Result<()>) {
        drop(store);
        // A request that failed has had its 500 already; what is left to
        // say is why the instance ended (trap, time limit). wasmtime reports
        // an instance whose worker task was dropped — every kept instance
        // when the host shuts down — as "worker panicked"; a real panic has
        // been printed by the panic hook already.
        match result {
            Ok(()) => {}
            Err(error) if error.to_string() == WORKER_DROPPED => {
                tracing::debug!("component {}: instance dropped", self.component);
            }
            Err(error) => {
                tracing::warn!("component {}: instance failed: {error:#}", self.component);
            }
        }
    }
}

/// When an instance ends: idle for the idle timeout, or its requests (or
/// the work it does after answering) past the request time limit.
pub(crate) struct Expiration {
    request_timeout: Duration,
    idle_timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The instance's [`InstanceState::overdue`]: one request past its limit.
    overdue: Arc<AtomicBool>,
}

impl Expiration {
    fn new(request_timeout: Duration, idle_timeout: Duration, overdue: Arc<AtomicBool>) -> Self {
        Self {
            request_timeout,
            idle_timeout,
            timer: Box::pin(tokio::time::sleep(request_timeout)),
            overdue,
        }
    }
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        since: Instant,
    ) -> Poll<()> {
        if self.overdue.load(Ordering::Relaxed) {
            return Poll::Ready(());
        }
        let allowed = match status {
            WorkerStatus::Idle => self.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.request_timeout,
        };
        let deadline = tokio::time::Instant::from_std(since + allowed);
        if tokio::time::Instant::now() >= deadline {
            return Poll::Ready(());
        }
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_timeouts_are_read_as_spin_reads_them() {
        let fixed = |text: &str| text.parse::<IdleTimeout>().map(|t| (t.min, t.max));
        let ms = Duration::from_millis;
        assert_eq!(fixed("2"), Ok((ms(2000), ms(2000))));
        assert_eq!(fixed("2s"), Ok((ms(2000), ms(2000))));
        assert_eq!(fixed("500ms"), Ok((ms(500), ms(500))));
        assert_eq!(
            fixed("250us"),
            Ok((Duration::from_micros(250), Duration::from_micros(250)))
        );
        assert_eq!(
            fixed("250\u{3bc}s"),
            Ok((Duration::from_micros(250), Duration::from_micros(250)))
        );
        assert_eq!(
            fixed("7ns"),
            Ok((Duration::from_nanos(7), Duration::from_nanos(7)))
        );
        assert_eq!(fixed("0"), Ok((ms(0), ms(0))));
        // A range: a bound without a unit takes the other's.
        assert_eq!(fixed("1..8s"), Ok((ms(1000), ms(8000))));
        assert_eq!(fixed("100ms..2s"), Ok((ms(100), ms(2000))));
        assert_eq!(fixed("100..200ms"), Ok((ms(100), ms(200))));
        for bad in ["abc", "", "1.5s", "-1", "2m", "8..1s", "1..", "..2s"] {
            let error = fixed(bad).unwrap_err();
            assert!(!error.is_empty(), "{bad}");
        }
        assert!(fixed("abc").unwrap_err().contains("\"abc\""));
        assert!(fixed("8..1s").unwrap_err().contains("backwards"));
    }

    #[test]
    fn every_instance_draws_its_idle_timeout_from_the_range() {
        let range: IdleTimeout = "1..8s".parse().unwrap();
        let drawn: Vec<Duration> = (0..200).map(|seed| range.draw(seed)).collect();
        assert!(drawn.iter().all(|d| (range.min..=range.max).contains(d)));
        // Spread, not one value: more than 100 distinct draws out of 200.
        let distinct: std::collections::BTreeSet<_> = drawn.iter().collect();
        assert!(distinct.len() > 100, "{}", distinct.len());
        let fixed = IdleTimeout::fixed(Duration::from_secs(1));
        assert!((0..50).all(|seed| fixed.draw(seed) == Duration::from_secs(1)));
    }

    #[test]
    fn an_instance_takes_requests_up_to_its_reuse_and_concurrency_limits() {
        let worker = Worker {
            component: "c".into(),
            reuse: InstanceReuse {
                max_requests: 3,
                max_concurrent: 2,
                idle_timeout: IdleTimeout::fixed(Duration::from_secs(1)),
            },
            request_timeout: Duration::from_secs(60),
            overdue: Arc::default(),
        };
        assert!(matches!(
            worker.should_accept_request(0, 0),
            ShouldAccept::Yes
        ));
        assert!(matches!(
            worker.should_accept_request(1, 1),
            ShouldAccept::Yes
        ));
        assert!(matches!(
            worker.should_accept_request(2, 2),
            ShouldAccept::No
        ));
        assert!(matches!(
            worker.should_accept_request(0, 3),
            ShouldAccept::Never
        ));
    }
}
