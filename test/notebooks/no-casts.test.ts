import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';

/**
 * Issue 11: a notebook written from the API reference alone needs no casts. Notebook 06 is that
 * notebook, so a cast in it (or an example in the reference that teaches one) means the public
 * surface is missing something: a type, a narrowing helper, a typed answer. Each code cell is
 * parsed with the compiler; what it finds is a syntax node, never a text match, so strings and
 * comments that say "as" or "any" do not count.
 */
const repo = resolve(__dirname, '..', '..');
const NO_CAST_NOTEBOOKS = ['notebooks/06-new-feature-to-prediction.ipynb'];
const PUBLIC_MODULES = ['src/workbench/index.ts', 'src/notebook.ts'].map((p) => resolve(repo, p));

interface Finding {
  line: number;
  kind: string;
  text: string;
}

/** Every cast in a piece of notebook code: `x as T`, `<T>x`, `x!`, and the `any` type anywhere. */
function castsIn(code: string): Finding[] {
  const source = ts.createSourceFile('cell.ts', code, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const findings: Finding[] = [];
  const note = (node: ts.Node, kind: string) =>
    findings.push({ line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, kind, text: node.getText(source).slice(0, 80) });
  const visit = (node: ts.Node): void => {
    if (ts.isAsExpression(node)) note(node, 'as');
    else if (ts.isTypeAssertionExpression(node)) note(node, 'type assertion <T>');
    else if (ts.isNonNullExpression(node)) note(node, 'non-null assertion !');
    else if (node.kind === ts.SyntaxKind.AnyKeyword) note(node, 'any');
    // `lake.query<T>()` claims the columns' types without checking them: a cast by another name.
    else if (ts.isCallExpression(node) && node.typeArguments && ts.isPropertyAccessExpression(node.expression) && node.expression.name.text === 'query')
      note(node, 'query<T>');
    ts.forEachChild(node, visit);
  };
  visit(source);
  return findings;
}

/** The code cells of a notebook, with their index, as the kernel runs them. */
function codeCells(path: string): { index: number; code: string }[] {
  const notebook: unknown = JSON.parse(readFileSync(resolve(repo, path), 'utf8'));
  assert.ok(typeof notebook === 'object' && notebook !== null && 'cells' in notebook && Array.isArray(notebook.cells), `${path} is not a notebook`);
  const cells: { index: number; code: string }[] = [];
  notebook.cells.forEach((cell: unknown, index: number) => {
    if (typeof cell !== 'object' || cell === null || !('cell_type' in cell) || cell.cell_type !== 'code' || !('source' in cell)) return;
    const source = cell.source;
    cells.push({ index, code: Array.isArray(source) ? source.join('') : String(source) });
  });
  return cells;
}

describe('the cast detector', () => {
  it('finds each kind of cast, and nothing in strings, comments or narrowing', () => {
    const code = [
      'const a = x as number;',
      'const b = <string>y;',
      'const c = z!.length;',
      'let d: any = 1;',
      'const e = await lake.query<{ n: number }>(sql`SELECT 1 AS n`);',
      "const fine = typeof v === 'number' ? v : Number(v); // not as any, nor x!",
      "const text = 'as any as string!';",
      'const narrowed = w instanceof Date ? w : undefined;',
      'const ok = a !== b;',
    ].join('\n');
    assert.deepEqual(
      castsIn(code).map((f) => [f.line, f.kind]),
      [
        [1, 'as'],
        [2, 'type assertion <T>'],
        [3, 'non-null assertion !'],
        [4, 'any'],
        [5, 'query<T>'],
      ],
    );
  });
});

describe('notebooks written from the API reference', () => {
  for (const path of NO_CAST_NOTEBOOKS) {
    it(`${path} has no casts in any code cell`, () => {
      const cells = codeCells(path);
      assert.ok(cells.length >= 5, `only ${cells.length} code cells in ${path}`);
      const found = cells.flatMap((c) => castsIn(c.code).map((f) => `cell ${c.index}, line ${f.line}: ${f.kind}: ${f.text}`));
      assert.deepEqual(found, [], `casts in ${path}:\n${found.join('\n')}`);
    });

    it(`${path} imports only the public surface (./src/notebook) and node built-ins`, () => {
      const imports = codeCells(path).flatMap((c) =>
        ts
          .createSourceFile('cell.ts', c.code, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS)
          .statements.filter(ts.isImportDeclaration)
          .map((s) => (ts.isStringLiteral(s.moduleSpecifier) ? s.moduleSpecifier.text : '?')),
      );
      assert.ok(imports.includes('./src/notebook'), 'it imports ./src/notebook');
      assert.deepEqual(
        imports.filter((m) => m !== './src/notebook' && !m.startsWith('node:')),
        [],
      );
    });
  }
});

describe('the API reference', () => {
  it('teaches no casts: every @example of the public surface is cast-free', () => {
    const program = ts.createProgram(PUBLIC_MODULES, {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      skipLibCheck: true,
      noEmit: true,
    });
    const checker = program.getTypeChecker();
    const found: string[] = [];
    let examples = 0;
    const seen = new Set<ts.Node>();
    for (const path of PUBLIC_MODULES) {
      const source = program.getSourceFile(path);
      assert.ok(source, `${path} is missing`);
      const moduleSymbol = checker.getSymbolAtLocation(source);
      assert.ok(moduleSymbol, `${path} is not a module`);
      for (const exported of checker.getExportsOfModule(moduleSymbol)) {
        const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
        // The symbol's own declarations and, for a class, its members: methods carry examples too.
        const declarations = [...(symbol.getDeclarations() ?? []), ...[...(symbol.members?.values() ?? [])].flatMap((m) => m.getDeclarations() ?? [])];
        for (const declaration of declarations) {
          for (const holder of ts.isVariableDeclaration(declaration) ? [declaration, declaration.parent.parent] : [declaration]) {
            for (const tag of ts.getJSDocTags(holder)) {
              if (tag.tagName.text !== 'example' || seen.has(tag)) continue;
              seen.add(tag);
              examples++;
              const code = (ts.getTextOfJSDocComment(tag.comment) ?? '').replace(/^\s*```(ts|typescript)?\s*$/gm, '');
              for (const f of castsIn(code)) found.push(`${exported.name}: ${f.kind}: ${f.text}`);
            }
          }
        }
      }
    }
    assert.ok(examples > 100, `only ${examples} examples read`);
    assert.deepEqual(found, [], `examples that cast:\n${found.join('\n')}`);
  });
});
