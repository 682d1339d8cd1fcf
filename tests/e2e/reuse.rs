//! Instance reuse for WASI 0.3 components, as Spin serves them
//! (`--max-instance-reuse-count`, `--max-instance-concurrent-reuse-count`,
//! `--idle-instance-timeout`): the reuse probe (`tests/guests/reuse-probe`,
//! `wasi:http/handler@0.3.0`, no DOL code) on `dol up`. One keep-alive
//! client keeps a test's requests on one serving thread, whose instances
//! they share.

use std::time::Duration;

use dol_host::reuse::{IdleTimeout, InstanceReuse};
use dol_test_support::{TestHost, TestHostBuilder};

const PROBE_APP: &str = "tests/apps/probe-basic/spin.toml";

fn probe() -> TestHostBuilder {
    TestHost::builder(PROBE_APP).variable("SPIN_VARIABLE_SECRET_TOKEN", "s3cret")
}

/// `(instance, served)` of one `GET /reuse/count`.
async fn count(host: &TestHost) -> (u64, u64) {
    let (status, body) = host.get_json("/reuse/count").await;
    assert_eq!(status, 200, "{body}");
    (
        body["instance"].as_u64().unwrap(),
        body["served"].as_u64().unwrap(),
    )
}

fn reuse(max_requests: usize, idle: Duration) -> InstanceReuse {
    InstanceReuse {
        max_requests,
        max_concurrent: 16,
        idle_timeout: IdleTimeout::fixed(idle),
    }
}

/// `(instance, served)` of `n` consecutive `GET /reuse/count`s. A request
/// that arrives while the instance that served the one before is still
/// finishing it (writing its body) may get another instance, as on Spin
/// (wasmtime's `ProxyHandler` starts one when none is free), so tests
/// count instances rather than expect exactly one.
async fn counts(host: &TestHost, n: usize) -> Vec<(u64, u64)> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        seen.push(count(host).await);
    }
    seen
}

/// For each instance seen, the numbers it reported, in order.
fn by_instance(seen: &[(u64, u64)]) -> std::collections::BTreeMap<u64, Vec<u64>> {
    let mut by = std::collections::BTreeMap::<u64, Vec<u64>>::new();
    for (instance, served) in seen {
        by.entry(*instance).or_default().push(*served);
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_serves_requests_up_to_its_reuse_count() {
    let host = probe()
        .instance_reuse(reuse(3, Duration::from_secs(30)))
        .start()
        .await;
    let seen = counts(&host, 24).await;
    let by = by_instance(&seen);
    for (instance, served) in &by {
        // Each instance counts 1, 2, … without gaps and stops at 3.
        let expected: Vec<u64> = (1..=served.len() as u64).collect();
        assert_eq!(served, &expected, "instance {instance}: {seen:?}");
        assert!(
            served.len() <= 3,
            "instance {instance} served more than 3: {seen:?}"
        );
    }
    // Reused, not one instance per request: at least 8 instances were
    // needed and most served their 3.
    assert!(by.len() >= 8, "{seen:?}");
    let full = by.values().filter(|served| served.len() == 3).count();
    assert!(full * 2 >= by.len(), "{seen:?}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spins_default_reuses_an_instance_many_times() {
    let host = probe().start().await;
    let seen = counts(&host, 40).await;
    let by = by_instance(&seen);
    // 40 requests on one connection: a handful of instances at most, one
    // of which served at least 10.
    assert!(by.len() <= 8, "{seen:?}");
    assert!(by.values().any(|served| served.len() >= 10), "{seen:?}");
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_is_dropped_after_the_idle_timeout() {
    let host = probe()
        .instance_reuse(reuse(128, Duration::from_millis(200)))
        .start()
        .await;
    // Kept between requests closer together than the timeout: ten
    // requests, a few instances at most, one of them serving several.
    let before = by_instance(&counts(&host, 10).await);
    assert!(before.len() <= 5, "{before:?}");
    assert!(
        before.values().any(|served| served.len() >= 3),
        "{before:?}"
    );
    // Idle for longer than the timeout: none is kept, a new one answers.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (later, served) = count(&host).await;
    assert!(!before.contains_key(&later), "{later} was kept: {before:?}");
    assert_eq!(served, 1);
    host.app.shutdown().await;
}

/// Traps the instance `instance` (asking until that one gets the request),
/// asserting the 500 it answers with.
async fn trap(host: &TestHost, instance: u64) {
    for _ in 0..50 {
        let (status, body) = host.get_json(&format!("/reuse/trap?if={instance}")).await;
        if status == 409 {
            continue;
        }
        assert_eq!(status, 500, "{body}");
        assert_eq!(body["error"]["code"], "internal", "{body}");
        return;
    }
    panic!("instance {instance} never got the request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_instance_is_never_used_again() {
    let host = probe()
        .instance_reuse(reuse(128, Duration::from_secs(30)))
        .start()
        .await;
    let seen = counts(&host, 5).await;
    let (instance, served) = seen[seen.len() - 1];
    // Reused before the trap: the instance had served more than one.
    assert!(by_instance(&seen).len() <= 3, "{seen:?}");
    assert!(served >= 1);
    trap(&host, instance).await;
    let after = counts(&host, 10).await;
    assert!(
        after.iter().all(|(seen, _)| *seen != instance),
        "the trapped instance {instance} answered again: {after:?}"
    );
    host.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_request_on_a_reused_instance_is_stopped_at_the_time_limit() {
    let host = probe()
        .request_timeout(Duration::from_secs(2))
        .instance_reuse(reuse(128, Duration::from_secs(30)))
        .start()
        .await;
    // An instance that has lived longer than the limit: the limit counts
    // from the runaway request's start, not the instance's.
    let (instance, _) = count(&host).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (again, _) = count(&host).await;
    assert_eq!(again, instance, "the idle instance was not kept");
    let started = std::time::Instant::now();
    let (status, body) = host.get_json("/reuse/spin").await;
    let took = started.elapsed();
    assert_eq!(status, 500, "{body}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "stopped after {took:?}"
    );
    // The host still answers.
    assert!(count(&host).await.1 >= 1);
    host.app.shutdown().await;
}
