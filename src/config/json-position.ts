/**
 * Finds where a JSON text stops being valid. Bun's `JSON.parse` (JavaScriptCore) reports what went wrong
 * but not where, and a person fixing `<prefix>/config` in etcd needs the line and column. This is a small
 * RFC 8259 scanner that accepts exactly what `JSON.parse` accepts.
 */

/** Where and why a JSON text is invalid. */
export interface JsonErrorPosition {
  /** Zero-based character offset of the first offending character (the text length at end of input). */
  readonly offset: number;
  /** One-based line. */
  readonly line: number;
  /** One-based column. */
  readonly column: number;
  readonly reason: string;
}

class JsonScanError {
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {}
}

const WHITESPACE = new Set([" ", "\t", "\n", "\r"]);
const ESCAPES = new Set(['"', "\\", "/", "b", "f", "n", "r", "t"]);
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const HEX4 = /[0-9a-fA-F]{4}/y;
/**
 * Lists and objects nested deeper than this are reported instead of scanned (the scanner recurses;
 * Go's encoding/json stops at 10,000 levels, no network config needs more than three).
 */
export const MAX_JSON_DEPTH = 1_000;

class Scanner {
  pos = 0;
  depth = 0;
  constructor(readonly text: string) {}

  fail(reason: string): never {
    throw new JsonScanError(this.pos, reason);
  }

  describe(): string {
    const ch = this.text[this.pos];
    return ch === undefined ? "end of input" : `character ${JSON.stringify(ch)}`;
  }

  skipWhitespace(): void {
    while (WHITESPACE.has(this.text[this.pos] ?? "")) this.pos++;
  }

  value(): void {
    this.skipWhitespace();
    const ch = this.text[this.pos];
    if ((ch === "{" || ch === "[") && ++this.depth > MAX_JSON_DEPTH)
      this.fail(`lists and objects nested more than ${MAX_JSON_DEPTH} levels deep`);
    if (ch === "{") this.object();
    else if (ch === "[") this.array();
    else if (ch === '"') this.string();
    else if (ch === "-" || (ch !== undefined && ch >= "0" && ch <= "9")) this.number();
    else {
      const word = ["true", "false", "null"].find((literal) => this.text.startsWith(literal, this.pos));
      if (word === undefined) this.fail(`unexpected ${this.describe()}, expected a value`);
      this.pos += word.length;
    }
  }

  object(): void {
    this.pos++;
    this.skipWhitespace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      this.depth--;
      return;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.pos] !== '"')
        this.fail(`unexpected ${this.describe()}, expected a quoted field name`);
      this.string();
      this.skipWhitespace();
      if (this.text[this.pos] !== ":") this.fail(`unexpected ${this.describe()}, expected ":"`);
      this.pos++;
      this.value();
      this.skipWhitespace();
      const ch = this.text[this.pos];
      if (ch === "}") {
        this.pos++;
        this.depth--;
        return;
      }
      if (ch !== ",") this.fail(`unexpected ${this.describe()}, expected "," or "}"`);
      this.pos++;
    }
  }

  array(): void {
    this.pos++;
    this.skipWhitespace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      this.depth--;
      return;
    }
    for (;;) {
      this.value();
      this.skipWhitespace();
      const ch = this.text[this.pos];
      if (ch === "]") {
        this.pos++;
        this.depth--;
        return;
      }
      if (ch !== ",") this.fail(`unexpected ${this.describe()}, expected "," or "]"`);
      this.pos++;
    }
  }

  string(): void {
    this.pos++;
    for (;;) {
      const ch = this.text[this.pos];
      if (ch === undefined) this.fail("unterminated string");
      if (ch === '"') {
        this.pos++;
        return;
      }
      if (ch < " ") this.fail(`control character ${JSON.stringify(ch)} inside a string`);
      if (ch === "\\") {
        const escaped = this.text[this.pos + 1];
        if (escaped === "u") {
          HEX4.lastIndex = this.pos + 2;
          if (!HEX4.test(this.text)) {
            this.pos++;
            this.fail("invalid \\u escape, expected four hex digits");
          }
          this.pos += 6;
          continue;
        }
        if (escaped === undefined || !ESCAPES.has(escaped)) {
          this.pos++;
          this.fail(`invalid escape ${JSON.stringify(`\\${escaped ?? ""}`)}`);
        }
        this.pos += 2;
        continue;
      }
      this.pos++;
    }
  }

  number(): void {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (match === null) this.fail(`invalid number at ${this.describe()}`);
    this.pos += match[0].length;
  }
}

function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset; i++) {
    if (text[i] === "\n") {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

/** The first syntax error of `text`, or `undefined` when it is valid JSON. */
export function locateJsonError(text: string): JsonErrorPosition | undefined {
  const scanner = new Scanner(text);
  try {
    scanner.value();
    scanner.skipWhitespace();
    if (scanner.pos < text.length) scanner.fail(`unexpected ${scanner.describe()} after the JSON value`);
    return undefined;
  } catch (err) {
    if (!(err instanceof JsonScanError)) throw err;
    return { offset: err.offset, ...lineAndColumn(text, err.offset), reason: err.reason };
  }
}
