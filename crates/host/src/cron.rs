//! The cron trigger, as the Spin cron plugin runs it: each `[[trigger.cron]]`
//! fires `handle-cron-event` at its schedule's times, on an injectable clock.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::app::LoadedApp;
use crate::clock::Clock;

/// One firing of a cron trigger, published for tests and logs.
#[derive(Debug, Clone)]
pub struct CronEvent {
    /// The component that ran.
    pub component: String,
    /// The scheduled time, unix seconds (the `metadata.timestamp` passed in).
    pub timestamp: u64,
    /// `Err` with the reason when the handler failed.
    pub outcome: Result<(), String>,
}

/// Each trigger's next firing (by index), so a test knows how many
/// triggers a clock move fires ([`due_by`]).
pub(crate) type Pending = Arc<std::sync::Mutex<Vec<Option<chrono::DateTime<chrono::Utc>>>>>;

/// The first firing of each of `triggers` after `started`.
pub(crate) fn pending(
    triggers: &[dol_manifest::manifest::CronTrigger],
    started: chrono::DateTime<chrono::Utc>,
) -> Pending {
    Arc::new(std::sync::Mutex::new(
        triggers
            .iter()
            .map(|t| t.schedule.next_after(started))
            .collect(),
    ))
}

/// How many triggers' next firing is at or before `at`.
pub(crate) fn due_by(pending: &Pending, at: chrono::DateTime<chrono::Utc>) -> usize {
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|next| next.is_some_and(|n| n <= at))
        .count()
}

/// Where a trigger reports: its firings, and its next firing.
pub(crate) struct Channels {
    /// Every firing with its outcome.
    pub events: broadcast::Sender<CronEvent>,
    /// Every trigger's next firing.
    pub pending: Pending,
}

/// Runs trigger `index` until shutdown.
///
/// `started` is the host's start time, read before this task was spawned: the
/// first firing is the schedule's first time after it, even if the clock moved
/// on before the task first ran (tests move it right after start-up).
pub(crate) async fn run_trigger(
    app: Arc<LoadedApp>,
    index: usize,
    clock: Arc<dyn Clock>,
    started: chrono::DateTime<chrono::Utc>,
    channels: Channels,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(trigger) = app.manifest.cron_triggers.get(index) else {
        return;
    };
    let component = trigger.component.clone();
    let mut after = started;
    loop {
        let Some(next) = trigger.schedule.next_after(after) else {
            tracing::info!("cron trigger for {component}: schedule has no more times");
            return;
        };
        tokio::select! {
            () = clock.sleep_until(next) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let timestamp = u64::try_from(next.timestamp()).unwrap_or(0);
        let outcome = app
            .handle_cron(&component, timestamp)
            .await
            .map_err(|error| format!("{error:#}"));
        match &outcome {
            Ok(()) => tracing::info!("cron {component} at {next} ok"),
            Err(error) => tracing::error!("cron {component} at {next}: {error}"),
        }
        // Times missed while the handler ran (or while the host was suspended)
        // are skipped rather than fired in a burst, like a cron daemon. Read
        // the clock before announcing the event: a listener that moves the
        // clock on as soon as it hears of it must not make the next tick
        // look missed.
        after = next.max(clock.now());
        // The next firing is known before this one is announced, so a
        // listener counting due triggers never sees a stale one.
        if let Some(slot) = channels
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(index)
        {
            *slot = trigger.schedule.next_after(after);
        }
        // Nobody listening is the normal case outside tests.
        drop(channels.events.send(CronEvent {
            component: component.clone(),
            timestamp,
            outcome,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use dol_manifest::manifest::CronTrigger;
    use dol_manifest::schedule::Schedule;

    fn trigger(expression: &str) -> CronTrigger {
        CronTrigger {
            component: "scans".to_owned(),
            cron_expression: expression.to_owned(),
            schedule: Schedule::parse(expression).unwrap(),
        }
    }

    #[test]
    fn a_clock_move_fires_every_trigger_due_by_then() {
        let triggers = [trigger("0 * * * * *"), trigger("0 */5 * * * *")];
        let at = |m, s| chrono::Utc.with_ymd_and_hms(2026, 12, 5, 10, m, s).unwrap();
        let pending = pending(&triggers, at(2, 30));
        assert_eq!(due_by(&pending, at(2, 59)), 0);
        // Only the minute trigger at 10:03; both at 10:05 (and later).
        assert_eq!(due_by(&pending, at(3, 0)), 1);
        assert_eq!(due_by(&pending, at(5, 0)), 2);
    }
}
