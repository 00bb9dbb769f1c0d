import { buildProgram } from '../../src/cli/main.js';

/** Runs `wb --data-dir <dataDir> <args>` in this process and returns what it printed on standard output. */
export async function wbInProcess(dataDir: string, ...args: string[]): Promise<string> {
  const out: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = () => undefined;
  try {
    await buildProgram(args[0]!).parseAsync(['node', 'wb', '--data-dir', dataDir, ...args]);
  } finally {
    console.log = log;
    console.error = error;
  }
  return out.join('\n');
}
