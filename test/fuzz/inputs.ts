/**
 * Input generators shared by the fuzz targets: random bytes and characters, random JSON of every type
 * (huge and odd numbers, long and control-character strings, prototype-ish keys), deep nesting, and
 * mutations of valid inputs — at the text level (flips, inserts, deletes, splices, number tokens
 * swapped for odd ones) and at the JSON level (a value anywhere replaced by one of another type, a
 * key dropped or added, a value wrapped in a list).
 */
import type { Rng } from "./prng.ts";

const WEIRD_NUMBERS = [
  "0",
  "-0",
  "1",
  "-1",
  "1.5",
  "1e400",
  "-1e400",
  "1e-400",
  "4294967296",
  "9007199254740993",
  "9223372036854775807",
  "9223372036854775808",
  "-9223372036854775809",
  "18446744073709551616",
  "123456789012345678901234567890123456789",
  "00012",
  "0x10",
  "NaN",
  "Infinity",
  "1e",
  "--1",
  "2.",
];

const SPECIAL_STRINGS = [
  "",
  " ",
  "null",
  "true",
  "0",
  "-1",
  "18446744073709551616",
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
  "\u0000",
  "\u001b[2J",
  "\u009b31m",
  "\u202e",
  "\ud800",
  "\udfff",
  "é",
  "💥",
  "AA==",
  "====",
  "a=b",
  "10.5.0.0/16",
  "255.255.255.255",
  "0.0.0.0/0",
  "fd00::/64",
  "/",
  "//",
  "..",
  "$KV.weft.>",
  "=2E",
  "[1 != 4]",
  "Invalid Session TTL '1s', must be between [10s=24h0m0s]",
  "1h2m3.5s",
  "2026-01-02T03:04:05.123456789Z",
];

const KEYS = [
  "a",
  "key",
  "value",
  "Key",
  "Value",
  "__proto__",
  "constructor",
  "toString",
  "length",
  "0",
  "",
  "é",
];

/** Characters from the whole UTF-16 range, weighted toward ASCII and controls. */
export function randomChar(rng: Rng): string {
  const r = rng.float();
  if (r < 0.6) return String.fromCharCode(rng.range(0x20, 0x7e));
  if (r < 0.75) return String.fromCharCode(rng.int(0x20));
  if (r < 0.85) return String.fromCharCode(rng.range(0x7f, 0xff));
  if (r < 0.95) return String.fromCharCode(rng.int(0x10000));
  return String.fromCodePoint(rng.range(0x10000, 0x10ffff));
}

export function randomText(rng: Rng, max: number): string {
  const n = rng.size(max);
  let out = "";
  for (let i = 0; i < n; i++) out += randomChar(rng);
  return out;
}

/** Random bytes read as text the way a driver reads a body: UTF-8 with replacement, or Latin-1. */
export function randomBytesText(rng: Rng, max: number): string {
  const bytes = new Uint8Array(rng.size(max));
  for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(256);
  return rng.chance(0.5) ? new TextDecoder().decode(bytes) : Buffer.from(bytes).toString("latin1");
}

export function randomString(rng: Rng): string {
  const r = rng.float();
  if (r < 0.3) return rng.pick(SPECIAL_STRINGS);
  if (r < 0.4) return rng.pick(WEIRD_NUMBERS);
  if (r < 0.5) return Buffer.from(randomText(rng, 40)).toString("base64");
  if (r < 0.998) return randomText(rng, 60);
  return "x".repeat(rng.range(1_000, 20_000));
}

function randomNumber(rng: Rng): number {
  return rng.pick([
    0,
    -0,
    1,
    -1,
    0.5,
    1e21,
    -1e21,
    2 ** 31,
    2 ** 32,
    2 ** 53,
    2 ** 53 + 2,
    2 ** 63,
    2 ** 64,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
    rng.int(100),
    rng.int(70_000),
    rng.u32(),
    -rng.u32(),
    rng.float() * 1e6,
  ]);
}

