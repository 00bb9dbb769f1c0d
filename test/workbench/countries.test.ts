import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COUNTRIES, countryCode, countryName } from '../../src/workbench/countries.js';

describe('countries: ISO 3166-1 alpha-2 codes as values, English names as labels', () => {
  it('turns codes (any case) and known names (any case, CLDR, ISO or everyday spelling) into codes', () => {
    assert.equal(countryCode('GB'), 'GB');
    assert.equal(countryCode(' gb '), 'GB');
    assert.equal(countryCode('United Kingdom'), 'GB');
    assert.equal(countryCode('united kingdom'), 'GB');
    assert.equal(countryCode('Germany'), 'DE');
    assert.equal(countryCode('Bosnia and Herzegovina'), 'BA');
    assert.equal(countryCode('Bosnia & Herzegovina'), 'BA');
    assert.equal(countryCode('Saint Lucia'), 'LC');
    assert.equal(countryCode('Czech Republic'), 'CZ');
  });

  it('maps every country of the shipped retail log, and none of its non-countries', () => {
    // data/online-retail-uci/online_retail.csv.gz, its Country column (all 38 values), with the expected code.
    const retail: [string, string | undefined][] = [
      ['Australia', 'AU'],
      ['Austria', 'AT'],
      ['Bahrain', 'BH'],
      ['Belgium', 'BE'],
      ['Brazil', 'BR'],
      ['Canada', 'CA'],
      ['Channel Islands', undefined],
      ['Cyprus', 'CY'],
      ['Czech Republic', 'CZ'],
      ['Denmark', 'DK'],
      ['EIRE', 'IE'],
      ['European Community', undefined],
      ['Finland', 'FI'],
      ['France', 'FR'],
      ['Germany', 'DE'],
      ['Greece', 'GR'],
      ['Hong Kong', 'HK'],
      ['Iceland', 'IS'],
      ['Israel', 'IL'],
      ['Italy', 'IT'],
      ['Japan', 'JP'],
      ['Lebanon', 'LB'],
      ['Lithuania', 'LT'],
      ['Malta', 'MT'],
      ['Netherlands', 'NL'],
      ['Norway', 'NO'],
      ['Poland', 'PL'],
      ['Portugal', 'PT'],
      ['RSA', 'ZA'],
      ['Saudi Arabia', 'SA'],
      ['Singapore', 'SG'],
      ['Spain', 'ES'],
      ['Sweden', 'SE'],
      ['Switzerland', 'CH'],
      ['USA', 'US'],
      ['United Arab Emirates', 'AE'],
      ['United Kingdom', 'GB'],
      ['Unspecified', undefined],
    ];
    assert.deepEqual(
      retail.map(([name]) => [name, countryCode(name)]),
      retail,
    );
  });

  it('knows nothing it was not told: made-up names, ambiguous names, object keys', () => {
    for (const text of ['Atlantis', 'Korea', 'Congo', 'EU', 'XX', '', '__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      assert.equal(countryCode(text), undefined, text);
      assert.equal(countryName(text), undefined, text);
    }
  });

  it('labels a code with its English name, and every name leads back to its code', () => {
    assert.equal(countryName('GB'), 'United Kingdom');
    assert.equal(countryName('IE'), 'Ireland');
    assert.equal(countryName('gb'), undefined, 'labels take codes as stored: upper case');
    assert.equal(Object.keys(COUNTRIES).length, 249);
    for (const [code, name] of Object.entries(COUNTRIES)) assert.equal(countryCode(name), code, name);
  });
});
