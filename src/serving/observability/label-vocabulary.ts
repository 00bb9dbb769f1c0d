import { COUNTRIES, countryNames } from '../../workbench/countries.js';
import { appFeatures, retailFeatures } from '../../workbench/features/catalog.js';
import { METRICS } from '../../workbench/experiments/metrics.js';
import { RESERVED_EVENTS } from '../pipeline/ingest.js';

export { COUNTRIES };

/**
 * The values of the user-facing metric labels (`event`, `country`, `device`, `tier`) that may take one
 * of a label's capped slots (see Metrics.label).
 *
 * Why a fixed vocabulary: those values come from clients (a new user's `country` and `device` are
 * taken from their first event's props, and any key holding the ingest scope can send any event
 * name), while Prometheus needs few distinct label values. With a plain first-come cap, one key that
 * sent 200 made-up countries filled the `country` label, and every real country seen after that was
 * counted as `other` until a restart. Here only values the project knows take a slot; anything else
 * is counted as `other` at once, and the cap stays as a backstop.
 */
export type VocabularyLabel = 'event' | 'country' | 'device' | 'tier';

/** Devices: the simulator's and the retail replay's (`web`), and common platform names. */
const DEVICES = ['web', 'ios', 'android', 'desktop', 'mobile', 'tablet', 'ipados', 'macos', 'windows', 'linux', 'tv', 'watch'];

/** Tiers: the OLTP users table allows these only (a CHECK constraint). */
const TIERS = ['free', 'pro'];

/**
 * Event names the project itself writes or reads: the simulated app's, the retail log's, the
 * service's own (reserved) ones, and those the experiment metrics and the feature catalog name.
 */
const SIMULATOR_EVENTS = ['signup', 'login', 'feature_used', 'upgrade'];
const RETAIL_EVENTS = ['purchase', 'return'];

/** What the service writes itself where it knows nothing better (a user not in the OLTP database). */
const PLACEHOLDER = 'unknown';

/** The known values of each vocabulary label, with the service's configured event names (IngestOptions.eventNames) added. */
export function labelVocabulary(eventNames: Iterable<string> = []): ReadonlyMap<VocabularyLabel, ReadonlySet<string>> {
  // Codes are what the project itself sends (src/workbench/countries.ts); names stay known because outside clients send them.
  const countries = new Set<string>([PLACEHOLDER, ...Object.keys(COUNTRIES), ...countryNames()]);
  const events = new Set<string>([...SIMULATOR_EVENTS, ...RETAIL_EVENTS, ...RESERVED_EVENTS.keys(), ...eventNames]);
  for (const m of METRICS) {
    events.add(m.event);
    if (m.denominator) events.add(m.denominator.event);
  }
  for (const f of [...appFeatures, ...retailFeatures]) if (f.source.event !== '*') events.add(f.source.event);
  return new Map<VocabularyLabel, ReadonlySet<string>>([
    ['event', events],
    ['country', countries],
    ['device', new Set([PLACEHOLDER, ...DEVICES])],
    ['tier', new Set(TIERS)],
  ]);
}
