import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { WorkbenchError } from '../errors.js';

/** The repository root: the kernel spec, and the `src/` that notebooks import, live under it. */
export const REPO_ROOT = resolve(__dirname, '..', '..', '..');
export const KERNEL_NAME = 'plg-workbench';

/** A kernel spec (jupyter_client's `kernel.json`), the fields a client needs to start the kernel. */
export interface KernelSpec {
  name: string;
  /** Command line with `{connection_file}` and `{resource_dir}` still to fill in. */
  argv: string[];
  displayName: string;
  language: string;
  /** `signal`: SIGINT to the kernel's process; `message`: an interrupt_request on the control channel. */
  interruptMode: 'signal' | 'message';
  env: Record<string, string>;
  /** The directory holding kernel.json (`{resource_dir}`). */
  resourceDir: string;
}

const KernelJson = z.object({
  argv: z.array(z.string()).min(1),
  display_name: z.string(),
  language: z.string(),
  interrupt_mode: z.enum(['signal', 'message']).default('signal'),
  env: z.record(z.string(), z.string()).default({}),
});

/**
 * This checkout's kernel spec, `jupyter/kernels/<name>/kernel.json` under the repository root. Only
 * this one, never whatever a JUPYTER_PATH lists first: its launcher runs this checkout's code.
 */
export function findKernelSpec(name: string = KERNEL_NAME, root: string = REPO_ROOT): KernelSpec {
  const resourceDir = join(root, 'jupyter', 'kernels', name);
  const file = join(resourceDir, 'kernel.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new WorkbenchError(`the kernel spec ${name} was not found at ${file} (see README: Notebooks)`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new WorkbenchError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  const parsed = KernelJson.safeParse(json);
  if (!parsed.success) throw new WorkbenchError(`${file}: not a kernel spec: ${parsed.error.issues[0]!.path.join('.')}: ${parsed.error.issues[0]!.message}`);
  const spec = parsed.data;
  return { name, argv: spec.argv, displayName: spec.display_name, language: spec.language, interruptMode: spec.interrupt_mode, env: spec.env, resourceDir };
}

/** The spec's command line for one connection file. */
export function kernelArgv(spec: KernelSpec, connectionFile: string): string[] {
  return spec.argv.map((arg) => arg.replaceAll('{connection_file}', connectionFile).replaceAll('{resource_dir}', spec.resourceDir));
}
