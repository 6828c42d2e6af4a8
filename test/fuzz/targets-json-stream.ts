/**
 * Fuzz targets for the incremental JSON reader (`stores/json-stream.ts`) and the list decoders fed by
 * it (etcd v2, Consul, the etcd v3 gateway). Inputs are random bytes, random JSON, deep nesting and
 * mutated list answers, each cut into random chunks and read with a random limit. Where the input is
 * JSON, the reader must give what JSON.parse gives (long strings under the limited properties turned
 * into their exact `OmittedString`), and each list decoder the same on the streamed value as on the
 * parsed one. The reader may throw only `JsonStreamError`, the decoders only `StoreError`.
 */
import * as consul from "../../stores/consul/codec.ts";
import { StoreError } from "../../stores/errors.ts";
import * as etcd3 from "../../stores/etcd/codec.ts";
import * as etcd2 from "../../stores/etcd2/codec.ts";
import { JsonStreamError, JsonStreamReader, OmittedString } from "../../stores/json-stream.ts";
import { textInput } from "./inputs.ts";
import type { Rng } from "./prng.ts";
import { check, checkMessage, type FuzzTarget, tolerate } from "./target.ts";

const b64 = (text: string) => Buffer.from(text).toString("base64");
const LEASE = '{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"vxlan","pad":"\\u0000\\"é🚀"}';
const KEY = "coreos.com/network/subnets/10.5.1.0-24";
const VALUES = [
  LEASE,
  "",
  "x".repeat(300),
  "é".repeat(40),
  "🚀".repeat(20),
  "s",
  "abc",
  "abcde",
  "é".repeat(8),
];

const etcd2Node = (v: string, i: number) =>
  JSON.stringify({ key: `/${KEY}/${i}`, value: v, ttl: 60, modifiedIndex: 10 + i, createdIndex: 10 });
const consulEntry = (v: string, i: number) =>
  `{"LockIndex":0,"Key":"${KEY}/${i}","Flags":0,"Value":${v === "" ? "null" : `"${b64(v)}"`},"CreateIndex":${10 + i},"ModifyIndex":${i === 2 ? "18446744073709551615" : 20 + i},"Session":"adf4238a"}`;
const etcd3Kv = (v: string, i: number) =>
  `{"key":"${b64(`/${KEY}/${i}`)}","create_revision":"5","mod_revision":"${40 + i}","version":"1","value":"${b64(v)}","lease":"7587"}`;

const ETCD2_LIST = `{"action":"get","node":{"key":"/coreos.com/network","dir":true,"nodes":[{"key":"/coreos.com/network/subnets","dir":true,"nodes":[${VALUES.map(etcd2Node).join(",")}],"modifiedIndex":3,"createdIndex":3}],"modifiedIndex":2,"createdIndex":2}}`;
const CONSUL_LIST = `[${VALUES.map(consulEntry).join(",")}]`;
const ETCD3_LIST = `{"header":{"cluster_id":"1","member_id":"2","revision":"42","raft_term":"2"},"kvs":[${VALUES.map(etcd3Kv).join(",")}],"count":"${VALUES.length}"}`;
const SEEDS = [
  ETCD2_LIST,
  CONSUL_LIST,
  ETCD3_LIST,
  '{"a":[1,-0,1e400,2.5e-3,9007199254740993,true,false,null],"__proto__":{"value":"vvvvvvvv"},"b":"\\ud83d\\ude80\\ud800\\u00e9"}',
  '{"value":"QUJDRA==","Value":"QUJDREVG","value ":"QQ=Q","v":["value","Value"]}',
];
const PROPERTIES = [["value"], ["Value"], ["value", "Value", "key"], []];

/**
 * `text` with some characters spelled as `\uXXXX` escapes (a pair for each half of a surrogate pair),
 * which JSON.stringify never writes but servers may: inside strings it means the same text.
 */
function escapeSome(rng: Rng, text: string): string {
  const p = rng.pick([0.05, 0.3, 1]);
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    const plain =
      unit === 0x22 || unit === 0x5c || unit < 0x20 || !/[\w=+/\u0080-\uffff]/.test(text.charAt(i));
    out += plain || !rng.chance(p) ? text.charAt(i) : `\\u${unit.toString(16).padStart(4, "0")}`;
  }
  return out;
}

