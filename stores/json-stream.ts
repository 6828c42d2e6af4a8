/**
 * An incremental JSON reader: fed a body's bytes chunk by chunk as they arrive, it builds the value
 * `JSON.parse(await response.text())` would build, except that a string longer than a limit, under a
 * property the caller names (`omit`), is not kept: it becomes an `OmittedString` recording its length,
 * while the reader holds only counters. This is how the JSON stores (etcd v2, Consul, the etcd v3
 * gateway) list a prefix of 200 values of 1 MiB without holding them (`ListOptions.maxValueBytes`).
 *
 * Why only named properties: the keys of a listing are as needed as ever and must never vanish, so
 * every other string (object keys, `key` fields, errors) is kept whole, however long.
 *
 * Equal to JSON.parse on every input and every chunk split: the same values (`__proto__` as an own
 * property, duplicate keys last-wins, numbers through the same conversion), UTF-8 decoded as
 * `TextDecoder` does (a leading BOM dropped, each ill-formed sequence one U+FFFD), the same documents
 * refused. Two differences, both limits on what one answer may cost: nesting deeper than `maxDepth`
 * (default 1,000) and a number token longer than 4,096 characters are refused. Recursion-free: the
 * open arrays and objects are a list, so depth costs no stack.
 *
 * Memory: the values kept, one chunk, and the bytes of a kept string being read (at most the limit
 * for an omittable one). Errors are `JsonStreamError`s (a `SyntaxError`, as JSON.parse throws) naming
 * the byte offset; the drivers turn them into Protocol `StoreError`s naming the endpoint. A string's
 * content (decoding, counting, leaving out) is read by `StringContent` (json-string.ts).
 */
import { asciiText, OmittedString, StringContent } from "./json-string.ts";

export { OmittedString };

/** Why a body is not JSON (or is beyond a limit of the reader), and at which byte. */
export class JsonStreamError extends SyntaxError {
  override readonly name = "JsonStreamError";
  /** Offset in the body, in bytes, where the reader stopped. */
  readonly offset: number;

  constructor(what: string, offset: number) {
    super(`${what} at byte ${offset}`);
    this.offset = offset;
  }
}

export interface JsonStreamOptions {
  /**
   * Strings that are the value of a property named in `properties` (in any object, at any depth) and
   * longer than `maxBytes` UTF-8 bytes become `OmittedString`s. No other string is ever left out.
   */
  readonly omit?: { readonly properties: readonly string[]; readonly maxBytes: number } | undefined;
  /**
   * Properties whose integer values beyond 2^53 (where a JSON number stops being exact) are handed
   * over as their decimal digits, a string, instead of the rounded number: Consul's uint64 indexes.
   */
  readonly exactIntegers?: readonly string[] | undefined;
  /** Deepest nesting of arrays and objects accepted (default 1,000). */
  readonly maxDepth?: number | undefined;
  /**
   * The body is a sequence of JSON values, one after another (the etcd v3 gateway's watch stream):
   * each is handed to this as soon as it is complete, and `end()` returns undefined.
   */
  readonly each?: ((value: unknown) => void) | undefined;
}

const DEFAULT_MAX_DEPTH = 1_000;
/** A longer number token is refused: no store sends one, and its text would be held whole. */
const MAX_NUMBER_CHARS = 4_096;

// Reader states.
const VALUE = 0;
const AFTER = 1;
const KEY = 2;
const COLON = 3;
const STRING = 4;
const ESCAPE = 5;
const UNICODE = 6;
const NUMBER = 7;
const LITERAL = 8;
const END = 9;
/** Inside a leading byte order mark (EF BB BF), which TextDecoder drops. */
const BOM = 10;

/** Bytes a number token may hold; the syntax is checked once it ends. */
const isNumeric = (b: number) =>
  (b >= 0x30 && b <= 0x39) || b === 0x2b || b === 0x2d || b === 0x2e || (b | 0x20) === 0x65;

/** The code unit of each one-character escape (`\n` …), by the byte after the backslash. */
const ESCAPES = new Map([
  [0x22, 0x22],
  [0x5c, 0x5c],
  [0x2f, 0x2f],
  [0x62, 0x08],
  [0x66, 0x0c],
  [0x6e, 0x0a],
  [0x72, 0x0d],
  [0x74, 0x09],
]);
const NUMBER_SYNTAX = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const LITERALS = { t: ["true", true], f: ["false", false], n: ["null", null] } as const;

const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/** An open array or object. */
interface Frame {
  readonly list: unknown[] | undefined;
  readonly object: Record<string, unknown> | undefined;
  /** The object's property whose value comes next. */
  key: string;
}

/**
 * Fed with `push(chunk)` for each chunk of a body, then `end()` for the value. Any method may throw a
 * `JsonStreamError`; after one, every later call throws it again.
 */
export class JsonStreamReader {
  readonly #omitted: ReadonlySet<string>;
  readonly #maxBytes: number;
  readonly #exact: ReadonlySet<string>;
  readonly #maxDepth: number;
  readonly #each: ((value: unknown) => void) | undefined;
  #state = BOM;
  #offset = 0;
  #failure: JsonStreamError | undefined;
  #done = false;
  readonly #stack: Frame[] = [];
  #result: unknown;
  /** In VALUE: `]` may close the list just opened; in KEY: `}` may close the object just opened. */
  #mayClose = false;