/** A random JSON value of any type, at most `depth` levels deep. */
export function randomJson(rng: Rng, depth = 3): unknown {
  const r = rng.float();
  if (r < 0.1) return null;
  if (r < 0.2) return rng.chance(0.5);
  if (r < 0.4) return randomNumber(rng);
  if (r < 0.65 || depth <= 0) return randomString(rng);
  if (r < 0.8) return Array.from({ length: rng.size(6) }, () => randomJson(rng, depth - 1));
  const object: Record<string, unknown> = {};
  const n = rng.size(6);
  for (let i = 0; i < n; i++) {
    const key = rng.chance(0.5) ? rng.pick(KEYS) : randomText(rng, 12);
    Object.defineProperty(object, key, {
      value: randomJson(rng, depth - 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return object;
}

/** JSON text nested `n` levels deep (lists, objects, or a mix), valid or cut short. */
export function deepNesting(rng: Rng): string {
  const n = rng.chance(0.02) ? 100_000 : rng.pick([64, 500, 2_000, 10_000]);
  const inner = rng.pick(['"x"', "1", "null", "{}", "[]"]);
  const kind = rng.int(3);
  const open = kind === 0 ? "[" : kind === 1 ? '{"a":' : '[{"a":';
  const close = kind === 0 ? "]" : kind === 1 ? "}" : "}]";
  const text = `${open.repeat(n)}${inner}${close.repeat(n)}`;
  return rng.chance(0.2) ? text.slice(0, rng.int(text.length)) : text;
}

/** The same nesting as a value (for inputs that are parsed JSON already). */
export function deepValue(rng: Rng): unknown {
  const n = rng.chance(0.05) ? 20_000 : rng.pick([64, 500, 2_000]);
  let value: unknown = rng.pick(["x", 1, null]);
  for (let i = 0; i < n; i++) value = rng.chance(0.5) ? [value] : { a: value };
  return value;
}

const NUMBER_TOKEN = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

/** One text-level mutation of `text`; `corpus` gives material to splice in. */
export function mutateText(rng: Rng, text: string, corpus: readonly string[]): string {
  const at = rng.int(text.length + 1);
  switch (rng.int(10)) {
    case 0:
      return text.slice(0, at) + randomChar(rng) + text.slice(at + 1);
    case 1:
      return text.slice(0, at) + randomText(rng, 8) + text.slice(at);
    case 2:
      return text.slice(0, at) + text.slice(at + rng.size(40));
    case 3: {
      const end = Math.min(text.length, at + rng.size(60));
      return text.slice(0, end) + text.slice(at, end).repeat(rng.range(1, 4)) + text.slice(end);
    }
    case 4: {
      const tokens = [...text.matchAll(NUMBER_TOKEN)];
      if (tokens.length === 0) return text + rng.pick(WEIRD_NUMBERS);
      const token = rng.pick(tokens);
      const start = token.index ?? 0;
      return text.slice(0, start) + rng.pick(WEIRD_NUMBERS) + text.slice(start + token[0].length);
    }
    case 5: {
      const other = rng.pick(corpus);
      const from = rng.int(other.length + 1);
      return text.slice(0, at) + other.slice(from, from + rng.size(80)) + text.slice(at);
    }
    case 6:
      return text.slice(0, at);
    case 7:
      return (
        text.slice(0, at) +
        rng.pick(['"', "\\", "{", "}", "[", "]", ",", ":", "\n", "\u0000"]) +
        text.slice(at)
      );
    case 8:
      return text.slice(0, at) + JSON.stringify(randomString(rng)) + text.slice(at);
    default:
      return text.slice(0, at) + JSON.stringify(randomJson(rng, 2)) + text.slice(at);
  }
}

/** One JSON-level mutation: a value somewhere in `value` replaced, dropped, added to or wrapped. */
export function mutateJson(rng: Rng, value: unknown, depth = 0): unknown {
  const isList = Array.isArray(value);
  const isObject = typeof value === "object" && value !== null && !isList;
  if ((!isList && !isObject) || rng.chance(depth === 0 ? 0.05 : 0.3)) {
    const r = rng.float();
    if (r < 0.6) return randomJson(rng, 2);
    if (r < 0.7) return [value];
    if (r < 0.8) return { value };
    if (r < 0.82) return deepValue(rng);
    return undefined;
  }
  if (isList) {
    const list = [...(value as unknown[])];
    if (list.length === 0 || rng.chance(0.2)) list.splice(rng.int(list.length + 1), 0, randomJson(rng, 2));
    else {
      const i = rng.int(list.length);
      list[i] = mutateJson(rng, list[i], depth + 1);
    }
    return list;
  }
  const object = { ...(value as Record<string, unknown>) };
  const keys = Object.keys(object);
  const r = rng.float();
  if (keys.length === 0 || r < 0.15)
    object[rng.chance(0.5) ? rng.pick(KEYS) : randomText(rng, 10)] = randomJson(rng, 2);
  else if (r < 0.3) delete object[rng.pick(keys)];
  else if (r < 0.4) {
    const key = rng.pick(keys);
    const other = rng.chance(0.5) ? key.toLowerCase() : key.toUpperCase();
    object[other] = randomJson(rng, 1);
  } else {
    const key = rng.pick(keys);
    object[key] = mutateJson(rng, object[key], depth + 1);
  }
  return object;
}

/**
 * A text input for a parser of `seeds`: random bytes or characters, a seed mutated as text or as
 * JSON (one to four times), or deep nesting.
 */
export function textInput(rng: Rng, seeds: readonly string[]): string {
  const r = rng.float();
  if (r < 0.1) return randomBytesText(rng, 300);
  if (r < 0.15) return randomText(rng, 300);
  if (r < 0.2) return JSON.stringify(randomJson(rng, 4)) ?? "";
  if (r < 0.22) return deepNesting(rng);
  let text = rng.pick(seeds);
  const rounds = rng.range(1, 4);
  for (let i = 0; i < rounds; i++) {
    if (rng.chance(0.5)) {
      try {
        text = JSON.stringify(mutateJson(rng, JSON.parse(text))) ?? "";
        continue;
      } catch {
        // not JSON (any more): mutate the text
      }
    }
    text = mutateText(rng, text, seeds);
  }
  return text;
}
