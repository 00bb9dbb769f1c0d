import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { listReports, readReport, ReportChangedError } from '../../workbench/notebooks/gallery.js';
import type { ErrorLogger } from '../errors.js';
import type { Route } from './route.js';

/**
 * The report gallery: every notebook run published with `wb nb run --publish`, read from the data
 * dir's `reports/` folder at each request (so a run published while the service runs shows at once).
 * The pages are public and hold no data; the list and the reports need a read key. A report is HTML
 * its notebook produced, scripts included: the page shows it in a sandboxed frame, and its answer
 * carries a CSP sandbox too, so its scripts never run with the service's origin (nor see the key).
 */
export function reportRoutes(dataDir: string, logger: ErrorLogger): Route[] {
  const page = readFileSync(join(__dirname, 'reports.html'), 'utf8');
  const sendPage: Route['handler'] = (_req, res) => void res.type('html').set('Cache-Control', 'no-store').send(page);
  return [
    {
      method: 'get',
      path: '/reports',
      summary:
        'The report gallery page: published notebook runs with their title, parameters, time, commit, status and duration, newest first ' +
        '(data from /v1/reports with a read key).',
      responses: { 200: 'an HTML page' },
      handler: sendPage,
    },
    {
      method: 'get',
      path: '/reports/:id',
      summary: 'The gallery page showing one report in a sandboxed frame (the report comes from /v1/reports/:id with a read key).',
      responses: { 200: 'an HTML page' },
      handler: sendPage,
    },
    {
      method: 'get',
      path: '/v1/reports',
      summary:
        'Published notebook runs, newest first (at most 500): id, title, notebook, parameters, startedAt, finishedAt, seconds, ' +
        'status (ok or failed), gitCommit, bytes.',
      scope: 'read',
      responses: {
        200: '{ reports: [{ id, title, notebook, parameters: [{ name, value }], startedAt, finishedAt, seconds, status, gitCommit, sha256, bytes, error? }] }',
      },
      handler: (_req, res) => {
        const reports = listReports(dataDir, (id, reason) =>
          logger.error({ report: id, reason }, 'a published report is not valid; it is left out of the gallery'),
        );
        res.set('Cache-Control', 'no-store').json({ reports });
      },
    },
    {
      method: 'get',
      path: '/v1/reports/:id',
      summary: "One published run's HTML report, after checking it still has the SHA-256 it was published with (409 report_changed otherwise).",
      scope: 'read',
      responses: { 200: 'text/html', 400: 'not a report id', 404: 'no such report', 409: 'the report changed since it was published' },
      handler: (req, res) => {
        let report: ReturnType<typeof readReport>;
        try {
          report = readReport(dataDir, String(req.params.id));
        } catch (err) {
          // Someone changed a file under the data dir: the reader sees a refusal, the operator the reason.
          if (err instanceof ReportChangedError) logger.error({ err, report: req.params.id }, 'refused to serve a report that changed since it was published');
          throw err;
        }
        res
          .status(200)
          .type('html')
          .set({
            'Cache-Control': 'no-store',
            'Content-Security-Policy': 'sandbox allow-scripts',
            'X-Content-Type-Options': 'nosniff',
            'X-Report-Sha256': report.meta.sha256,
          })
          .send(report.html);
      },
    },
  ];
}
