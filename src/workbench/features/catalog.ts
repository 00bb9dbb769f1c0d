import { featureSet, type Feature } from './definition.js';

/**
 * Feature sets for the project's two event logs, shared by the notebooks, the jobs and the parity
 * check. Times are in seconds.
 */

/** The UCI retail log (`purchase` and `return` per invoice line; props amount, quantity, stock_code, invoice). */
// prettier-ignore
export const retailFeatures: Feature[] = featureSet([
  { name: 'lines_30d', description: 'invoice lines bought in the last 30 days', source: { event: 'purchase' }, aggregation: 'count', window: '30d', default: 0 },
  { name: 'invoices_30d', description: 'orders in the last 30 days', source: { event: 'purchase' }, aggregation: 'distinct_count', prop: 'invoice', window: '30d', default: 0 },
  { name: 'invoices_lifetime', description: 'orders ever (frequency)', source: { event: 'purchase' }, aggregation: 'distinct_count', prop: 'invoice', window: 'lifetime', default: 0 },
  { name: 'spend_30d', description: 'money spent in the last 30 days', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: '30d', default: 0 },
  { name: 'spend_lifetime', description: 'money spent ever (monetary)', source: { event: 'purchase' }, aggregation: 'sum', prop: 'amount', window: 'lifetime', default: 0 },
  { name: 'mean_line_amount', description: 'mean amount of a line', source: { event: 'purchase' }, aggregation: 'mean', prop: 'amount', window: 'lifetime', default: 0 },
  { name: 'max_quantity_7d', description: 'largest quantity on a line in the last 7 days', source: { event: 'purchase' }, aggregation: 'max', prop: 'quantity', window: '7d', default: 0 },
  { name: 'products_30d', description: 'distinct products bought in the last 30 days', source: { event: 'purchase' }, aggregation: 'distinct_count', prop: 'stock_code', window: '30d', default: 0 },
  { name: 'returns_lifetime', description: 'lines returned ever', source: { event: 'return' }, aggregation: 'count', window: 'lifetime', default: 0 },
  { name: 'since_last_purchase', description: 'seconds since the last purchase (recency)', source: { event: 'purchase' }, aggregation: 'time_since_last', window: 'lifetime', default: -1 },
  { name: 'customer_age', description: 'seconds since the first event (tenure)', source: { event: '*' }, aggregation: 'first_seen_age', window: 'lifetime', default: -1 },
  { name: 'last_items', description: 'the 50 products bought last, newest first', source: { event: 'purchase' }, aggregation: 'last_n', prop: 'stock_code', n: 50, window: 'lifetime', default: [] },
]);

/** The simulated app (`signup`, `login`, `feature_used` with feature and duration_s, `upgrade` with mrr). */
// prettier-ignore
export const appFeatures: Feature[] = featureSet([
  { name: 'events_10m', description: 'events in the last 10 minutes', source: { event: '*' }, aggregation: 'count', window: '10m', default: 0 },
  { name: 'events_1h', description: 'events in the last hour', source: { event: '*' }, aggregation: 'count', window: '1h', default: 0 },
  { name: 'logins_7d', description: 'logins in the last 7 days', source: { event: 'login' }, aggregation: 'count', window: '7d', default: 0 },
  { name: 'logins_30d', description: 'logins in the last 30 days', source: { event: 'login' }, aggregation: 'count', window: '30d', default: 0 },
  { name: 'feature_uses_7d', description: 'features used in the last 7 days', source: { event: 'feature_used' }, aggregation: 'count', window: '7d', default: 0 },
  { name: 'distinct_features_30d', description: 'distinct features used in the last 30 days', source: { event: 'feature_used' }, aggregation: 'distinct_count', prop: 'feature', window: '30d', default: 0 },
  { name: 'mean_use_seconds_30d', description: 'mean duration of a feature use', source: { event: 'feature_used' }, aggregation: 'mean', prop: 'duration_s', window: '30d', default: 0 },
  { name: 'reports_uses_30d', description: 'uses of the reports feature in the last 30 days', source: { event: 'feature_used', where: { feature: 'reports' } }, aggregation: 'count', window: '30d', default: 0 },
  { name: 'is_pro', description: 'upgrades ever (1 once on the pro plan)', source: { event: 'upgrade' }, aggregation: 'count', window: 'lifetime', default: 0 },
  { name: 'since_last_login', description: 'seconds since the last login', source: { event: 'login' }, aggregation: 'time_since_last', window: 'lifetime', default: -1 },
  { name: 'user_age', description: 'seconds since the first event', source: { event: '*' }, aggregation: 'first_seen_age', window: 'lifetime', default: -1 },
  { name: 'last_features', description: 'the 5 features used last', source: { event: 'feature_used' }, aggregation: 'last_n', prop: 'feature', n: 5, window: '30d', default: [] },
]);
