import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { oltpUrl } from '../../workbench/config.js';
import { InputError } from '../../workbench/errors.js';
import { CARD_CSS, cardBlocks, loadModelCard } from '../../workbench/models/card.js';
import type { ModelRegistry } from '../../workbench/models/registry.js';
import { openTracking } from '../../workbench/runs/index.js';
import type { TrackingStore } from '../../workbench/runs/store.js';
import type { Route } from './route.js';

export interface ModelCardDeps {
  registry: ModelRegistry;
  /** The data dir: without `openRuns`, runs are read from the store `openTracking(WB_OLTP_URL, dataDir)`, as the jobs the service starts record them. */
  dataDir?: string;
  /** Opens the run store for one request (closed after it); the card says "not recorded" without one. */
  openRuns?: () => Promise<TrackingStore>;
}

const NAME = /^[a-z][a-z0-9-]{0,63}$/;

/**
 * Model cards: a page per version at `/models/<name>/<version>` (public; it holds no data: it asks
 * for a read key, from the address's fragment or the one the dashboard stored, and fetches the card)
 * and the card itself at `/v1/models/<name>/<version>/card` with a read key. The card comes as data
 * and as blocks of text the page draws as text nodes: nothing in a card is ever read as HTML.
 * `<version>` may be an alias (`champion`).
 */
export function modelCardRoutes(deps: ModelCardDeps): Route[] {
  const dataDir = deps.dataDir;
  const openRuns = deps.openRuns ?? (dataDir ? () => openTracking(oltpUrl(), dataDir) : undefined);
  const page = readFileSync(join(__dirname, 'model-card.html'), 'utf8').replace('/* CARD_CSS */', CARD_CSS);
  return [
    {
      method: 'get',
      path: '/models/:name/:version',
      summary:
        "A model version's card page: purpose, lineage, features' training distribution, metrics with intervals, calibration, gate and champion comparison (data from /v1/models/:name/:version/card with a read key).",
      responses: { 200: 'an HTML page' },
      handler: (_req, res) =>
        void res
          .type('html')
          .set({
            'Cache-Control': 'no-store',
            'Content-Security-Policy':
              "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'",
          })
          .send(page),
    },
    {
      method: 'get',
      path: '/v1/models/:name/:version/card',
      summary:
        "A model version's card (`:version` a version or an alias): { card, blocks }, the card as data and as text blocks (heading, text, facts, table) in reading order. What was not recorded is said so.",
      scope: 'read',
      responses: { 200: '{ card, blocks }', 400: 'not a model name, version or alias', 404: 'no such model, version or alias' },
      handler: async (req, res) => {
        const name = String(req.params.name);
        if (!NAME.test(name)) throw new InputError(`${JSON.stringify(name.slice(0, 40))} is not a model name`);
        const store = openRuns ? await openRuns() : undefined;
        try {
          const card = await loadModelCard(deps.registry, name, String(req.params.version), store);
          res.set('Cache-Control', 'no-store').json({ card, blocks: cardBlocks(card) });
        } finally {
          await store?.close();
        }
      },
    },
  ];
}
