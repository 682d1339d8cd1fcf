// Node side of DOL's differential test: evaluates flags with
// @openfeature/flagd-core, the reference in-process flagd evaluator.
//
// Usage: node evaluate.mjs FLAGS.json [INPUT.jsonl] < INPUT.jsonl
// Each input line is {"flag": KEY, "context": {...}}; each output line is
// {"value": ..., "variant": ..., "reason": ..., "errorCode": ...}, in order.
import { readFileSync } from 'node:fs';
import { FlagdCore } from '@openfeature/flagd-core';

const [flagsPath, inputPath] = process.argv.slice(2);
if (!flagsPath) {
  console.error('usage: node evaluate.mjs FLAGS.json [INPUT.jsonl]');
  process.exit(2);
}

// Keep flagd-core's debug logging out of stdout, which carries the results.
const quiet = { error() {}, warn() {}, info() {}, debug() {} };
const core = new FlagdCore(undefined, quiet);
core.setConfigurations(readFileSync(flagsPath, 'utf8'));

const input = readFileSync(inputPath ?? 0, 'utf8');
const out = [];
for (const line of input.split('\n')) {
  if (line.trim() === '') continue;
  const { flag, context } = JSON.parse(line);
  const def = core.getFlag(flag);
  // Ask for the flag's own type so TYPE_MISMATCH never masks a difference.
  const type = def ? typeof def.variants.values().next().value : 'string';
  const r = core.resolve(type, flag, null, context ?? {}, quiet);
  // flagd-core hides why a rule threw; re-run it to report json-logic-engine's
  // NaN guard ({type: 'NaN'}), a known divergence from other JsonLogic engines.
  let thrown = null;
  if (r.errorCode === 'GENERAL' && def?._targeting) {
    try {
      def._targeting.evaluate(flag, context ?? {}, quiet);
    } catch (e) {
      thrown = e?.type ?? String(e?.message ?? e);
    }
  }
  out.push(
    JSON.stringify({
      value: r.value ?? null,
      variant: r.variant ?? null,
      reason: r.reason,
      errorCode: r.errorCode ?? null,
      thrown,
    }),
  );
}
process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
