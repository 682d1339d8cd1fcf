//! Book-keeping that trails the answer (issue 13): the `requests` row, its
//! `usage_minute` share and the key's (and org's) usage counters of a
//! request that reserved nothing — a key and org without limits
//! ([`super::keys::counted_at_settlement`]) — are gathered per instance and
//! written together, one write transaction for every request an instance
//! answered in [`TRAIL_MS`], instead of one transaction each before its
//! answer.
//!
//! What may trail, and why only that (README "What a crash can lose"):
//! nothing here is a budget charge — a request admitted against a limit
//! reserved its worst case before its provider call and settles before its
//! answer, as does one whose org stores request bodies (the body row
//! names the request row) and one that ended more than the usage fold's
//! lag after its minute began (its share may go to the hour rows, decided
//! under the lock). A crash loses at most the bookings of the last
//! [`TRAIL_MS`]: telemetry rows and the counters of keys that have no limit
//! to enforce. A reader of one request by its id that does not find it
//! waits for the trailing batches ([`READ_RETRY_DELAYS_MS`]) before
//! answering that it does not exist.

use super::pipeline;
use super::store::{self, Settlement};
use super::telemetry::RequestRecord;
use crate::storage::SqlExecutor;

/// How long after an instance's first unwritten answer its bookings are
/// written, milliseconds: the batch then holds every request the instance
/// answered meanwhile (the same window as the flag-evaluation counts,
/// [`crate::observe::flag_counts::FLUSH_AFTER_MS`]).
pub const TRAIL_MS: u64 = 20;

/// How long a reader that looked for one request by its id and did not
/// find it waits before each new look, milliseconds: together more than
/// [`TRAIL_MS`] plus a busy instance's delay in running its timer, so a
/// request answered just before is found once its batch is written.
pub const READ_RETRY_DELAYS_MS: [u64; 3] = [25, 50, 100];

/// How long a writer that must come after every request answered before
/// it (erasing a subject's or an org's requests) waits for the trailing
/// batches, milliseconds: [`TRAIL_MS`] plus room for a busy instance.
pub const SETTLED_AFTER_MS: u64 = 100;

/// One answered request's book-keeping, owned, waiting for its batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    /// The key the request was served for.
    pub key_id: String,
    /// The key's org, whose counters are settled with the key's.
    pub org_id: Option<String>,
    /// Tokens the request used.
    pub tokens: u64,
    /// What it cost, micro-dollars.
    pub cost_micros: u64,
    /// When it was answered (unix seconds): the usage window it counts in.
    pub now_secs: u64,
    /// Its `requests` row.
    pub record: RequestRecord,
}

impl Booking {
    /// The booking of `settled` and `record` when they may trail the
    /// answer: nothing was reserved (no limit to enforce), the org stores
    /// no bodies (`stores_bodies`) and the record is not late for the
    /// usage fold; `None` when they must be written before the answer.
    pub fn trailing(
        settled: &Settlement<'_>,
        record: &RequestRecord,
        stores_bodies: bool,
    ) -> Option<Self> {
        if settled.want.is_some() || stores_bodies || store::may_be_folded(record) {
            return None;
        }
        Some(Self {
            key_id: settled.key_id.to_owned(),
            org_id: settled.org_id.map(str::to_owned),
            tokens: settled.tokens,
            cost_micros: settled.cost_micros,
            now_secs: settled.now_secs,
            record: record.clone(),
        })
    }

    /// The settlement this booking writes (nothing was reserved).
    pub fn settlement(&self) -> Settlement<'_> {
        Settlement {
            key_id: &self.key_id,
            org_id: self.org_id.as_deref(),
            want: None,
            reserved_at_secs: self.now_secs,
            tokens: self.tokens,
            cost_micros: self.cost_micros,
            now_secs: self.now_secs,
        }
    }
}

/// The bookings an instance answered and has not written yet.
#[derive(Debug, Default)]
pub struct Pending(Vec<Booking>);

