//! The scan lease on both backends (see `crate::test_db`), with an injected
//! clock: ticks run once, a lapsed lease is taken over, a manual run is
//! refused while the lease is held, and two connections racing for one tick
//! never both win.

use std::sync::{Arc, Barrier};

use super::*;
use crate::test_db::db;

/// 2027-01-15 08:00:00 UTC, a minute tick.
const TICK: u64 = 1_800_000_000;
const NOW: i64 = 1_800_000_000_000;

fn granted(a: Acquired) -> Lease {
    match a {
        Acquired::Granted(lease) => lease,
        other => panic!("expected the lease, got {other:?}"),
    }
}

#[test]
fn a_tick_runs_once_and_the_lease_is_released_at_the_end() {
    let mut db = db();
    let lease = granted(acquire(&mut db, "alerts", "a", Trigger::Tick(TICK), NOW).unwrap());
    assert_eq!(lease.expires_at, NOW + 50_000);
    // Another replica's trigger for the same tick, during the run: held.
    assert_eq!(
        acquire(&mut db, "alerts", "b", Trigger::Tick(TICK), NOW + 10).unwrap(),
        Acquired::Held(lease.clone())
    );
    assert!(release(&mut db, &lease, NOW + 1_000).unwrap());
    // After the run: the tick is done, for every replica.
    assert_eq!(
        acquire(&mut db, "alerts", "b", Trigger::Tick(TICK), NOW + 2_000).unwrap(),
        Acquired::TickDone
    );
    assert_eq!(
        acquire(
            &mut db,
            "alerts",
            "b",
            Trigger::Tick(TICK - 60),
            NOW + 2_000
        )
        .unwrap(),
        Acquired::TickDone,
        "an older tick never runs after a newer one"
    );
    // Other scans have their own lease; the next tick runs.
    granted(acquire(&mut db, "rollouts", "b", Trigger::Tick(TICK), NOW + 2_000).unwrap());
    let next = granted(
        acquire(
            &mut db,
            "alerts",
            "b",
            Trigger::Tick(TICK + 60),
            NOW + 60_000,
        )
        .unwrap(),
    );
    assert_eq!(next.holder, "b");
    let stored = current(&mut db, "alerts").unwrap().unwrap();
    assert_eq!(stored, next);
}

#[test]
fn a_dead_runs_lease_lapses_and_is_taken_over() {
    let mut db = db();
    // Replica a takes the tick and dies without releasing.
    let dead = granted(acquire(&mut db, "alerts", "a", Trigger::Tick(TICK), NOW).unwrap());
    // Just before expiry the lease still holds, even for the next tick.
    assert!(matches!(
        acquire(
            &mut db,
            "alerts",
            "b",
            Trigger::Tick(TICK + 60),
            dead.expires_at - 1
        )
        .unwrap(),
        Acquired::Held(_)
    ));
    // At expiry the next tick takes it over.
    let b = granted(
        acquire(
            &mut db,
            "alerts",
            "b",
            Trigger::Tick(TICK + 60),
            dead.expires_at,
        )
        .unwrap(),
    );
    // The dead run's late release changes nothing: b keeps the lease.
    assert!(!release(&mut db, &dead, NOW + 55_000).unwrap());
    assert_eq!(current(&mut db, "alerts").unwrap().unwrap(), b);
    // A manual run is refused while b holds it.
    assert_eq!(
        acquire(&mut db, "alerts", "m", Trigger::Manual, NOW + 55_001).unwrap(),
        Acquired::Held(b.clone())
    );
    assert!(release(&mut db, &b, NOW + 56_000).unwrap());
}

