// Evaluates a few of DOL's seed flags through a real OpenFeature client:
// the server SDK with the OFREP provider, against the base URL in argv[2]
// (optional bearer token in argv[3]). Prints one JSON object with the
// evaluation details per flag, for tests/e2e/flags.rs to check.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const [baseUrl, token] = process.argv.slice(2);
if (!baseUrl) {
  console.error('usage: node evaluate.mjs <base-url> [token]');
  process.exit(2);
}

const headers = token ? [['Authorization', `Bearer ${token}`]] : [];
await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers }));
const client = OpenFeature.getClient();

const context = { targetingKey: 'user-42', maturityPhase: 'run', orgId: 'org-7' };
const pick = (d) => ({
  value: d.value,
  variant: d.variant ?? null,
  reason: d.reason ?? null,
  errorCode: d.errorCode ?? null,
});
const out = {
  complete_context: pick(await client.getBooleanDetails('complete_context', false, context)),
  comprehensive_engines: pick(await client.getBooleanDetails('comprehensive_engines', false, context)),
  genre_engines: pick(await client.getBooleanDetails('genre_engines', false, context)),
  beta_features: pick(await client.getBooleanDetails('beta_features', true, context)),
  generation_experiment: pick(await client.getStringDetails('generation_experiment', 'fallback', context)),
  excluded_org: pick(
    await client.getStringDetails('generation_experiment', 'fallback', { ...context, orgId: 'org-legal-hold' }),
  ),
  missing: pick(await client.getBooleanDetails('no_such_flag', true, context)),
};
console.log(JSON.stringify(out));
await OpenFeature.close();
