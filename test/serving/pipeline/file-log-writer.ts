/**
 * Child process for the crash test in file-log.test.ts: appends small batches from a few concurrent
 * lanes until it is killed, printing `first next lane:seq` for every acknowledged batch.
 */
import { FileEventLog } from '../../../src/serving/pipeline/file-log.js';

async function main(dir: string, segmentBytes: number): Promise<void> {
  const log = await FileEventLog.open(dir, { segmentBytes });
  process.stdout.write('ready\n');
  const lane = async (id: number) => {
    for (let seq = 0; ; seq++) {
      const tag = `${id}:${seq}`;
      const { first, next } = await log.append(Array.from({ length: 5 }, (_, j) => Buffer.from(`${tag}:${j}`)));
      process.stdout.write(`${first} ${next} ${tag}\n`);
    }
  };
  await Promise.all([0, 1, 2, 3].map(lane));
}

main(process.argv[2]!, Number(process.argv[3])).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
