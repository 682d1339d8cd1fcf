//! Timers on the WASI 0.3 monotonic clock (`wait-for`, an async import).

use std::future::Future;
use std::pin::pin;

use futures::future::{Either, select};
use wasip3::clocks::monotonic_clock;

/// Waits `ms` milliseconds.
pub async fn sleep(ms: u64) {
    monotonic_clock::wait_for(ms.saturating_mul(1_000_000)).await;
}

/// Runs `fut` for at most `ms` milliseconds.
pub async fn timeout<T>(ms: u64, fut: impl Future<Output = T>) -> Option<T> {
    let fut = pin!(fut);
    let timer = pin!(sleep(ms));
    match select(fut, timer).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(((), _)) => None,
    }
}
