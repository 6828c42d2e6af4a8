/**
 * The content of one JSON string as its bytes arrive, for `JsonStreamReader` (json-stream.ts): decoded
 * from UTF-8 as `TextDecoder` decodes a whole body (each ill-formed sequence one U+FFFD), and, for a
 * string under a limit, counted as it goes and dropped once past the limit, so that only its length
 * is kept (`OmittedString`). The escapes themselves are the reader's; here they arrive as code units.
 */
import { dropped } from "./values.ts";

/** A string the reader left out: longer than the limit. It keeps only what its length needs. */
export class OmittedString {
  constructor(
    /**
     * The UTF-8 length of the string JSON.parse would have made (what `Buffer.byteLength` says of it:
     * an escaped lone surrogate counts 3, an escaped pair 4).
     */
    readonly bytes: number,
    /** How many '=' it ends with: with `bytes`, the exact length of what base64 text decodes to. */
    readonly padding: number,
    /**
     * True when it is canonical base64: A–Z a–z 0–9 + /, a multiple of 4 long, at most two '=' at
     * the end (what etcd's gateway and Consul send; the drivers refuse or size values by it).
     */
    readonly base64: boolean,
  ) {}
}

// Byte classes (bit flags).
/** Ends a run of plain string bytes: '"', '\', a control character. */
const STOP = 1;
const NON_ASCII = 2;
const ALPHABET = 4;
const PAD = 8;
const CLASS = new Uint8Array(256);
for (let b = 0; b < 0x20; b++) CLASS[b] = STOP;
CLASS[0x22] = STOP;
CLASS[0x5c] = STOP;
for (let b = 0x80; b < 0x100; b++) CLASS[b] = NON_ASCII;
for (const ch of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
  CLASS[ch.charCodeAt(0)] = ALPHABET;
CLASS[0x3d] = PAD;

const STREAM = { stream: true } as const;
/** ASCII runs up to this long become text without the decoder (its call and a subarray cost more). */
const SHORT_ASCII = 32;

/** The text of the ASCII bytes of `c` from `i` to `j`. */
export function asciiText(c: Uint8Array, i: number, j: number): string {
  let text = "";
  for (let k = i; k < j; k++) text += String.fromCharCode(c[k] as number);
  return text;
}

/** One string at a time: `start`, then `scan` and `unit` as its bytes and escapes come, then `end`. */
export class StringContent {
  /** Decodes the string's bytes (a BOM inside a string is text, not a mark). */
  readonly #decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  #limit = Number.POSITIVE_INFINITY;
  /** Counted against `#limit` (the value of an omittable property). */
  #limited = false;
  #text = "";
  /** Still kept: not (yet) over the limit. */
  #keeping = true;
  /** No byte has gone into the decoder since it was last flushed. */
  #plain = true;
  #bytes = 0;
  /** An escaped high surrogate whose byte count waits for what follows (a low surrogate makes 4). */
  #pendingHigh = false;
  #padding = 0;
  #shaped = true;

  /** A new string, counted against `limit` when one is given. */
  start(limit: number | undefined): void {
    this.#limited = limit !== undefined;
    this.#limit = limit ?? Number.POSITIVE_INFINITY;
    this.#text = "";
    this.#keeping = true;
    this.#plain = true;
    this.#bytes = 0;
    this.#pendingHigh = false;
    this.#padding = 0;
    this.#shaped = true;
  }

  /**
   * Takes the plain bytes of `c` from `i` up to the next '"', '\' or control character, and returns
   * where that is (`c.length` when the chunk ends first).
   */
  scan(c: Uint8Array, i: number): number {
    const n = c.length;
    let j = i;
    if (!this.#limited) {
      let seen = 0;
      for (; j < n; j++) {
        const k = CLASS[c[j] as number] as number;
        if ((k & STOP) !== 0) break;
        seen |= k;
      }
      if (j > i) this.#text += this.#decode(c, i, j, (seen & NON_ASCII) === 0);
      return j;
    }
    let ascii = true;
    let padding = this.#padding;
    let shaped = this.#shaped;
    for (; j < n; j++) {
      const k = CLASS[c[j] as number] as number;
      if ((k & STOP) !== 0) break;
      if ((k & ALPHABET) !== 0) {
        if (padding > 0) shaped = false;
        padding = 0;
      } else if ((k & PAD) !== 0) padding++;
      else {
        padding = 0;
        shaped = false;
        if ((k & NON_ASCII) !== 0) ascii = false;
      }
    }
    this.#padding = padding;
    this.#shaped = shaped;
    if (j > i) this.#limitedRun(c, i, j, ascii);
    return j;
  }

  /** Plain bytes of a limited string: counted, and kept only while within the limit. */
  #limitedRun(c: Uint8Array, i: number, j: number, ascii: boolean): void {
    if (this.#pendingHigh) {
      // Decoded bytes never start with a low surrogate: the escaped high one stays alone.
      this.#bytes += 3;
      this.#pendingHigh = false;
    }
    if (ascii && this.#plain) {
      this.#bytes += j - i;
      if (this.#keeping && this.#bytes <= this.#limit) this.#text += this.#decode(c, i, j, true);
    } else {
      const piece = this.#decode(c, i, j, false);
      this.#bytes += Buffer.byteLength(piece);
      if (this.#keeping) this.#text += piece;
    }
    this.#dropIfOver();
  }

  /** The text of the plain string bytes of `c` from `i` to `j`; `asciiOnly` when none is above 0x7f. */
  #decode(c: Uint8Array, i: number, j: number, asciiOnly: boolean): string {
    // ASCII after nothing pending in the decoder leaves nothing pending either.
    this.#plain &&= asciiOnly;
    if (this.#plain && j - i <= SHORT_ASCII) return asciiText(c, i, j);
    return this.#decoder.decode(c.subarray(i, j), STREAM);
  }

  #dropIfOver(): void {
    if (this.#keeping && this.#bytes > this.#limit) {
      this.#keeping = false;
      this.#text = "";
    }
  }

  /** Takes what the decoder still holds (an incomplete sequence becomes U+FFFD, as in TextDecoder). */
  #flush(): void {
    if (this.#plain) return;
    const piece = this.#decoder.decode();
    this.#plain = true;
    if (piece === "") return;
    if (this.#limited) {
      if (this.#pendingHigh) this.#bytes += 3;
      this.#pendingHigh = false;
      this.#bytes += Buffer.byteLength(piece);
      if (this.#keeping) this.#text += piece;
      this.#dropIfOver();
    } else this.#text += piece;
  }

  /** One UTF-16 code unit from an escape. */
  unit(unit: number): void {
    this.#flush();
    if (this.#limited) {
      const k = unit < 0x80 ? (CLASS[unit] as number) : NON_ASCII;
      if ((k & ALPHABET) !== 0) {
        if (this.#padding > 0) this.#shaped = false;
        this.#padding = 0;
      } else if ((k & PAD) !== 0) this.#padding++;
      else {
        this.#padding = 0;
        this.#shaped = false;
      }
      // Byte counts as Buffer.byteLength gives them: a surrogate pair 4, a lone surrogate 3.
      const low = unit >= 0xdc00 && unit <= 0xdfff;
      let paired = false;
      if (this.#pendingHigh) {
        this.#pendingHigh = false;
        paired = low;
        this.#bytes += low ? 4 : 3;
      }
      if (!paired) {
        if (unit >= 0xd800 && unit <= 0xdbff) this.#pendingHigh = true;
        else this.#bytes += unit < 0x80 ? 1 : unit < 0x800 ? 2 : 3;
      }
    }
    if (this.#keeping) this.#text += String.fromCharCode(unit);
    if (this.#limited) this.#dropIfOver();
  }

  /** The string, or what is left of it when it went past the limit. */
  end(): string | OmittedString {
    this.#flush();
    const text = this.#text;
    this.#text = "";
    if (!this.#limited) return text;
    if (this.#pendingHigh) {
      this.#bytes += 3;
      this.#pendingHigh = false;
    }
    this.#dropIfOver();
    if (this.#keeping) return text;
    const base64 = this.#shaped && this.#bytes % 4 === 0 && this.#padding <= 2;
    // The chunks that carried it are garbage now, which the collector cannot know.
    dropped(this.#bytes);
    return new OmittedString(this.#bytes, this.#padding, base64);
  }
}
