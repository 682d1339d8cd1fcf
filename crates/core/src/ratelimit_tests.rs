//! [`hit`] on both backends (see `crate::test_db`): the window's count, its
//! reset, and concurrent connections never admitting more than the limit.

use std::sync::{Arc, Barrier};

use super::*;
use crate::test_db::db;

#[test]
fn counts_up_to_the_limit_then_denies_until_the_next_window() {
    let mut db = db();
    for n in 1..=3 {
        assert_eq!(
            hit(&mut db, "c", 125, 3, 60).unwrap(),
            Decision::Allow(Window {
                start_secs: 120,
                count: n
            })
        );
    }
    assert_eq!(
        hit(&mut db, "c", 130, 3, 60).unwrap(),
        Decision::Deny {
            retry_after_secs: 50
        }
    );
    // Another key has its own window; the next window starts at 1.
    assert!(matches!(
        hit(&mut db, "d", 130, 3, 60).unwrap(),
        Decision::Allow(_)
    ));
    assert_eq!(
        hit(&mut db, "c", 180, 3, 60).unwrap(),
        Decision::Allow(Window {
            start_secs: 180,
            count: 1
        })
    );
    // No limit: nothing counted.
    assert_eq!(
        hit(&mut db, "e", 180, 0, 60).unwrap(),
        Decision::Allow(Window::default())
    );
    assert_eq!(crate::test_db::count(&mut db, "rate_windows"), 2);
}

#[test]
fn concurrent_connections_never_admit_more_than_the_limit() {
    let open = crate::test_db::shared("rate-windows");
    crate::migrate::apply(&mut open(), 1).unwrap();
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            // Opened before the thread: a failed open cannot strand the
            // others at the barrier.
            let (mut db, barrier) = (open(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                (0..10)
                    .filter(|_| {
                        matches!(hit(&mut db, "k", 600, 25, 60).unwrap(), Decision::Allow(_))
                    })
                    .count()
            })
        })
        .collect();
    let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(admitted, 25, "60 requests against a limit of 25");
}
