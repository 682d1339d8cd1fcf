//! The gateway's book-keeping that trails the answer
//! (`dol_core::gateway::bookings`): an instance gathers the bookings of the
//! requests it answered and writes them in one transaction
//! `bookings::TRAIL_MS` after the first, on a task that outlives the
//! response (`dol_spin_platform::service::run_after`; Spin and `dol up`
//! keep the instance until it ends).

use std::cell::RefCell;

use dol_core::gateway::bookings::{self, Booking, Pending};
use dol_spin_platform::{self as platform, SpinSql};

thread_local! {
    /// This instance's answered requests whose bookings are not written yet.
    static PENDING: RefCell<Pending> = RefCell::default();
}

/// Queues `booking` for this instance's next batch, scheduling the batch
/// when it is the first one pending. Call it from the request's task,
/// after its answer.
pub fn trail(booking: Booking) {
    if PENDING.with_borrow_mut(|pending| pending.add(booking)) {
        platform::service::run_after(bookings::TRAIL_MS, write_pending);
    }
}

/// Writes this instance's pending bookings now (the scheduled batch then
/// finds nothing, or only what was answered since).
pub fn write_pending() {
    let batch = PENDING.with_borrow_mut(Pending::take);
    if batch.is_empty() {
        return;
    }
    match platform::open_db() {
        Ok(db) => {
            for warning in bookings::write(&mut SpinSql(&db), &batch) {
                eprintln!("generate: {warning}");
            }
        }
        Err(e) => eprintln!(
            "generate: {} trailing bookings not written, the database did not open: {e:#}",
            batch.len()
        ),
    }
}

/// Looks for one request by its id with `find` (`None`: not there), and
/// when it is not there writes this instance's pending bookings and waits
/// for the other instances' batches ([`bookings::READ_RETRY_DELAYS_MS`])
/// before looking again: a request answered just before is then found.
pub async fn find_answered<T, E>(
    mut find: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    if let Some(found) = find()? {
        return Ok(Some(found));
    }
    write_pending();
    for delay_ms in bookings::READ_RETRY_DELAYS_MS {
        if let Some(found) = find()? {
            return Ok(Some(found));
        }
        crate::timer::sleep(delay_ms).await;
    }
    find()
}

/// Writes this instance's pending bookings and waits until the other
/// instances' batches pending now are written
/// ([`bookings::SETTLED_AFTER_MS`]): an erasure then also takes the
/// requests answered just before it.
pub async fn settled() {
    write_pending();
    crate::timer::sleep(bookings::SETTLED_AFTER_MS).await;
}
