/**
 * Child process for jetstream-multi-writer.test.ts: one writer (a service instance) on a shared
 * stream. Appends `batches` batches of `size` records from four concurrent lanes, each record's
 * payload and id `<tag>:<lane>:<seq>:<j>`, and prints one JSON line per acknowledged batch:
 * `{ ids, offsets, duplicates }`. Then appends again the batches listed in `RETRY` (a JSON array of
 * id lists, e.g. another writer's batches: a client resending them here) and prints them the same way.
 */
import { offsetsOf } from '../../../src/serving/pipeline/event-log.js';
import { JetStreamEventLog } from '../../../src/serving/pipeline/jetstream-log.js';

async function main(stream: string, tag: string, batches: number, size: number): Promise<void> {
  const log = await JetStreamEventLog.open({ stream });
  const report = async (ids: string[]) => {
    const appended = await log.append(ids, ids);
    process.stdout.write(`${JSON.stringify({ ids, offsets: offsetsOf(appended, ids.length), duplicates: appended.duplicates ?? [] })}\n`);
  };
  let left = batches;
  const lane = async (l: number) => {
    for (let seq = 0; left > 0; seq++) {
      left--;
      await report(Array.from({ length: size }, (_, j) => `${tag}:${l}:${seq}:${j}`));
    }
  };
  await Promise.all([0, 1, 2, 3].map(lane));
  const retry = JSON.parse(process.env.RETRY ?? '[]') as string[][];
  for (const ids of retry) await report(ids);
  await log.close();
}

main(process.argv[2]!, process.argv[3]!, Number(process.argv[4]), Number(process.argv[5])).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
