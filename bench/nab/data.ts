/**
 * The NAB realKnownCause series shipped in data/nab (see its SOURCE.md and LICENSE.txt): rows in
 * file order, the labelled windows, and NAB's published detections of two detectors.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { z } from 'zod';
import type { NabFile } from './scorer.js';

export const NAB_DIR = join(__dirname, '../../data/nab');

/** The seven realKnownCause series, by NAB's file name without `.csv`. */
export const NAB_SERIES = [
  'nyc_taxi',
  'machine_temperature_system_failure',
  'ambient_temperature_system_failure',
  'cpu_utilization_asg_misconfiguration',
  'ec2_request_latency_system_failure',
  'rogue_agent_key_hold',
  'rogue_agent_key_updown',
] as const;
export type NabSeriesName = (typeof NAB_SERIES)[number];

export interface NabSeries extends NabFile {
  name: NabSeriesName;
  values: number[];
  /** Timestamps read as UTC (NAB's have no zone; they are the source's local time). */
  times: number[];
  labels: string[];
}

/** NAB's `YYYY-MM-DD HH:MM:SS`, read as UTC so that its local days and hours stay as they are. */
export const parseNabTime = (s: string): number => Date.parse(`${s.replace(' ', 'T')}Z`);

const Labels = z.record(z.string(), z.object({ labels: z.array(z.string()), windows: z.array(z.tuple([z.string(), z.string()])) }));

export function loadNabSeries(name: NabSeriesName, dir = NAB_DIR): NabSeries {
  const text = gunzipSync(readFileSync(join(dir, `${name}.csv.gz`))).toString('utf8');
  const rows = text
    .split(/\r?\n/)
    .slice(1)
    .filter((l) => l.length > 0);
  const timestamps: string[] = [];
  const values: number[] = [];
  for (const row of rows) {
    const [t, v] = row.split(',');
    timestamps.push(t!);
    values.push(Number(v));
  }
  const labels = Labels.parse(JSON.parse(readFileSync(join(dir, 'realKnownCause_labels_windows.json'), 'utf8')))[`realKnownCause/${name}.csv`];
  if (!labels) throw new Error(`no labels for ${name}`);
  return { name, timestamps, values, times: timestamps.map(parseNabTime), windows: labels.windows, labels: labels.labels };
}

const Published = z.record(
  z.string(),
  z.record(
    z.string(),
    z.object({
      threshold: z.number(),
      score: z.number(),
      tp_tn_fp_fn: z.tuple([z.number(), z.number(), z.number(), z.number()]),
      detections: z.array(z.string()),
    }),
  ),
);
export type PublishedDetections = z.infer<typeof Published>;

/** NAB's published standard-profile detections, threshold, raw score and row counts, by detector and series. */
export function loadPublishedDetections(dir = NAB_DIR): PublishedDetections {
  return Published.parse(JSON.parse(readFileSync(join(dir, 'published_detections.json'), 'utf8')));
}
