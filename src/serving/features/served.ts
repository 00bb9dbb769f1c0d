import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConflictError, IntegrityError } from '../../workbench/errors.js';
import { feature, featureSet, featureSetVersion, type Feature, type FeatureInput } from '../../workbench/features/definition.js';
import { writeFileAtomicAsync } from '../../workbench/files.js';

/**
 * The feature set the service serves: every definition registered so far (by publishing a model
 * bundle, or directly), each name once. Kept in a file in the data dir; each definition's version
 * is checked against its content when the file is read, so an edited file is refused.
 */
export class ServedFeatures {
  private constructor(
    private readonly path: string,
    private list: Feature[],
  ) {}

  static open(path: string): ServedFeatures {
    if (!existsSync(path)) return new ServedFeatures(path, []);
    const stored = JSON.parse(readFileSync(path, 'utf8')) as { features: Feature[] };
    const list = stored.features.map((f) => {
      const { version, ...definition } = f;
      const checked = feature(definition);
      if (checked.version !== version) {
        throw new IntegrityError(
          `${path}: feature ${f.name} does not match its version ${version} (it was edited by hand); register the definitions again through the API`,
        );
      }
      return checked;
    });
    return new ServedFeatures(path, list);
  }

  get features(): readonly Feature[] {
    return this.list;
  }

  get version(): string {
    return featureSetVersion(this.list);
  }

  /**
   * Adds definitions to the served set; one already served is fine when it is the same definition.
   * A served name with another definition is a conflict: renaming is how a feature changes.
   * Resolves once the file is written (asynchronously: a service calls this while it answers requests).
   */
  async register(inputs: readonly (FeatureInput | Feature)[]): Promise<Feature[]> {
    const incoming = featureSet(inputs);
    const byName = new Map(this.list.map((f) => [f.name, f]));
    const added: Feature[] = [];
    for (const f of incoming) {
      const served = byName.get(f.name);
      if (served && served.version !== f.version) {
        throw new ConflictError(
          `feature ${f.name} is already served with another definition (version ${served.version}, this one ${f.version}): give the new definition a new name`,
        );
      }
      if (!served) added.push(f);
    }
    if (added.length > 0) {
      this.list = [...this.list, ...added];
      await mkdir(dirname(this.path), { recursive: true });
      await writeFileAtomicAsync(this.path, `${JSON.stringify({ features: this.list }, null, 2)}\n`);
    }
    return added;
  }
}
