/**
 * One vocabulary for countries across the project: ISO 3166-1 alpha-2 codes are the values (in the
 * lakehouse, in events' `props.country`, in the OLTP users), English names are labels only.
 *
 * Why: the retail log names countries ("United Kingdom", "EIRE", "USA") while the simulated app uses
 * codes, so one country showed as two series on the dashboard and two groups in every GROUP BY.
 * Data is converted once, where it enters (the retail loader); a name that is not a country is
 * quarantined there with the reason rather than guessed.
 */

/**
 * ISO 3166-1 alpha-2 codes with their English short names (CLDR's, as `Intl.DisplayNames` gives
 * them; shipped as a table so that a Node build without full ICU labels the same).
 */
// prettier-ignore
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

/**
 * Other names for the same countries, in ISO's or everyday spelling, and as the shipped UCI retail
 * log (data/online-retail-uci, its Country column) writes them where it differs from the names above.
 * Only unambiguous names are here: "Korea" or "Congo" alone could be either of two countries.
 */
const ALIASES: readonly (readonly [string, string])[] = [
  ['United States of America', 'US'],
  ['USA', 'US'],
  ['U.S.A.', 'US'],
  ['UK', 'GB'],
  ['Great Britain', 'GB'],
  // The UK's nations have no alpha-2 code of their own (ISO 3166-2 subdivisions only).
  ['England', 'GB'],
  ['Scotland', 'GB'],
  ['Wales', 'GB'],
  ['Northern Ireland', 'GB'],
  ['Czech Republic', 'CZ'],
  ['Hong Kong', 'HK'],
  ['Macao', 'MO'],
  ['Macau', 'MO'],
  ['Russian Federation', 'RU'],
  ['Republic of Korea', 'KR'],
  ['Turkey', 'TR'],
  ['Ivory Coast', 'CI'],
  ["Côte d'Ivoire", 'CI'],
  ['Viet Nam', 'VN'],
  ['Cabo Verde', 'CV'],
  ['Swaziland', 'SZ'],
  ['Macedonia', 'MK'],
  ['Burma', 'MM'],
  ['Myanmar', 'MM'],
  ['Palestine', 'PS'],
  ['Vatican', 'VA'],
  ['Holy See', 'VA'],
  ['Democratic Republic of the Congo', 'CD'],
  ['Republic of the Congo', 'CG'],
  ['East Timor', 'TL'],
  ['Micronesia (Federated States of)', 'FM'],
  ['Bolivia (Plurinational State of)', 'BO'],
  ['Iran (Islamic Republic of)', 'IR'],
  ['Tanzania, United Republic of', 'TZ'],
  ['Venezuela (Bolivarian Republic of)', 'VE'],
  ["Lao People's Democratic Republic", 'LA'],
  ['Syrian Arab Republic', 'SY'],
  ['Moldova, Republic of', 'MD'],
  ['Brunei Darussalam', 'BN'],
  ['Falkland Islands (Malvinas)', 'FK'],
  // The retail log's own spellings: Ireland by its Irish name, South Africa by its initials.
  ['EIRE', 'IE'],
  ['RSA', 'ZA'],
];
// Names the retail log uses that are deliberately NOT here, so that its lines are quarantined:
// - "Unspecified": no country at all.
// - "European Community": a bloc, not a country (and no ISO code; "EU" is only reserved).
// - "Channel Islands": Jersey (JE) and Guernsey (GG) have codes, the islands together do not, and the
//   log does not say which one; picking one would invent a fact.

/** CLDR writes "Bosnia & Herzegovina" and "St. Lucia"; ISO and most clients write "and" and "Saint". */
function everydaySpelling(name: string): string {
  return name.replace(/ & /g, ' and ').replace(/^St\. /, 'Saint ');
}

const FOLD = (name: string) => name.trim().toLowerCase();

/** Every known spelling, folded to lower case, to its code; a Map, because names come from outside. */
const BY_NAME: ReadonlyMap<string, string> = (() => {
  const byName = new Map<string, string>();
  for (const [code, name] of Object.entries(COUNTRIES)) {
    byName.set(FOLD(name), code);
    byName.set(FOLD(everydaySpelling(name)), code);
  }
  for (const [alias, code] of ALIASES) byName.set(FOLD(alias), code);
  return byName;
})();

const CODES: ReadonlySet<string> = new Set(Object.keys(COUNTRIES));

/**
 * The ISO 3166-1 alpha-2 code of a country given by its code (any case) or one of its known names
 * (any case), or undefined if it is not a country this project knows.
 *
 * @example
 * ```ts
 * countryCode('United Kingdom'); // 'GB'
 * countryCode('EIRE'); // 'IE' (the retail log's spelling)
 * countryCode('gb'); // 'GB'
 * countryCode('Channel Islands'); // undefined: Jersey or Guernsey, the name does not say
 * ```
 */
export function countryCode(nameOrCode: string): string | undefined {
  const text = nameOrCode.trim();
  if (text.length === 2 && CODES.has(text.toUpperCase())) return text.toUpperCase();
  return BY_NAME.get(FOLD(text));
}

/**
 * The English name of an ISO 3166-1 alpha-2 code, for labels; undefined for an unknown code.
 *
 * @example
 * ```ts
 * const rows = await lake.query(sql`SELECT country, sum(amount) AS revenue FROM retail_lines GROUP BY 1`);
 * show(rows.map((r) => ({ ...r, name: countryName(String(r.country)) })));
 * ```
 */
export function countryName(code: string): string | undefined {
  return CODES.has(code) ? COUNTRIES[code] : undefined;
}

/** Every name `countryCode` accepts (not the codes), in their usual spelling: for vocabularies that must know them. */
export function countryNames(): string[] {
  const names: string[] = [];
  for (const name of Object.values(COUNTRIES)) {
    names.push(name);
    const spelled = everydaySpelling(name);
    if (spelled !== name) names.push(spelled);
  }
  for (const [alias] of ALIASES) names.push(alias);
  return names;
}