impl Pending {
    /// Adds `booking`; returns whether nothing was pending before, i.e.
    /// whether the caller must schedule a [`write`] in [`TRAIL_MS`] (one is
    /// already scheduled otherwise).
    pub fn add(&mut self, booking: Booking) -> bool {
        let was_empty = self.0.is_empty();
        self.0.push(booking);
        was_empty
    }

    /// Takes what is pending, leaving this empty (bookings added while the
    /// taken batch is written schedule the next write).
    pub fn take(&mut self) -> Vec<Booking> {
        std::mem::take(&mut self.0)
    }

    /// How many bookings are pending.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Writes `bookings` in one write transaction ([`store::book_batch`]); when
/// that fails, each on its own as a request booked before its answer is
/// ([`pipeline::book_keep`]), so one row that cannot be written costs no
/// other. Returns the failures, for the log (the answers went out).
pub fn write(sql: &mut impl SqlExecutor, bookings: &[Booking]) -> Vec<String> {
    let mut warnings = Vec::new();
    if bookings.is_empty() {
        return warnings;
    }
    let Err(together) = store::book_batch(sql, bookings) else {
        return warnings;
    };
    warnings.push(format!(
        "writing {} trailing bookings together failed: {together}",
        bookings.len()
    ));
    for booking in bookings {
        pipeline::book_keep(sql, &booking.settlement(), &booking.record, &mut warnings);
    }
    warnings
}

/// Writes `booking`, when there is one, as its instance's batch would
/// (the pipelines' tests, after serving a request).
#[cfg(test)]
pub(crate) fn write_in_test(sql: &mut impl SqlExecutor, booking: Option<&Booking>) {
    if let Some(booking) = booking {
        let warnings = write(sql, std::slice::from_ref(booking));
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::keys::Reservation;
    use crate::storage::SqlValue;
    use crate::test_db::db;

    const NOW_MS: u64 = 1_796_000_000_000;

    /// A finished request `id` of `key`, answered at `NOW_MS`.
    fn record(id: &str, key: &str) -> RequestRecord {
        let mut r = crate::orgs::store_tests::record(id, key, NOW_MS.cast_signed());
        (r.prompt_tokens, r.completion_tokens) = (7, 3);
        r
    }

    fn booking(id: &str, key: &str, org: Option<&str>, cost_micros: u64) -> Booking {
        let record = record(id, key);
        let settled = Settlement {
            key_id: key,
            org_id: org,
            want: None,
            reserved_at_secs: NOW_MS / 1_000,
            tokens: 10,
            cost_micros,
            now_secs: NOW_MS / 1_000,
        };
        Booking::trailing(&settled, &record, false).unwrap()
    }

    fn minute_requests(db: &mut impl SqlExecutor) -> i64 {
        let rows = db
            .execute("SELECT COALESCE(SUM(requests), 0) FROM usage_minute", &[])
            .unwrap();
        match rows[0][0] {
            SqlValue::Integer(n) => n,
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_what_reserved_nothing_stores_no_bodies_and_is_on_time_may_trail() {
        let r = record("r1", "key_a");
        let b = booking("r1", "key_a", None, 5);
        let mut settled = b.settlement();
        assert!(Booking::trailing(&settled, &r, false).is_some());
        assert!(
            Booking::trailing(&settled, &r, true).is_none(),
            "the body row names the request row: booked before the answer"
        );
        let mut late = r.clone();
        late.latency_ms = 15 * 60 * 1_000;
        assert!(
            Booking::trailing(&settled, &late, false).is_none(),
            "a record late for the fold is placed under the lock"
        );
        settled.want = Some(Reservation::default());
        assert!(
            Booking::trailing(&settled, &r, false).is_none(),
            "a reservation is settled before the answer"
        );
    }

    #[test]
    fn pending_asks_for_one_write_per_batch() {
        let mut pending = Pending::default();
        assert!(pending.add(booking("r1", "key_a", None, 5)));
        assert!(!pending.add(booking("r2", "key_a", None, 5)));
        assert_eq!(pending.len(), 2);
        let batch = pending.take();
        assert_eq!(batch.len(), 2);
        assert!(pending.is_empty());
        assert!(pending.add(booking("r3", "key_a", None, 5)));
    }

    #[test]
    fn a_batch_writes_every_row_and_counts_every_request_once_in_one_transaction() {
        let mut db = db();
        let mut batch = [
            booking("r1", "key_b", Some("acme"), 5),
            booking("r2", "key_a", None, 7),
            booking("r3", "key_b", Some("acme"), 11),
            booking("r4", "key_b", Some("acme"), 13),
        ];
        // r3 in another latency bucket, r4 with a quality score: one
        // usage row, added up column by column.
        batch[2].record.latency_ms = 5_000;
        batch[3].record.quality = Some(0.5);
        let warnings = write(&mut db, &batch);
        assert!(warnings.is_empty(), "{warnings:?}");
        for id in ["r1", "r2", "r3", "r4"] {
            let stored = store::request(&mut db, id).unwrap().unwrap();
            assert_eq!(
                stored,
                batch.iter().find(|b| b.record.id == id).unwrap().record
            );
        }
        assert_eq!(minute_requests(&mut db), 4);
        let a = store::usage(&mut db, "key_a").unwrap();
        assert_eq!(
            (a.window_requests, a.window_tokens, a.spent_micros),
            (1, 10, 7)
        );
        let b = store::usage(&mut db, "key_b").unwrap();
        assert_eq!(
            (b.window_requests, b.window_tokens, b.spent_micros),
            (3, 30, 29)
        );
        let org = store::usage(&mut db, &store::org_usage_key("acme")).unwrap();
        assert_eq!((org.window_requests, org.spent_micros), (3, 29));
        // The same counters as three requests booked one by one.
        let mut apart = crate::test_db::db();
        for b in &batch {
            store::settle_and_record(&mut apart, &b.settlement(), &b.record).unwrap();
        }
        for row in ["key_a", "key_b", "org:acme"] {
            assert_eq!(
                store::usage(&mut db, row).unwrap(),
                store::usage(&mut apart, row).unwrap(),
                "{row}"
            );
        }
        let aggregates = "SELECT * FROM usage_minute ORDER BY minute, tier, provider, model, \
                          outcome, variant, org_id";
        assert_eq!(
            format!("{:?}", db.execute(aggregates, &[]).unwrap()),
            format!("{:?}", apart.execute(aggregates, &[]).unwrap()),
        );
    }

    #[test]
    fn a_batch_that_fails_is_written_booking_by_booking_and_loses_only_the_bad_one() {
        let mut db = db();
        // r2's id is taken: the batch's transaction fails and rolls back.
        store::record(&mut db, &record("r2", "key_other")).unwrap();
        let batch = [
            booking("r1", "key_a", None, 5),
            booking("r2", "key_a", None, 7),
            booking("r3", "key_a", None, 11),
        ];
        let warnings = write(&mut db, &batch);
        assert!(
            warnings[0].starts_with("writing 3 trailing bookings together failed"),
            "{warnings:?}"
        );
        assert!(store::request(&mut db, "r1").unwrap().is_some());
        assert!(store::request(&mut db, "r3").unwrap().is_some());
        assert_eq!(
            store::request(&mut db, "r2").unwrap().unwrap().key_id,
            "key_other",
            "the row that was there is untouched"
        );
        // Every request is charged to its key once, even the one whose
        // telemetry row could not be written.
        let a = store::usage(&mut db, "key_a").unwrap();
        assert_eq!((a.window_requests, a.spent_micros), (3, 23));
        assert_eq!(minute_requests(&mut db), 3, "r2's first row and r1, r3");
    }

    #[test]
    fn nothing_to_write_takes_no_transaction() {
        let mut db = db();
        assert!(write(&mut db, &[]).is_empty());
    }
}
