/**
 * Archive benchmark (npm run bench:archive): the CPU the live archiver spends per event (all
 * threads: DuckDB parses the log's JSON records and writes zstd Parquet), against a baseline
 * measured in the same run: JSON.parse of the same records in this process, the least any consumer
 * of the log does. It is the figure behind the ingest benchmark's ratio: the archive alone costs
 * more CPU per event than the parse-only endpoint's whole request. Ends with one JSON line.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LiveArchiveWriter } from '../src/workbench/lakehouse/live.js';

const N = 50_000;
const ROUNDS = 4;
const enc = new TextEncoder();
const dims = JSON.stringify({ country: 'United Kingdom', device: 'web', tier: 'free', first_seen: '2026-01-01T00:00:00.000Z' });
const record = (i: number) =>
  enc.encode(
    `{"event_id":"e${i}","time":"${new Date(Date.now() - 60_000 + (i % 60_000)).toISOString()}","user_id":"retail-${12000 + (i % 4000)}","event":"purchase",` +
      `"props":{"invoice":"5${i}","stock_code":"85123A","description":"WHITE HANGING HEART T-LIGHT HOLDER","quantity":6,"unit_price":2.55,"amount":15.3,"country":"United Kingdom"},` +
      `"dims":${dims},"experiments":{},"received_at":"${new Date().toISOString()}"}`,
  );

(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wb-bench-archive-'));
  try {
    const writer = await LiveArchiveWriter.open(dir);
    const decoder = new TextDecoder();
    const archive: number[] = [];
    const parse: number[] = [];
    let first = 0;
    for (let round = 0; round <= ROUNDS; round++) {
      const records = Array.from({ length: N }, (_, i) => record(first + i));
      let c0 = process.cpuUsage();
      await writer.write(records, first, first + N - 1);
      let c = process.cpuUsage(c0);
      if (round > 0) archive.push((c.user + c.system) / N); // round 0 warms up
      c0 = process.cpuUsage();
      let sink = 0;
      for (const r of records) sink += (JSON.parse(decoder.decode(r)) as { props: { quantity: number } }).props.quantity;
      c = process.cpuUsage(c0);
      if (sink < 0) console.log(sink);
      if (round > 0) parse.push((c.user + c.system) / N);
      first += N;
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const a = median(archive);
    const p = median(parse);
    console.log(
      `live archive: ${a.toFixed(2)} µs CPU per event (batches of ${N.toLocaleString('en-US')}, all threads); JSON.parse of the same records: ${p.toFixed(2)} µs; ratio ${(a / p).toFixed(1)}`,
    );
    console.log(
      JSON.stringify({
        bench: 'archive',
        events_per_batch: N,
        archive_cpu_us_per_event: Math.round(a * 100) / 100,
        parse_cpu_us_per_event: Math.round(p * 100) / 100,
        ratio: Math.round((a / p) * 10) / 10,
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();