#[test]
fn manual_runs_are_refused_while_any_run_holds_the_lease() {
    let mut db = db();
    let m = granted(acquire(&mut db, "report", "m1", Trigger::Manual, NOW).unwrap());
    assert_eq!(
        m.expires_at,
        NOW + 600_000,
        "the daily scans get 10 minutes"
    );
    // A second manual run and the cron tick are both refused.
    assert_eq!(
        acquire(&mut db, "report", "m2", Trigger::Manual, NOW + 5).unwrap(),
        Acquired::Held(m.clone())
    );
    assert_eq!(
        acquire(&mut db, "report", "c", Trigger::Tick(TICK), NOW + 5).unwrap(),
        Acquired::Held(m.clone())
    );
    assert!(release(&mut db, &m, NOW + 10).unwrap());
    // Manual runs do not claim ticks: the tick still runs afterwards …
    let c = granted(acquire(&mut db, "report", "c", Trigger::Tick(TICK), NOW + 20).unwrap());
    assert!(release(&mut db, &c, NOW + 30).unwrap());
    // … and manual runs run after a tick, any number of times.
    for holder in ["m3", "m4"] {
        let m = granted(acquire(&mut db, "report", holder, Trigger::Manual, NOW + 40).unwrap());
        assert!(release(&mut db, &m, NOW + 40).unwrap());
    }
    assert!(
        current(&mut db, "report")
            .unwrap()
            .unwrap()
            .holder
            .is_empty()
    );
    assert_eq!(current(&mut db, "probes").unwrap(), None);
}

#[test]
fn ticks_claimed_before_the_lease_table_carry_over() {
    let mut db = crate::test_db::empty();
    let before = crate::migrate::MIGRATIONS
        .iter()
        .position(|m| m.version == 19)
        .unwrap();
    crate::migrate::apply_list(&mut db, &crate::migrate::MIGRATIONS[..before], 1).unwrap();
    db.run(
        "INSERT INTO control (key, value, updated_by, updated_at) \
         VALUES ('scan_claim:alerts', ?, 'scans', 5)",
        &[SqlValue::Text(TICK.to_string())],
    );
    crate::migrate::apply(&mut db, 1).unwrap();
    assert_eq!(
        acquire(&mut db, "alerts", "a", Trigger::Tick(TICK), NOW).unwrap(),
        Acquired::TickDone
    );
    granted(acquire(&mut db, "alerts", "a", Trigger::Tick(TICK + 60), NOW).unwrap());
}

#[test]
fn connections_racing_for_one_tick_run_it_once() {
    let open = crate::test_db::shared("scan-lease-race");
    crate::migrate::apply(&mut open(), 1).unwrap();
    for round in 0..5u64 {
        let tick = TICK + 60 * round;
        let now = NOW + 60_000 * i64::try_from(round).unwrap();
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                // Opened before the thread: a failed open cannot strand the
                // others at the barrier.
                let (mut db, barrier) = (open(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    let holder = format!("replica-{i}");
                    acquire(&mut db, "alerts", &holder, Trigger::Tick(tick), now).unwrap()
                })
            })
            .collect();
        let outcomes: Vec<Acquired> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<&Lease> = outcomes
            .iter()
            .filter_map(|a| match a {
                Acquired::Granted(l) => Some(l),
                _ => None,
            })
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
        for o in &outcomes {
            if let Acquired::Held(l) = o {
                assert_eq!(l, winners[0], "losers see the winner's lease");
            }
        }
        assert!(release(&mut open(), winners[0], now + 1).unwrap());
    }
}

#[test]
fn a_refused_run_names_the_scan_and_the_expiry() {
    let held = Lease {
        scan: "alerts".into(),
        holder: "a".into(),
        expires_at: NOW + 49_500,
    };
    let (err, body) = refusal("alerts", &Acquired::Held(held.clone()), NOW);
    assert_eq!(err.status(), 409);
    assert_eq!(
        err.headers,
        vec![("Retry-After".to_owned(), "50".to_owned())]
    );
    assert_eq!(body["error"]["code"], "conflict");
    assert_eq!(body["lease"]["scan"], "alerts");
    assert_eq!(body["lease"]["expiresAt"], NOW + 49_500);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`alerts`") && message.contains(&(NOW + 49_500).to_string()));
    // A lease lapsing now asks for no wait.
    let held = Acquired::Held(held);
    assert_eq!(refusal("alerts", &held, NOW + 60_000).0.headers[0].1, "0");
    let (_, done) = refusal("probes", &Acquired::TickDone, NOW);
    assert_eq!(done["lease"]["scan"], "probes");
    assert_eq!(done["lease"]["expiresAt"], NOW);
}
