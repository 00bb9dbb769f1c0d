import express from 'express';
import { z } from 'zod';
import { TRAINING_DAGS } from '../../workbench/jobs/training.js';
import { parseBody, parseQuery } from '../errors.js';
import type { JobScheduler } from '../jobs/scheduler.js';
import type { Route } from './route.js';

const RunsQuery = z.object({ dag: z.string().max(64).optional(), limit: z.coerce.number().int().min(1).max(500).default(50) });
const Trigger = z.object({ params: z.record(z.string().regex(/^[A-Za-z]\w{0,31}$/), z.string().max(500)).default({}) }).strict();

/** Training jobs over HTTP: the DAGs and the schedule, every run's record, and starting a run. */
export function jobRoutes(scheduler: JobScheduler): Route[] {
  return [
    {
      method: 'get',
      path: '/v1/jobs',
      summary: 'The training DAGs with their steps, and the schedule: how often each runs, when next, and the run in progress.',
      scope: 'read',
      responses: { 200: '{ dags: [{ name, description, steps: [{ name, needs }] }], schedule: [{ dag, everyMs, nextAt, running }] }' },
      handler: (_req, res) => {
        res.json({
          dags: TRAINING_DAGS.map((d) => ({ name: d.name, description: d.description, steps: d.jobs.map((j) => ({ name: j.name, needs: j.needs ?? [] })) })),
          schedule: scheduler.status(),
        });
      },
    },
    {
      method: 'get',
      path: '/v1/jobs/runs',
      summary: 'Job runs, newest first: start, end, status, and each step with its outputs or error.',
      scope: 'read',
      query: RunsQuery,
      responses: { 200: '{ runs: [run] }' },
      handler: async (req, res) => {
        const q = parseQuery(RunsQuery, req.query);
        res.json({ runs: await scheduler.runs.list(q) });
      },
    },
    {
      method: 'get',
      path: '/v1/jobs/runs/:run_id',
      summary: 'One job run.',
      scope: 'read',
      responses: { 200: 'the run', 404: 'no such run' },
      handler: async (req, res) => void res.json(await scheduler.runs.get(String(req.params.run_id))),
    },
    {
      method: 'post',
      path: '/v1/jobs/:dag/runs',
      summary: 'Start a run of a DAG now, in its own process; the answer comes at once with the run id to follow.',
      scope: 'admin',
      body: { contentTypes: ['application/json'], schema: Trigger, description: '{ params?: { minAuc, alias, ... } }' },
      responses: { 202: '{ run_id }', 400: 'an unknown DAG or bad params', 409: 'a run of this DAG is in progress' },
      before: [express.json({ limit: 64 * 1024 })],
      handler: (req, res) => {
        const body = parseBody(Trigger, req.body ?? {}, 'send { "params": { "minAuc": "0.7" } } or {}');
        res.status(202).json({ run_id: scheduler.start(String(req.params.dag), `api:${req.apiKey?.name ?? '?'}`, body.params) });
      },
    },
  ];
}
