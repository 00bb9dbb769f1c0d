import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, it } from 'node:test';
import { AppSimulator, type SimulationConfig } from '../../src/app/simulator.js';
import type { AnomalyAlert as Alert, Incident } from '../../src/serving/observability/alerts.js';
import type { Event } from '../../src/workbench/event.js';
import { startTestService, type TestService } from '../helpers/service.js';

const HOUR = 3_600_000;
// Six weeks from a Monday, everyone signed up on day one: a steady product with daily and weekly cycles.
const BASE: Partial<SimulationConfig> = { seed: 21, users: 4000, days: 42, start: '2025-01-06', signup_days: 1 };
const OUTAGE_START = '2025-02-12T13:00:00Z'; // a Wednesday afternoon in week 6
const STATED_DELAY_MS = 90 * 60_000;

/** Replays the simulator through the service's ingest, in time order, as the app would send it. */
async function replay(t: TestService, config: Partial<SimulationConfig>): Promise<number> {
  let batch: Event[] = [];
  let sent = 0;
  const flush = async () => {
    const res = await t.service.ingest.ingest(batch);
    assert.equal(res.rejected.length, 0, JSON.stringify(res.rejected.slice(0, 3)));
    sent += batch.length;
    batch = [];
  };
  for (const day of new AppSimulator(config).days()) {
    for (const e of day.events) {
      batch.push(e);
      if (batch.length === 5000) await flush();
    }
  }
  if (batch.length > 0) await flush();
  return sent;
}

async function caughtUp(t: TestService): Promise<void> {
  const end = await t.service.log.next();
  const deadline = Date.now() + 120_000;
  while (t.service.runners.find((r) => r.consumer.name === 'metrics')!.offset < end) {
    if (Date.now() > deadline) throw new Error('the metrics consumer did not catch up');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('anomaly alerts on a replayed simulation', { timeout: 300_000 }, () => {
  it('raises none on a clean replay of six weeks', async () => {
    const t = await startTestService({ ingest: { maxAgeMs: 10 * 365 * 86_400_000 } });
    try {
      const sent = await replay(t, BASE);
      await caughtUp(t);
      const alerts = (await (await t.call('/v1/alerts', { key: t.keys.read })).json()) as { alerts: Alert[] };
      assert.deepEqual(
        alerts.alerts.map((a) => `${a.series} ${a.pattern} ${a.direction} ${a.windowStart} ${a.observed}/${Math.round(a.expected)} z ${a.score.toFixed(1)}`),
        [],
        `${sent} events replayed`,
      );
    } finally {
      await t.stop();
    }
  });

  it('alerts on exactly the series of an outage in one country, within the stated delay, and calls the webhook', async () => {
    const received: { alert?: Alert; incident?: Incident }[] = [];
    const hook = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        received.push(JSON.parse(body) as { alert?: Alert; incident?: Incident });
        res.end('ok');
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const port = (hook.address() as { port: number }).port;
    const t = await startTestService({ ingest: { maxAgeMs: 10 * 365 * 86_400_000 }, alertWebhook: `http://127.0.0.1:${port}/alerts` });
    try {
      await replay(t, { ...BASE, outage: { country: 'GB', start: OUTAGE_START, hours: 3 } });
      await caughtUp(t);
      const { alerts, incidents } = (await (await t.call('/v1/alerts', { key: t.keys.read })).json()) as { alerts: Alert[]; incidents: Incident[] };
      assert.ok(alerts.length > 0, 'the outage was detected');
      const series = [...new Set(alerts.map((a) => a.series))];
      // GB's events stop altogether, so every event-by-country series of GB with enough traffic
      // alerts; nothing else may (device series mix countries and drop only by GB's share).
      for (const a of alerts) {
        assert.equal(a.labels.country, 'GB', `unexpected alert on ${a.series}`);
        assert.equal(a.direction, 'drop');
      }
      assert.ok(series.includes('events{country="GB",event="login"}'), `alerted: ${series.join(', ')}`);
      const first = Math.min(...alerts.map((a) => Date.parse(a.detectedAt)));
      const delay = first - Date.parse(OUTAGE_START);
      assert.ok(delay >= 0 && delay <= STATED_DELAY_MS, `first alert ${delay / 60_000} minutes after the outage began (stated: at most 90)`);
      assert.ok(Date.parse(alerts.at(-1)!.windowStart) < Date.parse(OUTAGE_START) + 3 * HOUR);
      // One incident per alert: it spans the outage (its intervals off reach past the first two hours;
      // the level-shift test, a median over 6 intervals, stays off for a while after), its peak
      // inside it, resolved within hours of its end.
      assert.deepEqual(incidents.map((i) => i.id).sort(), alerts.map((a) => a.incident).sort());
      const outage = Date.parse(OUTAGE_START);
      for (const i of incidents) {
        assert.ok(i.resolved && Date.parse(i.resolvedAt!) < outage + 3 * HOUR + 8 * HOUR, JSON.stringify(i));
        assert.ok(Date.parse(i.peak.at) >= outage && Date.parse(i.peak.at) < outage + 3 * HOUR, JSON.stringify(i));
        assert.ok(Date.parse(i.end) >= outage + 2 * HOUR && i.intervals >= 8, JSON.stringify(i));
      }
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(received.filter((b) => b.alert).length, alerts.length, 'the webhook received every alert');
      assert.ok(
        received.filter((b) => b.alert).every((b) => b.incident?.id === b.alert!.incident),
        'each with the incident it opened',
      );
      assert.deepEqual(
        received
          .filter((b) => !b.alert)
          .map((b) => b.incident!.id)
          .sort(),
        incidents.map((i) => i.id).sort(),
        'and each incident once more when it was resolved',
      );
      console.log(`# outage detected ${delay / 60_000} minutes after it began; ${alerts.length} alerts on ${series.join(', ')}`);
    } finally {
      await t.stop();
      hook.close();
    }
  });
});