/** Random bytes, or the UTF-8 of a text input: random, JSON, deep, or a mutated list answer. */
function bodyBytes(rng: Rng): Uint8Array {
  if (rng.chance(0.08)) {
    const bytes = new Uint8Array(rng.size(300));
    for (let i = 0; i < bytes.length; i++)
      bytes[i] = rng.chance(0.5) ? rng.int(256) : rng.pick([0x22, 0x5c, 0x7b, 0x5b]);
    return bytes;
  }
  const text = textInput(rng, SEEDS);
  return new TextEncoder().encode(rng.chance(0.3) ? escapeSome(rng, text) : text);
}

function cuts(rng: Rng, length: number): number[] {
  if (rng.chance(0.05)) return Array.from({ length: Math.max(0, length - 1) }, (_, i) => i + 1);
  return Array.from({ length: rng.size(12) }, () => rng.int(length + 1)).sort((a, b) => a - b);
}

/** Reads `bytes` cut at `at`; the value, or undefined when the reader refused it (a `JsonStreamError`). */
function streamed(
  reader: JsonStreamReader,
  bytes: Uint8Array,
  at: readonly number[],
): { value: unknown } | undefined {
  return tolerate(
    () => {
      let from = 0;
      for (const cut of [...at, bytes.length]) {
        reader.push(bytes.subarray(from, cut));
        from = cut;
      }
      return { value: reader.end() };
    },
    (err) => {
      checkMessage(err);
      return err instanceof JsonStreamError;
    },
  );
}

/** JSON.parse's value of the body as a driver reads it, or undefined when it is not JSON. */
function parsed(bytes: Uint8Array): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(new TextDecoder().decode(bytes)) };
  } catch {
    return undefined;
  }
}

