//! The wasmtime engine: configuration, compiled-code cache and the epoch ticker
//! that enforces per-request wall-clock limits.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances. Request deadlines are expressed in
/// these ticks, so this is also the granularity of the wall-clock limit.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits that apply to every guest instance.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock budget of one request or cron invocation.
    pub request_timeout: Duration,
    /// Largest linear memory one instance may grow to.
    pub max_memory_bytes: usize,
    /// Instances the pooling allocator keeps slots for: one per WASI 0.2
    /// request in flight, plus the live WASI 0.3 instances (busy, or kept
    /// idle for reuse up to their idle timeout).
    pub pooled_instances: u32,
    /// How WASI 0.3 components' instances are reused (Spin's options).
    pub reuse: crate::reuse::InstanceReuse,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            max_memory_bytes: 256 * 1024 * 1024,
            pooled_instances: 256,
            reuse: crate::reuse::InstanceReuse::default(),
        }
    }
}

/// How much of each pooled linear memory stays resident between instances.
const KEEP_RESIDENT_BYTES: usize = 16 << 20;

/// Builds the engine. `cache_dir` enables wasmtime's compiled-code cache there so
/// a restart does not recompile unchanged components.
pub fn build_engine(limits: &Limits, cache_dir: Option<&Path>) -> Result<Engine> {
    let mut config = base_config(cache_dir)?;
    let mut pooling = PoolingAllocationConfig::default();
    // A Spin component is one component instance made of a handful of core
    // instances (the guest, the WASI adapter shims); size the pool for that.
    pooling
        .total_component_instances(limits.pooled_instances)
        .total_core_instances(limits.pooled_instances * 8)
        .total_memories(limits.pooled_instances * 4)
        .total_tables(limits.pooled_instances * 8)
        .max_memory_size(limits.max_memory_bytes)
        // Resetting a slot with madvise costs page faults on its next use and
        // TLB-shootdown IPIs to every core (the top kernel entries of a
        // profile under load). With PAGEMAP_SCAN (Linux 6.7+) only the pages
        // a request dirtied are memset back, up to these sizes; elsewhere the
        // low addresses are memset and the rest is madvised as before.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES / 16)
        // What still is decommitted is flushed in batches (one IPI round each).
        .decommit_batch_size(16);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(pooling_error) => {
            // Pooling reserves a lot of virtual address space up front; where the
            // machine refuses (ulimit -v, small address spaces), fall back to
            // on-demand allocation instead of refusing to start.
            tracing::warn!(
                "pooling allocator unavailable ({pooling_error}); using on-demand allocation"
            );
            let config = base_config(cache_dir)?;
            Engine::new(&config)
                .map_err(anyhow::Error::from)
                .context("creating the wasmtime engine")
        }
    }
}

fn base_config(cache_dir: Option<&Path>) -> Result<Config> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // WASI 0.3 (`wasi:http/handler@0.3.0`): async lifts and lowers, streams
    // and futures, as Spin 4 serves them.
    config.wasm_component_model_async(true);
    config.epoch_interruption(true);
    if std::env::var_os("DOL_PERF_MAP").is_some() {
        // `perf` cannot name JIT-compiled guest code on its own: with
        // DOL_PERF_MAP set, wasmtime writes /tmp/perf-<pid>.map for it.
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Some(dir) = cache_dir {
        // wasmtime refuses a relative cache directory ("Cache directory path
        // has to be absolute"); `--state-dir ./x` gives one.
        let dir = std::path::absolute(dir)
            .with_context(|| format!("resolving the cache directory {}", dir.display()))?;
        let mut cache_config = wasmtime::CacheConfig::new();
        cache_config.with_directory(&dir);
        let cache = wasmtime::Cache::new(cache_config)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("opening the compiled-code cache in {}", dir.display()))?;
        config.cache(Some(cache));
    }
    Ok(config)
}

/// Advances the engine epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`.
    pub fn start(engine: &Engine) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let thread_stop = stop.clone();
        // A plain thread, not a tokio task: the ticker must keep running even when
        // every runtime worker is busy inside guest code, which is exactly when
        // deadlines matter.
        std::thread::Builder::new()
            .name("dol-epoch".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .context("starting the epoch thread")?;
        Ok(Self { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Epoch ticks an instance's code runs into before it starts yielding to its
/// serving thread's other requests at every tick (10: about 100 ms of guest
/// computation; a wait in a host call that spans ticks counts as one).
/// Ordinary requests compute far less and never yield (a yield at every tick
/// in every instance measured 0.00× throughput at concurrency 16: instances
/// yielded inside their SQLite transactions, and the others of the thread
/// blocked it waiting for that lock); a request next to a looping guest
/// waits about this long, then a tick per turn, not the looping guest's
/// whole time limit.
pub const YIELD_AFTER_TICKS: u64 = 10;

/// Epoch ticks an instance's code may run into while it holds a SQLite
/// transaction (it never yields then) before it is stopped, which rolls the
/// transaction back: SQLite's busy timeout, after which every instance
/// waiting for that lock has failed anyway. So `BEGIN; loop {}` keeps
/// neither its thread nor the write lock for longer.
// Both durations are a few seconds at most: the quotient fits any integer.
pub const TRANSACTION_TICKS_WITHOUT_YIELD: u64 =
    (crate::storage::BUSY_TIMEOUT.as_millis() / EPOCH_TICK.as_millis()) as u64;