  // The string being read.
  readonly #string = new StringContent();
  #isKey = false;
  #hex = 0;
  #hexDigits = 0;

  #number = "";
  #literal = "";
  #literalAt = 0;
  #literalValue: unknown;

  constructor(options: JsonStreamOptions = {}) {
    this.#omitted = new Set(options.omit?.properties ?? []);
    this.#maxBytes = options.omit?.maxBytes ?? Number.POSITIVE_INFINITY;
    this.#exact = new Set(options.exactIntegers ?? []);
    this.#maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.#each = options.each;
  }

  /** Reads one more chunk of the body. */
  push(chunk: Uint8Array): void {
    this.#check();
    try {
      this.#feed(chunk);
      this.#offset += chunk.length;
    } catch (err) {
      if (err instanceof JsonStreamError) this.#failure = err;
      throw err;
    }
  }

  /** The value, once the whole body was pushed. */
  end(): unknown {
    this.#check();
    try {
      if (this.#state === NUMBER && this.#stack.length === 0) this.#finishNumber(0);
      const between = this.#state === VALUE || (this.#state === BOM && this.#offset === 0);
      if (this.#each !== undefined && between && this.#stack.length === 0) {
        this.#done = true;
        return undefined;
      }
      if (this.#state !== END) {
        const what =
          this.#state === BOM && this.#offset === 0
            ? "no JSON value (empty body)"
            : "the JSON text ends early";
        throw new JsonStreamError(what, this.#offset);
      }
      this.#done = true;
      return this.#result;
    } catch (err) {
      if (err instanceof JsonStreamError) this.#failure = err;
      throw err;
    }
  }

  #check(): void {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#done) throw new JsonStreamError("the reader was used after end()", this.#offset);
  }

  #fail(what: string, at: number): never {
    throw new JsonStreamError(what, this.#offset + at);
  }

  #unexpected(c: Uint8Array, at: number): never {
    const b = c[at] as number;
    const shown = b >= 0x20 && b < 0x7f ? `"${String.fromCharCode(b)}"` : `byte 0x${b.toString(16)}`;
    this.#fail(`unexpected ${shown} in JSON`, at);
  }

  #feed(c: Uint8Array): void {
    const n = c.length;
    let i = 0;
    while (i < n) {
      switch (this.#state) {
        case STRING:
          i = this.#stringRun(c, i);
          break;
        case ESCAPE:
          i = this.#escape(c, i);
          break;
        case UNICODE:
          i = this.#unicode(c, i);
          break;
        case NUMBER:
          i = this.#numberRun(c, i);
          break;
        case LITERAL: {
          if (c[i] !== this.#literal.charCodeAt(this.#literalAt)) this.#unexpected(c, i);
          i++;
          if (++this.#literalAt === this.#literal.length) this.#emit(this.#literalValue);
          break;
        }
        case BOM:
          i = this.#bom(c, i);
          break;
        default:
          i = this.#structure(c, i);
      }
    }
  }

  /** The first bytes of the body: a BOM is skipped, anything else is read as a value. */
  #bom(c: Uint8Array, i: number): number {
    const at = this.#offset + i;
    const expected = [0xef, 0xbb, 0xbf][at];
    if (at === 0 && c[i] !== 0xef) {
      this.#state = VALUE;
      return i;
    }
    if (c[i] !== expected) this.#unexpected(c, i);
    if (at === 2) this.#state = VALUE;
    return i + 1;
  }

  /** Whitespace and the punctuation between values. */
  #structure(c: Uint8Array, i: number): number {
    const b = c[i] as number;
    if (isSpace(b)) return i + 1;
    switch (this.#state) {
      case VALUE:
        return this.#value(c, i);
      case KEY:
        if (b === 0x22) {
          this.#startString(true, false);
          return i + 1;
        }
        if (b === 0x7d && this.#mayClose) return this.#close(i);
        return this.#unexpected(c, i);
      case COLON:
        if (b !== 0x3a) this.#unexpected(c, i);
        this.#state = VALUE;
        this.#mayClose = false;
        return i + 1;
      case AFTER: {
        const top = this.#top();
        if (b === 0x2c) {
          this.#state = top?.list !== undefined ? VALUE : KEY;
          this.#mayClose = false;
          return i + 1;
        }
        if ((b === 0x5d && top?.list !== undefined) || (b === 0x7d && top?.object !== undefined))
          return this.#close(i);
        return this.#unexpected(c, i);
      }
      default:
        return this.#fail(`unexpected ${this.#describe(b)} after the JSON value`, i);
    }
  }