/** The reader refused a document JSON.parse accepts only for its documented limits. */
function withinLimits(bytes: Uint8Array): boolean {
  const reader = new JsonStreamReader();
  try {
    reader.push(bytes);
    reader.end();
    return true;
  } catch (err) {
    return !(err instanceof JsonStreamError && /deeper than|longer than/.test(err.message));
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** What the reader should make of JSON.parse's `value` under the limit (depth ≤ the reader's 1,000). */
function expectedOmission(value: unknown, properties: ReadonlySet<string>, maxBytes: number): unknown {
  if (Array.isArray(value)) return value.map((v) => expectedOmission(v, properties, maxBytes));
  if (typeof value !== "object" || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    let next = expectedOmission(v, properties, maxBytes);
    if (typeof v === "string" && properties.has(key) && Buffer.byteLength(v) > maxBytes) {
      const padding = v.length - v.replace(/=+$/, "").length;
      next = new OmittedString(Buffer.byteLength(v), padding, BASE64.test(v));
    }
    Object.defineProperty(out, key, { value: next, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

const same = (a: unknown, b: unknown) => Object.is(a, b) || Bun.deepEquals(a, b, true);

export const jsonStreamTarget: FuzzTarget<{
  bytes: Uint8Array;
  cuts: number[];
  properties: string[];
  maxBytes: number;
}> = {
  name: "json-stream",
  covers: ["JsonStreamReader.push, JsonStreamReader.end, OmittedString (stores/json-stream.ts)"],
  allowed: "JsonStreamError",
  generate(rng) {
    const bytes = bodyBytes(rng);
    return {
      bytes,
      cuts: cuts(rng, bytes.length),
      properties: rng.pick(PROPERTIES),
      maxBytes: rng.pick([0, 1, 4, 8, 16, 100, 1_000]),
    };
  },
  run({ bytes, cuts: at, properties, maxBytes }) {
    const omit = { properties, maxBytes };
    const got = streamed(new JsonStreamReader({ omit }), bytes, at);
    const want = parsed(bytes);
    if (want === undefined) {
      check(got === undefined, "the reader accepted a body JSON.parse refuses");
      return;
    }
    if (got === undefined) {
      check(!withinLimits(bytes), "the reader refused a body JSON.parse accepts, within its limits");
      return;
    }
    const expected = expectedOmission(want.value, new Set(properties), maxBytes);
    check(same(got.value, expected), "the reader's value differs from JSON.parse's");
  },
};

type ListKind = "etcd2" | "consul" | "etcd3";
const LIST_SEEDS: Record<ListKind, string> = { etcd2: ETCD2_LIST, consul: CONSUL_LIST, etcd3: ETCD3_LIST };
const EP = "http://127.0.0.1:2379";
const storeError = (err: unknown): boolean => {
  checkMessage(err);
  return err instanceof StoreError;
};

/** Every Value of a Consul answer is canonical base64 (Consul sends nothing else) or null. */
function canonicalValues(json: unknown): boolean {
  if (!Array.isArray(json)) return true;
  return json.every((e) => {
    const v = typeof e === "object" && e !== null ? (e as Record<string, unknown>).Value : undefined;
    return typeof v !== "string" || BASE64.test(v);
  });
}

/**
 * One list answer decoded by the driver's decoder: from the streamed value (`reader` set) or from
 * the parsed one. Consul's parsed path is `parseEntries`'s: JSON.parse, and `parseJson` when an index
 * is beyond 2^53.
 */
function decodeList(
  kind: ListKind,
  text: string,
  json: unknown,
  max: number | undefined,
  reader: boolean,
): unknown {
  switch (kind) {
    case "etcd2":
      return etcd2.flatten(etcd2.decodeAnswer(json, EP).node, "/coreos.com/", max);
    case "etcd3":
      return etcd3.decodeRangeList(json, EP, max);
    case "consul": {
      if (reader) return consul.decodeEntries(json, EP, undefined, max);
      try {
        return consul.decodeEntries(json, EP, undefined, max);
      } catch (err) {
        if (!(err instanceof StoreError && /not an exact integer/.test(err.message))) throw err;
        return consul.decodeEntries(consul.parseJson(text, EP), EP, undefined, max);
      }
    }
  }
}

function listReader(kind: ListKind, max: number): JsonStreamReader {
  return kind === "etcd2"
    ? etcd2.listReader(max)
    : kind === "consul"
      ? consul.listReader(max)
      : etcd3.rangeReader(max);
}

export const jsonListsTarget: FuzzTarget<{ kind: ListKind; text: string; cuts: number[]; max: number }> = {
  name: "json-lists",
  covers: [
    "etcd2 listReader, decodeAnswer, flatten; consul listReader, decodeEntries (with a previous snapshot);",
    "etcd3 rangeReader, decodeRangeList (stores/*/codec.ts)",
  ],
  allowed: "JsonStreamError (reader), StoreError (decoders)",
  generate(rng) {
    const kind = rng.pick(["etcd2", "consul", "etcd3"] as const);
    const input = rng.chance(0.3) ? LIST_SEEDS[kind] : textInput(rng, [LIST_SEEDS[kind]]);
    const text = rng.chance(0.3) ? escapeSome(rng, input) : input;
    return { kind, text, cuts: cuts(rng, text.length), max: rng.pick([0, 1, 3, 4, 16, 40, 81, 400, 10_000]) };
  },
  run({ kind, text, cuts: at, max }) {
    const bytes = new TextEncoder().encode(text);
    const got = streamed(listReader(kind, max), bytes, at);
    const want = parsed(bytes);
    if (want === undefined) {
      check(got === undefined, "the list reader accepted a body JSON.parse refuses");
      return;
    }
    if (got === undefined) {
      check(!withinLimits(bytes), "the list reader refused a body JSON.parse accepts, within its limits");
      return;
    }
    const fromStream = tolerate(() => ({ v: decodeList(kind, text, got.value, max, true) }), storeError);
    if (kind === "consul" && !canonicalValues(want.value)) return;
    const fromParse = tolerate(() => ({ v: decodeList(kind, text, want.value, max, false) }), storeError);
    if (kind === "consul" && fromStream !== undefined && fromParse === undefined) return; // parseJson's regex
    check(
      (fromStream === undefined) === (fromParse === undefined),
      "one decode path failed where the other did not",
    );
    if (fromStream === undefined || fromParse === undefined) return;
    check(same(fromStream.v, fromParse.v), "the streamed list decodes differently from the parsed one");
    if (kind === "consul") {
      // Reusing the entries of a read under another limit gives what a fresh decode gives.
      const previous = consul.snapshotOf(1n, fromStream.v as consul.ConsulEntry[]);
      for (const other of [undefined, 0, Math.max(0, max - 1), max + 1, 1_000_000]) {
        const json =
          other === undefined
            ? tolerate(() => ({ value: consul.parseJson(text, EP) }), storeError)
            : streamed(consul.listReader(other), bytes, []);
        if (json === undefined) continue;
        const again = tolerate(() => consul.decodeEntries(json.value, EP, previous, other), storeError);
        const fresh = tolerate(() => consul.decodeEntries(json.value, EP, undefined, other), storeError);
        check(same(again, fresh), "a reused Consul entry differs from a freshly decoded one");
      }
    }
  },
};
