-- 0024_bound_absurd_usage: repairs what a mistyped model price (or a provider
-- reporting nonsense usage) could store before the gateway bounded each
-- request's figures (dol_core::gateway::store::MAX_PER_REQUEST, 10^12) and
-- the catalog refused prices above $10,000 per million tokens. Such a
-- request stored its cost as i64::MAX; the next one overflowed its minute's
-- sum, which SQLite then kept as a REAL, and every reader of that row
-- (metrics, health, the alerts scan) failed until the row expired. No real
-- figure comes near 10^15 (a billion dollars, tokens or milliseconds in one
-- minute, hour or request), so anything above it is such a value: it is set
-- to the bound of one request, an integer again. Nothing else changes. One
-- statement per table, so each table is scanned once.
UPDATE usage_minute SET
    cost_micros = CASE WHEN cost_micros > 1000000000000000 THEN 1000000000000 ELSE cost_micros END,
    baseline_micros = CASE WHEN baseline_micros > 1000000000000000 THEN 1000000000000 ELSE baseline_micros END,
    prompt_tokens = CASE WHEN prompt_tokens > 1000000000000000 THEN 1000000000000 ELSE prompt_tokens END,
    completion_tokens = CASE WHEN completion_tokens > 1000000000000000 THEN 1000000000000 ELSE completion_tokens END,
    latency_sum_ms = CASE WHEN latency_sum_ms > 1000000000000000 THEN 1000000000000 ELSE latency_sum_ms END
WHERE cost_micros > 1000000000000000 OR baseline_micros > 1000000000000000 OR prompt_tokens > 1000000000000000 OR completion_tokens > 1000000000000000 OR latency_sum_ms > 1000000000000000;
UPDATE usage_hour SET
    cost_micros = CASE WHEN cost_micros > 1000000000000000 THEN 1000000000000 ELSE cost_micros END,
    baseline_micros = CASE WHEN baseline_micros > 1000000000000000 THEN 1000000000000 ELSE baseline_micros END,
    prompt_tokens = CASE WHEN prompt_tokens > 1000000000000000 THEN 1000000000000 ELSE prompt_tokens END,
    completion_tokens = CASE WHEN completion_tokens > 1000000000000000 THEN 1000000000000 ELSE completion_tokens END,
    latency_sum_ms = CASE WHEN latency_sum_ms > 1000000000000000 THEN 1000000000000 ELSE latency_sum_ms END
WHERE cost_micros > 1000000000000000 OR baseline_micros > 1000000000000000 OR prompt_tokens > 1000000000000000 OR completion_tokens > 1000000000000000 OR latency_sum_ms > 1000000000000000;
UPDATE requests SET
    cost_micros = CASE WHEN cost_micros > 1000000000000000 THEN 1000000000000 ELSE cost_micros END,
    baseline_cost_micros = CASE WHEN baseline_cost_micros > 1000000000000000 THEN 1000000000000 ELSE baseline_cost_micros END,
    prompt_tokens = CASE WHEN prompt_tokens > 1000000000000000 THEN 1000000000000 ELSE prompt_tokens END,
    completion_tokens = CASE WHEN completion_tokens > 1000000000000000 THEN 1000000000000 ELSE completion_tokens END,
    latency_ms = CASE WHEN latency_ms > 1000000000000000 THEN 1000000000000 ELSE latency_ms END,
    ttft_ms = CASE WHEN ttft_ms > 1000000000000000 THEN 1000000000000 ELSE ttft_ms END
WHERE cost_micros > 1000000000000000 OR baseline_cost_micros > 1000000000000000 OR prompt_tokens > 1000000000000000 OR completion_tokens > 1000000000000000 OR latency_ms > 1000000000000000 OR ttft_ms > 1000000000000000;
