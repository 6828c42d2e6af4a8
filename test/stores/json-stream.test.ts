import { describe, expect, test } from "bun:test";
import {
  JsonStreamError,
  type JsonStreamOptions,
  JsonStreamReader,
  OmittedString,
} from "../../stores/json-stream.ts";
import { base64Bytes } from "../../stores/values.ts";
import { randomJson } from "../fuzz/inputs.ts";
import { Rng } from "../fuzz/prng.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);

/** Reads `bytes` cut at `cuts` (sorted offsets); the value, or the error thrown. */
function read(bytes: Uint8Array, cuts: readonly number[], options?: JsonStreamOptions): unknown {
  const reader = new JsonStreamReader(options);
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    reader.push(bytes.subarray(at, cut));
    at = cut;
  }
  return reader.end();
}

function attempt(fn: () => unknown): { value: unknown } | { error: unknown } {
  try {
    return { value: fn() };
  } catch (error) {
    return { error };
  }
}

/** What `JSON.parse(await response.text())` makes of the body. */
const parsed = (bytes: Uint8Array) => attempt(() => JSON.parse(new TextDecoder().decode(bytes)));

/** Every way to read `bytes`: whole, 1-byte chunks, each single cut, and `randomSplits` random cuttings. */
function splits(bytes: Uint8Array, rng: Rng, randomSplits = 20): number[][] {
  const all: number[][] = [[], Array.from({ length: Math.max(0, bytes.length - 1) }, (_, i) => i + 1)];
  if (bytes.length <= 400) for (let i = 1; i < bytes.length; i++) all.push([i]);
  for (let n = 0; n < randomSplits; n++) {
    const count = rng.range(1, 8);
    all.push(Array.from({ length: count }, () => rng.int(bytes.length + 1)).sort((a, b) => a - b));
  }
  return all;
}

/** Fails unless every split of `bytes` gives what JSON.parse gives (the same value, or an error). */
function expectLikeJsonParse(bytes: Uint8Array, rng: Rng, randomSplits = 20): void {
  const want = parsed(bytes);
  for (const cuts of splits(bytes, rng, randomSplits)) {
    const got = attempt(() => read(bytes, cuts));
    if ("error" in want) {
      expect("error" in got ? got.error : got.value).toBeInstanceOf(JsonStreamError);
    } else {
      if ("error" in got) throw got.error;
      expect(Object.is(got.value, want.value) || Bun.deepEquals(got.value, want.value, true)).toBe(true);
    }
  }
}

const DOCUMENTS = [
  '{"a":[1,2,{"b":null}],"c":"x\\u00e9\\ud83d\\ude80y","d":-0,"e":1e400,"f":-1e-400,"g":true,"h":false}',
  '{"__proto__":{"x":1},"constructor":2,"toString":"s"}',
  '{"a":1,"a":2,"b":{"a":3},"2":"two","1":"one"}',
  "  [ 1 , 2.5 , -3e+2 , 4E-2 , 0.0 , 9007199254740993 , 123456789012345678901234567890 ]  ",
  '"\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0000 \\u001f \\uFFFF \\uD800 \\uDFFF \\uDBFF\\uDFFF"',
  '"é ü 雪 🚀 \u2028 \u2029"',
  "\ufeff[1]",
  '"\ufeffx"',
  "[]",
  "{}",
  '[[],[[]],{},{"":{}}]',
  " 12 ",
  "0",
  "-0.5e-3",
  "null",
  "true",
  '{"action":"get","node":{"key":"/a","dir":true,"nodes":[{"key":"/a/b","value":"v","modifiedIndex":12,"createdIndex":3}]}}',
  // Malformed: each must fail in every split, as JSON.parse fails.
  "",
  " ",
  "[1,]",
  '{"a":1,}',
  "[,1]",
  "{,}",
  '{"a" 1}',
  '{"a":}',
  "{a:1}",
  "1 2",
  "[1 2]",
  "tru",
  "nul",
  "truex",
  "True",
  "NaN",
  "Infinity",
  "-",
  "01",
  "1.",
  ".5",
  "1e",
  "1e+",
  "+1",
  "0x10",
  "--1",
  "1-2",
  '"abc',
  '"a\u0001b"',
  '"\\x"',
  '"\\u12"',
  '"\\u12g4"',
  "'a'",
  "[1]]",
  "{}}",
  "[}",
  "{]",
  '{"a":1]',
  "\ufeff",
  "\ufeff\ufeff1",
  "\u00a01",
];

