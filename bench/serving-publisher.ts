/**
 * bench:serving's publisher, in a process of its own, so that the client's work (checking and
 * serialising the bundle) never holds the load generator's event loop, as it would not when a data
 * scientist publishes from a notebook on another machine.
 *
 *   WB_ADMIN_KEY=<key> node --import tsx bench/serving-publisher.ts <bundle.json> <url>
 *
 * Reads and checks the bundle (loading the model once, so publishing does not pay for the first
 * load), makes one request to the service (so its HTTP client is loaded), prints `ready`, publishes
 * as champion when a line arrives on its standard input, prints `published <the service's answer as
 * JSON>` and exits.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { checkBundle } from '../src/workbench/models/bundle.js';
import { publish } from '../src/workbench/models/publish.js';
import { silentProgress } from '../src/workbench/progress.js';

async function main(): Promise<void> {
  const [file, url] = process.argv.slice(2);
  const bundle = await checkBundle(JSON.parse(readFileSync(file!, 'utf8')));
  // Node's fetch loads its client on first use (tens of milliseconds of CPU): done before the
  // deploy, so the publisher's own start costs the service's shared cores nothing during it.
  await (await fetch(`${url}/healthz`)).arrayBuffer();
  console.log('ready');
  for await (const _line of createInterface({ input: process.stdin })) {
    const result = await publish(bundle, { url, key: process.env.WB_ADMIN_KEY, alias: 'champion', progress: silentProgress });
    console.log(`published ${JSON.stringify(result)}`);
    process.exit(0);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
