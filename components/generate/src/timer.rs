//! Timers on the wasi monotonic clock, driven by spin-sdk's executor.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;

use futures::future::{Either, select};
use wasi::clocks::monotonic_clock;

/// A timer on the wasi monotonic clock, driven by spin-sdk's executor.
struct Sleep {
    deadline_ns: u64,
    /// Keeps the clock subscription registered with the executor until the timer fires or is dropped.
    registration: Option<spin_executor::CancelOnDropToken>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if monotonic_clock::now() >= self.deadline_ns {
            self.registration = None;
            return Poll::Ready(());
        }
        let pollable = monotonic_clock::subscribe_instant(self.deadline_ns);
        self.registration =
            Some(spin_executor::push_waker_and_get_token(pollable, cx.waker().clone()).into());
        Poll::Pending
    }
}

/// Waits `ms` milliseconds.
pub fn sleep(ms: u64) -> impl Future<Output = ()> {
    Sleep {
        deadline_ns: monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000)),
        registration: None,
    }
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