describe("json-stream", () => {
  test("json-stream - equals JSON.parse on hand-picked documents, in every chunk split", () => {
    const rng = new Rng(1);
    for (const doc of DOCUMENTS) expectLikeJsonParse(utf8(doc), rng);
  });

  test("json-stream - equals JSON.parse on 300 random documents cut at random", () => {
    const rng = new Rng(20_260_101);
    for (let n = 0; n < 300; n++) {
      const text = JSON.stringify(randomJson(rng, 5)) ?? "null";
      expectLikeJsonParse(utf8(text), rng, 5);
    }
  });

  test("json-stream - invalid UTF-8 becomes U+FFFD as TextDecoder makes it, wherever the cuts fall", () => {
    const rng = new Rng(7);
    const bodies = [
      [0x22, 0xc3, 0x22], // a truncated 2-byte sequence
      [0x22, 0xe2, 0x82, 0x22], // a truncated 3-byte sequence
      [0x22, 0xf0, 0x9f, 0x9a, 0x41, 0x22], // a truncated 4-byte one, then ASCII
      [0x22, 0xed, 0xa0, 0x80, 0x22], // an encoded surrogate: three replacements
      [0x22, 0xff, 0xfe, 0x5c, 0x6e, 0xc0, 0xaf, 0x22], // bytes that never occur, an escape, an overlong '/'
      [0x5b, 0xc3, 0xa9, 0x5d], // non-ASCII outside a string
      [0xef, 0xbb, 0x31], // a broken BOM
      [0x22, 0xf0, 0x9f, 0x9a, 0x80, 0x22], // a whole 4-byte sequence
    ];
    for (const body of bodies) expectLikeJsonParse(new Uint8Array(body), rng);
  });

  test("json-stream - a string over the limit under a named property becomes its exact length", () => {
    const options = { omit: { properties: ["value"], maxBytes: 8 } };
    const cases: [string, unknown][] = [
      ['"12345678"', "12345678"],
      ['"123456789"', new OmittedString(9, 0, false)],
      ['"éééé"', "éééé"], // 8 bytes
      ['"ééééé"', new OmittedString(10, 0, false)],
      ['"🚀🚀"', "🚀🚀"],
      ['"🚀🚀x"', new OmittedString(9, 0, false)],
      ['"\\ud83d\\ude80\\ud83d\\ude80x"', new OmittedString(9, 0, false)], // escaped pairs count 4
      ['"\\ud83d\\ud83d\\ud83d"', new OmittedString(9, 0, false)], // lone surrogates count 3
      ['"\\udc00\\ud800\\udc00\\ud800"', new OmittedString(3 + 4 + 3, 0, false)],
      ['"\\u0000\\"\\u0000\\""', '\u0000"\u0000"'],
      ['"\\u0000\\"\\u0000\\"\\u0000\\"\\u0000\\"\\u0000"', new OmittedString(9, 0, false)],
      ['"\\\\\\\\\\\\\\\\\\\\"', "\\\\\\\\\\"],
      ['"aaaaaaa\\u00e9"', new OmittedString(9, 0, false)],
      ['"🚀\\ud83dxxx"', new OmittedString(10, 0, false)],
    ];
    const rng = new Rng(3);
    for (const [text, want] of cases) {
      const bytes = utf8(`{"value":${text}}`);
      for (const cuts of splits(bytes, rng)) expect(read(bytes, cuts, options)).toEqual({ value: want });
    }
    // The same string in an invalid UTF-8 spelling: each replacement character counts 3 bytes.
    const broken = new Uint8Array([...utf8('{"value":"'), 0xff, 0xc3, 0x41, 0xe2, 0x82, ...utf8('"}')]);
    const whole = JSON.parse(new TextDecoder().decode(broken)).value as string;
    for (const cuts of splits(broken, rng)) {
      expect(read(broken, cuts, { omit: { properties: ["value"], maxBytes: 2 } })).toEqual({
        value: new OmittedString(Buffer.byteLength(whole), 0, false),
      });
    }
  });

  test("json-stream - only the named properties are limited; keys and other strings stay whole", () => {
    const long = "k.".repeat(50);
    const doc = `{"${long}":"${long}","value":["${long}",{"value":"${long}"}],"values":"${long}","Value":"${long}"}`;
    const got = read(utf8(doc), [17, 150], { omit: { properties: ["value"], maxBytes: 10 } });
    expect(got).toEqual({
      [long]: long,
      value: [long, { value: new OmittedString(100, 0, false) }],
      values: long,
      Value: long,
    });
  });

  test("json-stream - base64 values record their padding and shape, so decoded sizes are exact", () => {
    const options = { omit: { properties: ["v"], maxBytes: 0 } };
    const rng = new Rng(11);
    for (let length = 0; length < 40; length++) {
      const value = Buffer.alloc(length, 0xab).toString("base64");
      const bytes = utf8(`{"v":"${value}"}`);
      for (const cuts of splits(bytes, rng, 3)) {
        const got = (read(bytes, cuts, options) as { v: unknown }).v;
        if (length === 0) expect(got).toBe("");
        else {
          expect(got).toBeInstanceOf(OmittedString);
          const omitted = got as OmittedString;
          expect(omitted.base64).toBe(true);
          expect(base64Bytes(omitted.bytes, omitted.padding)).toBe(length);
        }
      }
    }
    const shape = (text: string) => (read(utf8(`{"v":${text}}`), [], options) as { v: OmittedString }).v;
    expect(shape('"QUJD"')).toEqual(new OmittedString(4, 0, true));
    expect(shape('"QUI="')).toEqual(new OmittedString(4, 1, true));
    expect(shape('"QQ=="')).toEqual(new OmittedString(4, 2, true));
    expect(shape('"Q\\u0051=="')).toEqual(new OmittedString(4, 2, true)); // escapes count as what they mean
    expect(shape('"QQ\\/="')).toEqual(new OmittedString(4, 1, true));
    expect(shape('"Q==="').base64).toBe(false);
    expect(shape('"QQ=Q"').base64).toBe(false);
    expect(shape('"QUJ"').base64).toBe(false);
    expect(shape('"QU J"').base64).toBe(false);
    expect(shape('"QUé="').base64).toBe(false);
  });

  test("json-stream - integers of named properties beyond 2^53 stay exact as digits", () => {
    const options = { exactIntegers: ["ModifyIndex"] };
    const doc =
      '[{"ModifyIndex":18446744073709551615,"Other":18446744073709551615},{"ModifyIndex":42},{"ModifyIndex":-9007199254740993},{"ModifyIndex":1e300}]';
    const rng = new Rng(5);
    for (const cuts of splits(utf8(doc), rng)) {
      expect(read(utf8(doc), cuts, options)).toEqual([
        { ModifyIndex: "18446744073709551615", Other: Number("18446744073709551615") },
        { ModifyIndex: 42 },
        { ModifyIndex: Number("-9007199254740993") },
        { ModifyIndex: 1e300 },
      ]);
    }
  });

  test("json-stream - malformed input fails with a JsonStreamError naming the byte, and keeps failing", () => {
    const reader = new JsonStreamReader();
    reader.push(utf8('{"a":[1,'));
    const error = attempt(() => reader.push(utf8("}")));
    expect("error" in error && error.error).toBeInstanceOf(JsonStreamError);
    expect("error" in error && error.error).toBeInstanceOf(SyntaxError);
    expect("error" in error && (error.error as JsonStreamError).offset).toBe(8);
    expect(() => reader.push(utf8("1]}"))).toThrow(/at byte 8/);
    expect(() => reader.end()).toThrow(/at byte 8/);
    expect(() => read(utf8('{"a":"x\ny"}'), [])).toThrow(/control character \(0xa\).*at byte 7/);
    expect(() => read(utf8("[1,2"), [])).toThrow(/ends early at byte 4/);
    expect(() => read(utf8(""), [])).toThrow(/empty body/);
    expect(() => read(utf8(`[${"1".repeat(5000)}]`), [])).toThrow(/longer than 4096 characters/);
    const done = new JsonStreamReader();
    done.push(utf8("1"));
    expect(done.end()).toBe(1);
    expect(() => done.push(utf8(" "))).toThrow(JsonStreamError);
  });

  test("json-stream - nesting beyond the depth limit fails cleanly, however deep, without recursion", () => {
    const nested = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`;
    expect(read(utf8(nested(1_000)), [])).toBeInstanceOf(Array);
    expect(() => read(utf8(nested(1_001)), [])).toThrow(/nested deeper than 1000 levels at byte 1000/);
    expect(() => read(utf8(`${'{"a":'.repeat(11)}1${"}".repeat(11)}`), [], { maxDepth: 10 })).toThrow(
      /deeper than 10/,
    );
    // A million levels fail at the limit, long before the stack or the time matter.
    const started = performance.now();
    expect(() => read(utf8("[".repeat(1_000_000)), [])).toThrow(/deeper than 1000/);
    expect(performance.now() - started).toBeLessThan(1_000);
    // Within the limit, the deepest value is built without recursion and is what JSON.parse makes.
    const deep = `${'{"a":['.repeat(400)}7${"]}".repeat(400)}`;
    expect(Bun.deepEquals(read(utf8(deep), [3, 999]), JSON.parse(deep), true)).toBe(true);
  });

  test("json-stream - an omitted string is never held: 64 MiB of value leave the heap as it was", () => {
    const reader = new JsonStreamReader({ omit: { properties: ["value"], maxBytes: 4096 } });
    const chunk = new Uint8Array(1 << 20).fill(0x41);
    Bun.gc(true);
    const before = process.memoryUsage().heapUsed;
    reader.push(utf8('[{"key":"/a","value":"'));
    for (let i = 0; i < 64; i++) reader.push(chunk);
    reader.push(utf8('"}]'));
    const value = reader.end();
    Bun.gc(true);
    const grown = process.memoryUsage().heapUsed - before;
    expect(value).toEqual([{ key: "/a", value: new OmittedString(64 << 20, 0, true) }]);
    expect(grown).toBeLessThan(8 << 20);
  });

  test("json-stream - with each: a sequence of values, each handed over as it completes, at every split", () => {
    const docs = ['{"a":[1,{"b":"雪"}]}', "[]", '{"c":"\\u00e9\\"}"}', "{}", '"x"', "7 "];
    const text = new TextEncoder().encode(docs.join("\n"));
    for (let cut = 0; cut <= text.length; cut++) {
      const seen: unknown[] = [];
      const reader = new JsonStreamReader({ each: (v) => seen.push(v) });
      reader.push(text.subarray(0, cut));
      const before = seen.length;
      reader.push(text.subarray(cut));
      expect(reader.end()).toBeUndefined();
      expect(seen).toEqual(docs.map((d) => JSON.parse(d)));
      expect(before).toBeLessThanOrEqual(docs.length);
    }
    // Values back to back, a close bracket with nothing open, an unfinished value.
    const seen: unknown[] = [];
    const reader = new JsonStreamReader({ each: (v) => seen.push(v) });
    reader.push(new TextEncoder().encode('{"a":1}{}'));
    expect(seen).toEqual([{ a: 1 }, {}]);
    expect(() => reader.push(new TextEncoder().encode("]"))).toThrow(JsonStreamError);
    const open = new JsonStreamReader({ each: () => undefined });
    open.push(new TextEncoder().encode('{"a":'));
    expect(() => open.end()).toThrow(JsonStreamError);
  });
});
