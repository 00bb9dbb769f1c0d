import { appFeatures, retailFeatures } from '../../workbench/features/catalog.js';
import { METRICS } from '../../workbench/experiments/metrics.js';
import { RESERVED_EVENTS } from '../pipeline/ingest.js';

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

/**
 * ISO 3166-1 alpha-2 codes with their English short names (CLDR's, as `Intl.DisplayNames` gives
 * them; shipped as a table so that a Node build without full ICU labels the same).
 */
export const COUNTRIES: Readonly<Record<string, string>> = Object.freeze({
  AD: 'Andorra', AE: 'United Arab Emirates', AF: 'Afghanistan', AG: 'Antigua & Barbuda', AI: 'Anguilla',
  AL: 'Albania', AM: 'Armenia', AO: 'Angola', AQ: 'Antarctica', AR: 'Argentina', AS: 'American Samoa',
  AT: 'Austria', AU: 'Australia', AW: 'Aruba', AX: 'Åland Islands', AZ: 'Azerbaijan',
  BA: 'Bosnia & Herzegovina', BB: 'Barbados', BD: 'Bangladesh', BE: 'Belgium', BF: 'Burkina Faso',
  BG: 'Bulgaria', BH: 'Bahrain', BI: 'Burundi', BJ: 'Benin', BL: 'St. Barthélemy', BM: 'Bermuda',
  BN: 'Brunei', BO: 'Bolivia', BQ: 'Caribbean Netherlands', BR: 'Brazil', BS: 'Bahamas', BT: 'Bhutan',
  BV: 'Bouvet Island', BW: 'Botswana', BY: 'Belarus', BZ: 'Belize', CA: 'Canada',
  CC: 'Cocos (Keeling) Islands', CD: 'Congo - Kinshasa', CF: 'Central African Republic',
  CG: 'Congo - Brazzaville', CH: 'Switzerland', CI: 'Côte d’Ivoire', CK: 'Cook Islands', CL: 'Chile',
  CM: 'Cameroon', CN: 'China', CO: 'Colombia', CR: 'Costa Rica', CU: 'Cuba', CV: 'Cape Verde', CW: 'Curaçao',
  CX: 'Christmas Island', CY: 'Cyprus', CZ: 'Czechia', DE: 'Germany', DJ: 'Djibouti', DK: 'Denmark',
  DM: 'Dominica', DO: 'Dominican Republic', DZ: 'Algeria', EC: 'Ecuador', EE: 'Estonia', EG: 'Egypt',
  EH: 'Western Sahara', ER: 'Eritrea', ES: 'Spain', ET: 'Ethiopia', FI: 'Finland', FJ: 'Fiji',
  FK: 'Falkland Islands', FM: 'Micronesia', FO: 'Faroe Islands', FR: 'France', GA: 'Gabon',
  GB: 'United Kingdom', GD: 'Grenada', GE: 'Georgia', GF: 'French Guiana', GG: 'Guernsey', GH: 'Ghana',
  GI: 'Gibraltar', GL: 'Greenland', GM: 'Gambia', GN: 'Guinea', GP: 'Guadeloupe', GQ: 'Equatorial Guinea',
  GR: 'Greece', GS: 'South Georgia & South Sandwich Islands', GT: 'Guatemala', GU: 'Guam',
  GW: 'Guinea-Bissau', GY: 'Guyana', HK: 'Hong Kong SAR China', HM: 'Heard & McDonald Islands',
  HN: 'Honduras', HR: 'Croatia', HT: 'Haiti', HU: 'Hungary', ID: 'Indonesia', IE: 'Ireland', IL: 'Israel',
  IM: 'Isle of Man', IN: 'India', IO: 'British Indian Ocean Territory', IQ: 'Iraq', IR: 'Iran',
  IS: 'Iceland', IT: 'Italy', JE: 'Jersey', JM: 'Jamaica', JO: 'Jordan', JP: 'Japan', KE: 'Kenya',
  KG: 'Kyrgyzstan', KH: 'Cambodia', KI: 'Kiribati', KM: 'Comoros', KN: 'St. Kitts & Nevis',
  KP: 'North Korea', KR: 'South Korea', KW: 'Kuwait', KY: 'Cayman Islands', KZ: 'Kazakhstan', LA: 'Laos',
  LB: 'Lebanon', LC: 'St. Lucia', LI: 'Liechtenstein', LK: 'Sri Lanka', LR: 'Liberia', LS: 'Lesotho',
  LT: 'Lithuania', LU: 'Luxembourg', LV: 'Latvia', LY: 'Libya', MA: 'Morocco', MC: 'Monaco', MD: 'Moldova',
  ME: 'Montenegro', MF: 'St. Martin', MG: 'Madagascar', MH: 'Marshall Islands', MK: 'North Macedonia',
  ML: 'Mali', MM: 'Myanmar (Burma)', MN: 'Mongolia', MO: 'Macao SAR China', MP: 'Northern Mariana Islands',
  MQ: 'Martinique', MR: 'Mauritania', MS: 'Montserrat', MT: 'Malta', MU: 'Mauritius', MV: 'Maldives',
  MW: 'Malawi', MX: 'Mexico', MY: 'Malaysia', MZ: 'Mozambique', NA: 'Namibia', NC: 'New Caledonia',
  NE: 'Niger', NF: 'Norfolk Island', NG: 'Nigeria', NI: 'Nicaragua', NL: 'Netherlands', NO: 'Norway',
  NP: 'Nepal', NR: 'Nauru', NU: 'Niue', NZ: 'New Zealand', OM: 'Oman', PA: 'Panama', PE: 'Peru',
  PF: 'French Polynesia', PG: 'Papua New Guinea', PH: 'Philippines', PK: 'Pakistan', PL: 'Poland',
  PM: 'St. Pierre & Miquelon', PN: 'Pitcairn Islands', PR: 'Puerto Rico', PS: 'Palestinian Territories',
  PT: 'Portugal', PW: 'Palau', PY: 'Paraguay', QA: 'Qatar', RE: 'Réunion', RO: 'Romania', RS: 'Serbia',
  RU: 'Russia', RW: 'Rwanda', SA: 'Saudi Arabia', SB: 'Solomon Islands', SC: 'Seychelles', SD: 'Sudan',
  SE: 'Sweden', SG: 'Singapore', SH: 'St. Helena', SI: 'Slovenia', SJ: 'Svalbard & Jan Mayen',
  SK: 'Slovakia', SL: 'Sierra Leone', SM: 'San Marino', SN: 'Senegal', SO: 'Somalia', SR: 'Suriname',
  SS: 'South Sudan', ST: 'São Tomé & Príncipe', SV: 'El Salvador', SX: 'Sint Maarten', SY: 'Syria',
  SZ: 'Eswatini', TC: 'Turks & Caicos Islands', TD: 'Chad', TF: 'French Southern Territories', TG: 'Togo',
  TH: 'Thailand', TJ: 'Tajikistan', TK: 'Tokelau', TL: 'Timor-Leste', TM: 'Turkmenistan', TN: 'Tunisia',
  TO: 'Tonga', TR: 'Türkiye', TT: 'Trinidad & Tobago', TV: 'Tuvalu', TW: 'Taiwan', TZ: 'Tanzania',
  UA: 'Ukraine', UG: 'Uganda', UM: 'U.S. Outlying Islands', US: 'United States', UY: 'Uruguay',
  UZ: 'Uzbekistan', VA: 'Vatican City', VC: 'St. Vincent & Grenadines', VE: 'Venezuela',
  VG: 'British Virgin Islands', VI: 'U.S. Virgin Islands', VN: 'Vietnam', VU: 'Vanuatu',
  WF: 'Wallis & Futuna', WS: 'Samoa', YE: 'Yemen', YT: 'Mayotte', ZA: 'South Africa', ZM: 'Zambia',
  ZW: 'Zimbabwe',
});