  #describe(b: number): string {
    return b >= 0x20 && b < 0x7f ? `"${String.fromCharCode(b)}"` : `byte 0x${b.toString(16)}`;
  }

  /** The first byte of a value. */
  #value(c: Uint8Array, i: number): number {
    const b = c[i] as number;
    if (b === 0x22) {
      const top = this.#top();
      this.#startString(false, top?.object !== undefined && this.#omitted.has(top.key));
      return i + 1;
    }
    if (b === 0x7b || b === 0x5b) {
      if (this.#stack.length >= this.#maxDepth)
        this.#fail(`JSON nested deeper than ${this.#maxDepth} levels`, i);
      const list = b === 0x5b ? [] : undefined;
      this.#stack.push({ list, object: list === undefined ? {} : undefined, key: "" });
      this.#state = list === undefined ? KEY : VALUE;
      this.#mayClose = true;
      return i + 1;
    }
    if (b === 0x5d && this.#mayClose) return this.#close(i);
    if (b === 0x2d || (b >= 0x30 && b <= 0x39)) {
      this.#state = NUMBER;
      this.#number = "";
      return i;
    }
    const literal = LITERALS[String.fromCharCode(b) as keyof typeof LITERALS];
    if (literal === undefined) return this.#unexpected(c, i);
    this.#state = LITERAL;
    [this.#literal, this.#literalValue] = literal;
    this.#literalAt = 1;
    return i + 1;
  }

  #top(): Frame | undefined {
    return this.#stack[this.#stack.length - 1];
  }

  #close(i: number): number {
    const frame = this.#stack.pop() as Frame;
    this.#emit(frame.list ?? frame.object);
    return i + 1;
  }

  /** A complete value: the result, or the next item of the open array or object. */
  #emit(value: unknown): void {
    const top = this.#top();
    if (top === undefined) {
      if (this.#each !== undefined) {
        this.#state = VALUE;
        this.#mayClose = false;
        this.#each(value);
        return;
      }
      this.#result = value;
      this.#state = END;
      return;
    }
    this.#state = AFTER;
    if (top.list !== undefined) top.list.push(value);
    else if (top.key === "__proto__") {
      // JSON.parse makes an own property; an assignment would set the prototype.
      Object.defineProperty(top.object, top.key, {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else (top.object as Record<string, unknown>)[top.key] = value;
  }

  // ---- strings ---------------------------------------------------------------------------------------

  #startString(isKey: boolean, limited: boolean): void {
    this.#state = STRING;
    this.#isKey = isKey;
    this.#string.start(limited ? this.#maxBytes : undefined);
  }

  /** Plain bytes up to the next '"', '\\' or control character. */
  #stringRun(c: Uint8Array, i: number): number {
    const j = this.#string.scan(c, i);
    if (j === c.length) return j;
    const b = c[j] as number;
    if (b === 0x22) {
      this.#endString();
      return j + 1;
    }
    if (b === 0x5c) {
      this.#state = ESCAPE;
      return j + 1;
    }
    return this.#fail(`a control character (0x${b.toString(16)}) inside a JSON string`, j);
  }

  #escape(c: Uint8Array, i: number): number {
    const b = c[i] as number;
    if (b === 0x75) {
      this.#state = UNICODE;
      this.#hex = 0;
      this.#hexDigits = 0;
      return i + 1;
    }
    const unit = ESCAPES.get(b);
    if (unit === undefined) this.#fail(`an invalid escape \\${this.#describe(b)} in a JSON string`, i);
    this.#string.unit(unit);
    this.#state = STRING;
    return i + 1;
  }

  #unicode(c: Uint8Array, i: number): number {
    const b = c[i] as number;
    const lower = b | 0x20;
    const digit = b >= 0x30 && b <= 0x39 ? b - 0x30 : lower >= 0x61 && lower <= 0x66 ? lower - 0x57 : -1;
    if (digit < 0) this.#fail(`an invalid \\u escape (${this.#describe(b)} is no hex digit)`, i);
    this.#hex = this.#hex * 16 + digit;
    if (++this.#hexDigits === 4) {
      this.#string.unit(this.#hex);
      this.#state = STRING;
    }
    return i + 1;
  }

  #endString(): void {
    const value = this.#string.end();
    if (!this.#isKey) {
      this.#emit(value);
      return;
    }
    (this.#top() as Frame).key = value as string;
    this.#state = COLON;
  }

  // ---- numbers ---------------------------------------------------------------------------------------

  #numberRun(c: Uint8Array, i: number): number {
    const n = c.length;
    let j = i;
    while (j < n && isNumeric(c[j] as number)) j++;
    if (this.#number.length + (j - i) > MAX_NUMBER_CHARS)
      this.#fail(`a JSON number longer than ${MAX_NUMBER_CHARS} characters`, i);
    this.#number += asciiText(c, i, j);
    if (j < n) this.#finishNumber(j);
    return j;
  }

  #finishNumber(at: number): void {
    const text = this.#number;
    if (!NUMBER_SYNTAX.test(text)) this.#fail(`an invalid JSON number "${text.slice(0, 40)}"`, at);
    const value = Number(text);
    const top = this.#top();
    const exact =
      !Number.isSafeInteger(value) &&
      top?.object !== undefined &&
      this.#exact.has(top.key) &&
      /^\d+$/.test(text);
    this.#number = "";
    this.#emit(exact ? text : value);
  }
}
