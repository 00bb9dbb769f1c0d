/**
 * Feature benchmarks (npm run bench:features):
 *   - online feature updates per second in process (goal: 200,000 events/s), folding the real
 *     retail log through the retail feature set (12 features, bucketed windows, last-50 list), as
 *     the service's features consumer does (update, then expire); the baseline, in the same run, is
 *     the same loop keeping only a per-user event count in a Map;
 *   - a point-in-time training set of 100,000 spine rows x 10 features over the retail archive
 *     (goal: under 5 s), and the ratio to a hand-written DuckDB ASOF JOIN computing one feature
 *     (the lifetime spend before each moment) for the same spine.
 * Uses the lakehouse in .wb/ci (built if missing). Ends with one JSON line.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { retailFeatures } from '../src/workbench/features/catalog.js';
import { trainingSetSql } from '../src/workbench/features/offline.js';
import { OnlineFeatures, type FeatureEvent, type UserState } from '../src/workbench/features/online.js';
import { Lakehouse } from '../src/workbench/lakehouse.js';
import { sql } from '../src/workbench/sql.js';
import { round } from './support.js';

async function main(): Promise<void> {
  if (!existsSync('.wb/ci/lake/manifest.json')) {
    spawnSync(process.execPath, ['bin/wb.cjs', 'lake', 'build', '--data-dir', '.wb/ci', '--users', '300', '--days', '60'], { stdio: 'inherit' });
  }
  const lake = await Lakehouse.open('.wb/ci/lake');
  try {
    // --- online updates
    const rows = await lake.query<{ event_id: string; t: number; user_id: string; event: string; props: string }>(sql`
      SELECT event_id, CAST(epoch_ms(time) AS DOUBLE) AS t, user_id, event, CAST(props AS VARCHAR) AS props FROM events WHERE source = 'retail' ORDER BY time, event_id`);
    const events: FeatureEvent[] = rows.map((r) => ({
      event_id: r.event_id,
      time: r.t,
      user_id: r.user_id,
      event: r.event,
      props: JSON.parse(r.props) as Record<string, unknown>,
    }));
    const compiled = new OnlineFeatures(retailFeatures);
    const fold = () => {
      const states = new Map<string, UserState>();
      const started = performance.now();
      for (const e of events) {
        let s = states.get(e.user_id);
        if (!s) states.set(e.user_id, (s = compiled.emptyState()));
        compiled.update(s, e);
        if (compiled.expire(s, e.time)) states.delete(e.user_id);
      }
      return events.length / ((performance.now() - started) / 1000);
    };
    const count = () => {
      const counts = new Map<string, number>();
      const started = performance.now();
      for (const e of events) counts.set(e.user_id, (counts.get(e.user_id) ?? 0) + 1);
      return events.length / ((performance.now() - started) / 1000);
    };
    fold(); // warm up
    const online = Math.max(fold(), fold(), fold());
    const baseline = Math.max(count(), count(), count());
    console.log(
      `online updates: ${Math.round(online).toLocaleString('en-US')} events/s over ${events.length.toLocaleString('en-US')} retail events x ${retailFeatures.length} features (a bare per-user count: ${Math.round(baseline).toLocaleString('en-US')}/s)`,
    );

    // --- point-in-time training set
    await lake.run(sql`CREATE OR REPLACE TEMP TABLE bench_spine AS
      WITH customers AS (SELECT DISTINCT user_id FROM events WHERE source = 'retail')
      SELECT c.user_id, TIMESTAMP '2011-01-01' + to_seconds(CAST(floor(random() * 340 * 86400) AS BIGINT)) AS as_of
      FROM customers c, range(30) LIMIT 100000`);
    await lake.run(sql`CREATE OR REPLACE TEMP TABLE bench_events AS SELECT * FROM events WHERE source = 'retail'`);
    const ten = retailFeatures.filter((f) => f.aggregation !== 'last_n').slice(0, 10);
    const time = async (q: ReturnType<typeof sql>) => {
      const started = performance.now();
      await lake.query(sql`SELECT count(*) AS n FROM (${q})`);
      return (performance.now() - started) / 1000;
    };
    await time(trainingSetSql(ten.slice(0, 1), { spine: sql`bench_spine`, events: sql`bench_events` })); // warm the file cache
    const pit = Math.min(
      await time(trainingSetSql(ten, { spine: sql`bench_spine`, events: sql`bench_events` })),
      await time(trainingSetSql(ten, { spine: sql`bench_spine`, events: sql`bench_events` })),
    );
    // The hand-written reference for one feature: cumulative spend per customer, then an ASOF JOIN.
    const asof = sql`
      WITH spend AS (
        SELECT user_id, time, sum(CAST(json_extract(props, '$.amount') AS DOUBLE)) OVER (PARTITION BY user_id ORDER BY time, event_id) AS spend
        FROM bench_events WHERE event = 'purchase')
      SELECT s.user_id, s.as_of, coalesce(p.spend, 0) AS spend_lifetime FROM bench_spine s ASOF LEFT JOIN spend p ON s.user_id = p.user_id AND p.time < s.as_of`;
    const asofSeconds = Math.min(await time(asof), await time(asof));
    const withList = await time(trainingSetSql(retailFeatures, { spine: sql`bench_spine`, events: sql`bench_events` }));
    console.log(
      `training set: 100,000 spine rows x ${ten.length} features in ${round(pit, 2)} s (goal < 5 s); one feature by hand with ASOF JOIN ${round(asofSeconds, 2)} s (ratio ${round(pit / asofSeconds, 1)}); all ${retailFeatures.length} features with the last-50 list ${round(withList, 2)} s`,
    );
    console.log(
      JSON.stringify({
        bench: 'features',
        online_updates_per_second: Math.round(online),
        online_baseline_count_per_second: Math.round(baseline),
        online_to_baseline_ratio: round(online / baseline, 3),
        online_goal_met: online >= 200_000,
        training_set_rows: 100_000,
        training_set_features: ten.length,
        training_set_seconds: round(pit, 2),
        asof_join_one_feature_seconds: round(asofSeconds, 2),
        training_set_to_asof_ratio: round(pit / asofSeconds, 2),
        training_set_all_features_with_list_seconds: round(withList, 2),
        training_set_goal_met: pit < 5,
      }),
    );
  } finally {
    lake.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
