/**
 * The baseline of the ingest benchmark: an HTTP endpoint that parses the same batches with the same
 * body parser and limits as POST /v1/events, and does nothing else (no validation, no enrichment,
 * no log, no consumers). Prints its URL on standard output.
 */
import express from 'express';

const app = express();
app.post('/v1/events', express.json({ limit: 5 * 1024 * 1024, type: 'application/json' }), (req, res) => {
  const batch = req.body as unknown[];
  res.json({ accepted: batch.length, duplicates: 0, rejected: [] });
});
const server = app.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  console.log(`listening http://127.0.0.1:${port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
