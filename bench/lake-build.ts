/**
 * Lakehouse benchmark (npm run bench:lake).
 *
 * 1. Build: `buildLakehouse` on the full retail log, in rows read per second, against a baseline
 *    measured in the same run: DuckDB's own CSV reader writing the same file to partitioned Parquet
 *    with no validation, no quarantine and no manifest (the least work that gives an archive).
 * 2. Query overhead: a GROUP BY over the archive through `Lakehouse.query`, against the same SQL on
 *    a bare @duckdb/node-api connection over the same files. Goal: at most 10% overhead.
 * Ends with one JSON line of the figures.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lakehouse, buildLakehouse, raw, sql } from '../src/workbench/index.js';

const RETAIL = 'data/online-retail-uci/online_retail.csv.gz';
const RETAIL_ROWS = 541_909;
/** Two GROUP BYs: over the raw event archive (props parsed from JSON) and over the typed lines. */
const QUERIES = {
  archive: `SELECT props->>'country' AS country, count(*) AS lines, sum(CAST(props->>'amount' AS DOUBLE)) AS revenue,
    count(DISTINCT user_id) AS customers FROM events WHERE source = 'retail' GROUP BY 1 ORDER BY 3 DESC`,
  typed: `SELECT country, date_trunc('month', time) AS month, count(*) AS lines, sum(amount) AS revenue,
    count(DISTINCT customer_id) AS customers FROM retail_lines GROUP BY ALL ORDER BY 1, 2`,
};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'wb-bench-lake-'));
  try {
    // --- build ---------------------------------------------------------------------------------
    const buildSeconds: number[] = [];
    const baselineSeconds: number[] = [];
    for (let round = 0; round < 2; round++) {
      let t = performance.now();
      await buildLakehouse({ lakeDir: join(dir, 'lake'), retail: RETAIL, force: true });
      buildSeconds.push((performance.now() - t) / 1000);

      const instance = await DuckDBInstance.create(':memory:');
      const conn = await instance.connect();
      const out = join(dir, `baseline-${round}`);
      t = performance.now();
      await conn.run(`COPY (SELECT *, CAST(InvoiceDate AS DATE) AS date FROM read_csv('${RETAIL}', header = true))
        TO '${out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date))`);
      baselineSeconds.push((performance.now() - t) / 1000);
      conn.closeSync();
      instance.closeSync();
      console.log(`round ${round + 1}: build ${buildSeconds[round]!.toFixed(2)} s, DuckDB read_csv -> Parquet ${baselineSeconds[round]!.toFixed(2)} s`);
    }
    const build = median(buildSeconds);
    const baseline = median(baselineSeconds);

    // --- query overhead ----------------------------------------------------------------------------
    const lake = await Lakehouse.open(join(dir, 'lake'));
    const instance = await DuckDBInstance.create(':memory:');
    const conn = await instance.connect();
    await conn.run(`CREATE VIEW events AS SELECT * FROM read_parquet('${join(dir, 'lake', 'archive', 'events', 'source=*', 'date=*', '*.parquet')}',
      hive_partitioning = true, hive_types = {'source': VARCHAR, 'date': DATE})`);
    await conn.run(`CREATE VIEW retail_lines AS SELECT * FROM read_parquet('${join(dir, 'lake', lake.manifest.tables.retail_lines!.file.path)}')`);
    const timings: Record<string, { api: number; direct: number }> = {};
    for (const [name, text] of Object.entries(QUERIES)) {
      const api: number[] = [];
      const direct: number[] = [];
      for (let i = 0; i < 25; i++) {
        // Alternate so that drift in machine load hits both sides alike; the first rounds warm up.
        let t = performance.now();
        const a = await lake.query(sql`${raw(text)}`);
        api.push(performance.now() - t);
        t = performance.now();
        const b = (await conn.runAndReadAll(text)).getRowObjectsJS();
        direct.push(performance.now() - t);
        if (a.length !== b.length) throw new Error(`${name}: the two sides disagree`);
      }
      timings[name] = { api: median(api.slice(5)), direct: median(direct.slice(5)) };
    }
    lake.close();
    conn.closeSync();
    instance.closeSync();
    const ratio = (n: string) => timings[n]!.api / timings[n]!.direct;

    const figures = {
      bench: 'lake',
      retail_rows: RETAIL_ROWS,
      build_seconds: round(build),
      build_rows_per_second: Math.round(RETAIL_ROWS / build),
      baseline_duckdb_csv_to_parquet_seconds: round(baseline),
      build_to_baseline_ratio: round(build / baseline),
      archive_group_by_api_ms: round(timings.archive!.api),
      archive_group_by_direct_ms: round(timings.archive!.direct),
      archive_query_overhead_ratio: round(ratio('archive')),
      typed_group_by_api_ms: round(timings.typed!.api),
      typed_group_by_direct_ms: round(timings.typed!.direct),
      typed_query_overhead_ratio: round(ratio('typed')),
      query_overhead_goal_met: ratio('archive') <= 1.1 && ratio('typed') <= 1.1,
    };
    console.log(
      `\nbuild: ${figures.build_rows_per_second.toLocaleString('en-US')} rows/s (${figures.build_to_baseline_ratio}x DuckDB's bare CSV-to-Parquet copy, which validates nothing)`,
    );
    for (const name of Object.keys(QUERIES)) {
      console.log(
        `${name} GROUP BY: ${round(timings[name]!.api)} ms through Lakehouse.query vs ${round(timings[name]!.direct)} ms direct: ratio ${round(ratio(name))} (goal <= 1.10)`,
      );
    }
    console.log(JSON.stringify(figures));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