/** Other names for the same countries that clients commonly send, in ISO's or everyday spelling. */
const COUNTRY_ALIASES = [
  'United States of America', 'USA', 'UK', 'Great Britain', 'England', 'Scotland', 'Wales', 'Northern Ireland',
  'Czech Republic', 'Hong Kong', 'Macao', 'Macau', 'Russian Federation', 'Korea', 'Republic of Korea',
  'Turkey', 'Ivory Coast', "Côte d'Ivoire", 'Viet Nam', 'Cabo Verde', 'Swaziland', 'Macedonia', 'Burma', 'Myanmar',
  'Palestine', 'Vatican', 'Holy See', 'Democratic Republic of the Congo', 'Republic of the Congo', 'Congo',
  'East Timor', 'Micronesia (Federated States of)', 'Bolivia (Plurinational State of)', 'Iran (Islamic Republic of)',
  'Tanzania, United Republic of', 'Venezuela (Bolivarian Republic of)', "Lao People's Democratic Republic", 'Syrian Arab Republic',
  'Moldova, Republic of', 'Brunei Darussalam', 'Falkland Islands (Malvinas)',
];

/**
 * Countries as the shipped UCI retail log names them (data/online-retail-uci, its Country column),
 * where they differ from the names above; and `unknown`, the service's own placeholder.
 */
const RETAIL_COUNTRIES = ['EIRE', 'European Community', 'RSA', 'USA', 'Channel Islands', 'Czech Republic', 'Unspecified', 'Hong Kong'];

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
  const countries = new Set<string>([PLACEHOLDER, ...COUNTRY_ALIASES, ...RETAIL_COUNTRIES]);
  for (const [code, name] of Object.entries(COUNTRIES)) {
    countries.add(code);
    countries.add(name);
    // CLDR writes "Bosnia & Herzegovina" and "St. Lucia"; ISO and most clients write "and" and "Saint".
    const spelled = name.replace(/ & /g, ' and ').replace(/^St\. /, 'Saint ');
    if (spelled !== name) countries.add(spelled);
  }
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
