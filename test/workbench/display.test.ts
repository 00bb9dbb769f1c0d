import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as arrow from 'apache-arrow';
import { htmlTable, plotHtml } from '../../src/workbench/display.js';

describe('display helpers', () => {
  it('renders rows, Arrow tables and DataFrame-shaped data as the same escaped HTML table', () => {
    const rows = [{ name: '<script>alert(1)</script>', n: 1234 }, { name: 'b & c', n: 2 }];
    const html = htmlTable(rows);
    assert.doesNotMatch(html, /<script>/);
    assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
    assert.match(html, /b &amp; c/);
    assert.match(html, /<td style="text-align:right">1,234<\/td>/);
    const table = arrow.tableFromArrays({ name: ['<script>alert(1)</script>', 'b & c'], n: Float64Array.from([1234, 2]) });
    assert.equal(htmlTable(table), html);
    assert.equal(htmlTable({ columns: ['name', 'n'], values: [['<script>alert(1)</script>', 1234], ['b & c', 2]] }), html);
  });

  it('shows at most maxRows rows and says how many more there are', () => {
    const html = htmlTable(Array.from({ length: 30 }, (_, i) => ({ i })), { maxRows: 5 });
    assert.equal(html.match(/<tr>/g)!.length, 6);
    assert.match(html, /25 more rows \(30 in all\)/);
  });

  it('inlines plotly.js with the first figure only, and keeps data from closing the script', () => {
    const first = plotHtml({ data: [{ type: 'bar', x: ['</script><b>'], y: [1n as unknown as number] }] });
    const second = plotHtml({ data: [{ type: 'bar', x: ['a'], y: [2] }] });
    assert.ok(first.length > 1_000_000, 'the first figure carries the plotly.js script');
    assert.ok(second.length < 2_000, 'later figures do not');
    assert.match(first, /<\\\/script><b>/);
    assert.match(second, /Plotly\.newPlot\("wb-plot-\d+-2"/);
    assert.match(first.slice(-600), /"y":\[1\]/, 'bigint values are written as numbers');
  });
});
