import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';
import { tempDir } from '../helpers/tmp.js';

/**
 * The public surface is what a notebook user discovers: every function and class it exports says what it
 * does and shows a call; every type says what it is. The check reads the real exports through the
 * compiler, so a name re-exported from any module is held to the same rule.
 */
const repo = resolve(__dirname, '..', '..');
const publicModules = ['src/workbench/index.ts', 'src/notebook.ts'].map((p) => resolve(repo, p));

type Kind = 'function' | 'class' | 'type' | 'value';

interface ExportDoc {
  module: string;
  name: string;
  kind: Kind;
  summary: string;
  examples: string[];
}

function kindOf(symbol: ts.Symbol): Kind {
  const f = symbol.flags;
  if (f & ts.SymbolFlags.Class) return 'class';
  if (f & ts.SymbolFlags.Function) return 'function';
  if (f & (ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias | ts.SymbolFlags.Enum)) return 'type';
  const declaration = symbol.valueDeclaration;
  if (declaration && ts.isVariableDeclaration(declaration) && declaration.initializer) {
    const init = declaration.initializer;
    if (ts.isArrowFunction(init) || ts.isFunctionExpression(init)) return 'function';
  }
  return 'value';
}

/** Summary and @example code of one exported symbol, from its declarations (an overloaded function: any of them). */
function docsOf(checker: ts.TypeChecker, symbol: ts.Symbol): { summary: string; examples: string[] } {
  const summary = ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim();
  const declarations = symbol.getDeclarations() ?? [];
  // A `const f = () => ...` carries its comment on the statement, two levels up.
  const tagHolders: ts.Node[] = declarations.flatMap((d): ts.Node[] => (ts.isVariableDeclaration(d) ? [d, d.parent.parent] : [d]));
  const examples = tagHolders
    .flatMap((d) => ts.getJSDocTags(d))
    .filter((tag) => tag.tagName.text === 'example')
    .map((tag) => (ts.getTextOfJSDocComment(tag.comment) ?? '').replace(/^\s*```(ts|typescript)?\s*$/gm, '').trim())
    .filter((code) => code !== '');
  return { summary, examples: [...new Set(examples)] };
}

function publicExports(): ExportDoc[] {
  const program = ts.createProgram(publicModules, {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    skipLibCheck: true,
    noEmit: true,
  });
  const checker = program.getTypeChecker();
  const docs: ExportDoc[] = [];
  for (const path of publicModules) {
    const source = program.getSourceFile(path);
    if (!source) continue; // src/notebook.ts is optional
    const moduleSymbol = checker.getSymbolAtLocation(source);
    assert.ok(moduleSymbol, `${path} is not a module`);
    for (const exported of checker.getExportsOfModule(moduleSymbol)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      docs.push({ module: path, name: exported.name, kind: kindOf(symbol), ...docsOf(checker, symbol) });
    }
  }
  return docs;
}

describe('public API (src/workbench/index.ts)', () => {
  const exports = publicExports();
  const workbench = exports.filter((e) => e.module === publicModules[0]);

  it('reads the exports (sanity: the check sees functions, classes and types)', () => {
    assert.ok(workbench.length > 150, `only ${workbench.length} exports found`);
    for (const [name, kind] of [
      ['openLakehouse', 'function'],
      ['Lakehouse', 'class'],
      ['sql', 'function'],
      ['Row', 'type'],
    ] as const) {
      assert.equal(workbench.find((e) => e.name === name)?.kind, kind, name);
    }
  });

  it('documents every exported function and class with a summary and an @example', () => {
    const missing = exports
      .filter((e) => e.kind === 'function' || e.kind === 'class')
      .filter((e) => !e.summary || e.examples.length === 0)
      .map((e) => `${e.kind} ${e.name}:${e.summary ? '' : ' no summary'}${e.examples.length ? '' : ' no @example'}`);
    assert.deepEqual(missing, [], `undocumented:\n${missing.join('\n')}`);
  });

  it('gives every exported type and constant a one-line summary', () => {
    const missing = exports.filter((e) => (e.kind === 'type' || e.kind === 'value') && !e.summary).map((e) => `${e.kind} ${e.name}`);
    assert.deepEqual(missing, [], `no summary:\n${missing.join('\n')}`);
  });
});

/**
 * The variables the examples take as given, as a notebook's earlier cells would have made them. An
 * example may use these and any exported name, nothing else.
 */
const NOTEBOOK_CONTEXT = `
declare const lake: Lakehouse; declare const rows: Row[]; declare const train: Row[]; declare const test: Row[];
declare const data: AppChurnData; declare const model: Classifier; declare const outcomes: number[]; declare const scores: Float32Array;
declare const bundle: ModelBundle; declare const features: Feature[]; declare const adminKey: string; declare const serviceUrl: string;
declare const apiKey: string; declare const userId: string; declare const column: string; declare const text: string; declare const asOf: Date;
declare const experiment: Experiment; declare const results: ExperimentResults; declare const client: ExperimentClient; declare const input: unknown;
declare const a: FeatureInput; declare const b: FeatureInput; declare const source: TrainingSetSource; declare const control: Sums; declare const treatment: Sums;
declare const controlSums: RatioSums; declare const treatmentSums: RatioSums; declare const embedded: { url: string; keys: { admin: string; read: string } };
`;

describe('public API examples', () => {
  it("compile in a notebook: tslab's TypeScript 5.0 without strictNullChecks, against the public surface only", () => {
    const documented = publicExports().filter((e) => e.examples.length > 0);
    assert.ok(documented.length > 100, `only ${documented.length} examples found`);
    const names = [...new Set(publicExports().map((e) => e.name))];
    const dir = tempDir('wb-api-examples-');
    const files = documented.flatMap((e) =>
      e.examples.map((code, i) => {
        const lines = code.split('\n');
        const imports = lines.filter((l) => l.startsWith('import '));
        const body = lines.filter((l) => !l.startsWith('import '));
        const file = join(dir, `${e.name}-${i}.ts`);
        // Through src/notebook.ts, which re-exports the workbench: every public name in scope, as in a notebook.
        const header = `import { ${names.join(', ')} } from ${JSON.stringify(resolve(repo, 'src/notebook.js'))};`;
        writeFileSync(file, [header, ...imports, NOTEBOOK_CONTEXT, 'export async function example() {', ...body, '}', ''].join('\n'));
        return file;
      }),
    );
    const tslabTs = createRequire(__filename)('@tslab/typescript-for-tslab') as typeof ts;
    const program = tslabTs.createProgram(files, {
      target: tslabTs.ScriptTarget.ES2022,
      module: tslabTs.ModuleKind.NodeNext,
      moduleResolution: tslabTs.ModuleResolutionKind.NodeNext,
      esModuleInterop: true,
      skipLibCheck: true,
      noEmit: true,
      typeRoots: [resolve(repo, 'node_modules/@types')],
      types: ['node'],
    });
    const errors = tslabTs
      .getPreEmitDiagnostics(program)
      .filter((d) => d.file && files.includes(d.file.fileName))
      .map(
        (d) =>
          `${d.file!.fileName.slice(dir.length + 1)}:${d.file!.getLineAndCharacterOfPosition(d.start ?? 0).line + 1} ${tslabTs.flattenDiagnosticMessageText(d.messageText, ' ')}`,
      );
    assert.deepEqual(errors, [], `examples that do not compile:\n${errors.join('\n')}`);
  });
});
