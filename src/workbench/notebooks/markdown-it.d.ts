// The part of markdown-it 14 (untyped; no @types package installed) that the HTML report uses.
declare module 'markdown-it' {
  interface Token {
    type: string;
    tag: string;
    content: string;
    children: Token[] | null;
    attrSet(name: string, value: string): void;
  }
  type RenderRule = (
    tokens: Token[],
    idx: number,
    options: unknown,
    env: unknown,
    self: { renderToken(tokens: Token[], idx: number, options: unknown): string },
  ) => string;
  class MarkdownIt {
    constructor(options?: { html?: boolean; linkify?: boolean; typographer?: boolean });
    render(src: string, env?: unknown): string;
    renderer: { rules: Record<string, RenderRule | undefined> };
  }
  export = MarkdownIt;
}
