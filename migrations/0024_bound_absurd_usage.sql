-- 0024_bound_absurd_usage: repairs what a mistyped model price (or a provider
-- reporting nonsense usage) could store before the gateway bounded each
-- request's figures (dol_core::gateway::store::MAX_PER_REQUEST, 10^12) and
-- the catalog refused prices above $10,000 per million tokens. Such a
-- request stored its cost as i64::MAX; the next one overflowed its minute's
-- sum, which SQLite then kept as a REAL, and every reader of that row
-- (metrics, health, the alerts scan) failed until the row expired. No real
-- figure comes near 10^15 (a billion dollars, tokens or milliseconds in one
-- minute, hour or request), so anything above it is such a value: it is set
-- to the bound of one request, an integer again. Nothing else changes.
UPDATE usage_minute SET cost_micros = 1000000000000 WHERE cost_micros > 1000000000000000;
UPDATE usage_minute SET baseline_micros = 1000000000000 WHERE baseline_micros > 1000000000000000;
UPDATE usage_minute SET prompt_tokens = 1000000000000 WHERE prompt_tokens > 1000000000000000;
UPDATE usage_minute SET completion_tokens = 1000000000000 WHERE completion_tokens > 1000000000000000;
UPDATE usage_minute SET latency_sum_ms = 1000000000000 WHERE latency_sum_ms > 1000000000000000;
UPDATE usage_hour SET cost_micros = 1000000000000 WHERE cost_micros > 1000000000000000;
UPDATE usage_hour SET baseline_micros = 1000000000000 WHERE baseline_micros > 1000000000000000;
UPDATE usage_hour SET prompt_tokens = 1000000000000 WHERE prompt_tokens > 1000000000000000;
UPDATE usage_hour SET completion_tokens = 1000000000000 WHERE completion_tokens > 1000000000000000;
UPDATE usage_hour SET latency_sum_ms = 1000000000000 WHERE latency_sum_ms > 1000000000000000;
UPDATE requests SET cost_micros = 1000000000000 WHERE cost_micros > 1000000000000000;
UPDATE requests SET baseline_cost_micros = 1000000000000 WHERE baseline_cost_micros > 1000000000000000;
UPDATE requests SET prompt_tokens = 1000000000000 WHERE prompt_tokens > 1000000000000000;
UPDATE requests SET completion_tokens = 1000000000000 WHERE completion_tokens > 1000000000000000;
UPDATE requests SET latency_ms = 1000000000000 WHERE latency_ms > 1000000000000000;
UPDATE requests SET ttft_ms = 1000000000000 WHERE ttft_ms > 1000000000000000;
