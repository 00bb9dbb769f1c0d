import { MetricSchema, type Metric } from './definition.js';

/**
 * The metrics experiments may name, defined once for the service's live consumer and for the
 * notebooks' recomputation from the lakehouse. Windows and pre-exposure periods are in days of event
 * time.
 */
export const METRICS: readonly Metric[] = [
  {
    key: 'logins',
    kind: 'mean',
    event: 'login',
    preExposureDays: 28,
    description: 'logins per user in the 14 days after exposure; the count in the 28 days before is the CUPED covariate',
  },
  { key: 'feature_uses', kind: 'mean', event: 'feature_used', description: 'feature uses per user after exposure' },
  { key: 'upgrade', kind: 'conversion', event: 'upgrade', description: 'share of users who upgrade to pro within 14 days of exposure' },
  { key: 'mrr', kind: 'mean', event: 'upgrade', prop: 'mrr', description: 'new monthly recurring revenue per user' },
  { key: 'cancellation', kind: 'conversion', event: 'subscription_cancelled', description: 'share of users who cancel a subscription' },
  { key: 'purchase', kind: 'conversion', event: 'purchase', description: 'share of shop customers who buy' },
  { key: 'order_value', kind: 'ratio', event: 'purchase', prop: 'amount', denominator: { event: 'purchase' }, description: 'revenue per purchase line' },
].map((m) => MetricSchema.parse(m));

/**
 * The metrics experiments can use, by key: the built-in `METRICS` plus `extra` (which replace built-ins of the same key).
 *
 * @example
 * ```ts
 * const metrics = metricCatalog([{ key: 'logins', kind: 'mean', event: 'login', windowDays: 14, preExposureDays: 14 }]);
 * ```
 */
export function metricCatalog(extra: readonly Metric[] = []): Map<string, Metric> {
  return new Map([...METRICS, ...extra].map((m) => [m.key, m]));
}
