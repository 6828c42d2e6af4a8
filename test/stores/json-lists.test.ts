/**
 * The list answers of the JSON stores read as they stream in under `maxValueBytes` (etcd v2, Consul,
 * the etcd v3 gateway): each driver's reader and decoder give, in every chunk split, what the same
 * decoder gives on JSON.parse's result, with the values over the limit left out at their exact length.
 */
import { describe, expect, test } from "bun:test";
import * as consul from "../../stores/consul/codec.ts";
import { ConsulStore } from "../../stores/consul/index.ts";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import * as etcd3 from "../../stores/etcd/codec.ts";
import { Etcd3Store } from "../../stores/etcd/index.ts";
import * as etcd2 from "../../stores/etcd2/codec.ts";
import { Etcd2Store } from "../../stores/etcd2/index.ts";
import type { JsonStreamReader } from "../../stores/json-stream.ts";
import type { StoreRuntimeOptions } from "../../stores/runtime.ts";
import type { KeyValue, Store } from "../../stores/store.ts";
import { Rng } from "../fuzz/prng.ts";
import { codeOf } from "./fixtures/code-of.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);
const b64 = (text: string) => Buffer.from(text).toString("base64");
const LIMIT = 16;
/** Values around the limit: fits, one over, two-byte and four-byte characters, escapes. */
const VALUES = [
  "",
  "x".repeat(LIMIT),
  "x".repeat(LIMIT + 1),
  "é".repeat(LIMIT / 2),
  "é".repeat(LIMIT / 2 + 1),
  "🚀".repeat(LIMIT / 4 + 1),
  '{"PublicIP":"10.0.0.9","pad":"\u0000\\"\n"}',
  "small",
  "y".repeat(1_000),
];

/** Reads `bytes` through `reader`, cut at random places. */
function stream(reader: JsonStreamReader, bytes: Uint8Array, rng: Rng): unknown {
  let at = 0;
  while (at < bytes.length) {
    const next = Math.min(bytes.length, at + 1 + rng.int(9));
    reader.push(bytes.subarray(at, next));
    at = next;
  }
  return reader.end();
}

/** What a list under LIMIT hands over for each value. */
function expectBound(entries: readonly KeyValue[], values: readonly string[]): void {
  expect(entries.map((e) => e.value)).toEqual(values.map((v) => (Buffer.byteLength(v) > LIMIT ? "" : v)));
  expect(entries.map((e) => e.omittedBytes)).toEqual(
    values.map((v) => (Buffer.byteLength(v) > LIMIT ? Buffer.byteLength(v) : undefined)),
  );
}

const EP = "http://127.0.0.1:2379";

describe("json lists", () => {
  test("json lists - etcd2: the streamed tree decodes as the parsed one, long values left out", () => {
    const node = (v: string, i: number) => ({
      key: `/p/d/k${String(i).padStart(2, "0")}`,
      value: v,
      modifiedIndex: 10 + i,
      createdIndex: 10 + i,
      ...(i % 2 === 0 ? { ttl: 30, expiration: "2026-01-02T03:04:05Z" } : {}),
    });
    const body = JSON.stringify({
      action: "get",
      node: {
        key: "/p",
        dir: true,
        nodes: [{ key: "/p/d", dir: true, nodes: VALUES.map(node), modifiedIndex: 3, createdIndex: 3 }],
        modifiedIndex: 2,
        createdIndex: 2,
      },
    });
    const parsed = etcd2.flatten(etcd2.parseAnswer(body, EP).node, "/p/", LIMIT);
    expectBound(parsed, VALUES);
    expect(parsed[0]).toMatchObject({ key: "/p/d/k00", revision: 10n, expires: true, ttlSeconds: 30 });
    const rng = new Rng(1);
    for (let n = 0; n < 50; n++) {
      const json = stream(etcd2.listReader(LIMIT), utf8(body), rng);
      expect(etcd2.flatten(etcd2.decodeAnswer(json, EP).node, "/p/", LIMIT)).toEqual(parsed);
    }
    // Without a limit nothing is left out; the wrong shape is the same Protocol error on both paths.
    expect(etcd2.flatten(etcd2.parseAnswer(body, EP).node, "/p/").map((e) => e.value)).toEqual(VALUES);
    const odd = '{"action":"get","node":{"key":"/p","value":7,"modifiedIndex":1}}';
    expect(codeOf(() => etcd2.parseAnswer(odd, EP))).toBe(StoreErrorCode.Protocol);
    expect(codeOf(() => etcd2.decodeAnswer(stream(etcd2.listReader(2), utf8(odd), rng), EP))).toBe(
      StoreErrorCode.Protocol,
    );
  });

  test("json lists - consul: streamed entries decode as parsed ones, indexes exact beyond 2^53", () => {
    const entry = (v: string, i: number) =>
      `{"LockIndex":0,"Key":"p/k${i}","Flags":0,"Value":${v === "" ? "null" : `"${b64(v)}"`},"CreateIndex":${i === 3 ? "18446744073709551615" : 10 + i},"ModifyIndex":${20 + i}${i % 2 === 0 ? ',"Session":"s-1"' : ""}}`;
    const body = `[${VALUES.map(entry).join(",")}]`;
    const whole = consul.parseEntries(body, EP);
    expect(whole[3]?.createIndex).toBe(18446744073709551615n);
    const rng = new Rng(2);
    let first: consul.ConsulEntry[] | undefined;
    for (let n = 0; n < 50; n++) {
      const entries = consul.decodeEntries(
        stream(consul.listReader(LIMIT), utf8(body), rng),
        EP,
        undefined,
        LIMIT,
      );
      expectBound(
        entries.map((e) => consul.toKeyValue(e)),
        VALUES,
      );
      // Everything but the left-out values is what the unbounded read gives.
      expect(entries.map((e) => ({ ...e, value: "", omittedBytes: undefined }))).toEqual(
        whole.map((e) => ({ ...e, value: "", omittedBytes: undefined })),
      );
      first ??= entries;
    }
    // The same decoder on JSON.parse's result (parseJson keeps the indexes exact) gives the same.
    const parsed = consul.decodeEntries(consul.parseJson(body, EP), EP, undefined, LIMIT);
    expect(parsed).toEqual(first ?? []);
  });

  test("json lists - consul: a later read reuses an entry only when the limit leaves it the same", () => {
    const long = "z".repeat(LIMIT + 5);
    const body = `[{"Key":"p/a","Value":"${b64(long)}","CreateIndex":5,"ModifyIndex":6},{"Key":"p/b","Value":"${b64("s")}","CreateIndex":5,"ModifyIndex":7}]`;
    const unbounded = consul.parseEntries(body, EP);
    const previous = consul.snapshotOf(7n, unbounded);
    const read = (max: number | undefined, prev?: consul.Snapshot) =>
      max === undefined
        ? consul.parseEntries(body, EP, prev)
        : consul.decodeEntries(stream(consul.listReader(max), utf8(body), new Rng(3)), EP, prev, max);
    const bounded = read(LIMIT, previous);
    expect(bounded[0]).toMatchObject({ value: "", omittedBytes: LIMIT + 5 });
    expect(bounded[0]).not.toBe(unbounded[0]);
    expect(bounded[1]).toBe(unbounded[1] as consul.ConsulEntry); // unchanged and within the limit
    // A limit that lets the base64 through but not the decoded bytes.
    const tight = read(LIMIT + 4, consul.snapshotOf(7n, unbounded));
    expect(tight[0]).toMatchObject({ value: "", omittedBytes: LIMIT + 5 });
    // Back without a limit: the left-out entry is decoded again, not reused.
    const again = read(undefined, consul.snapshotOf(7n, bounded));
    expect(again[0]?.value).toBe(long);
    expect(again[1]).toBe(unbounded[1] as consul.ConsulEntry);
    // Bounded twice: the left-out entry is reused as it is.
    expect(read(LIMIT, consul.snapshotOf(7n, bounded))[0]).toBe(bounded[0] as consul.ConsulEntry);
  });

  test("json lists - etcd3 gateway: the streamed Range decodes as the parsed one, long values left out", () => {
    const header = '{"cluster_id":"1","member_id":"2","revision":"42","raft_term":"2"}';
    const kv = (v: string, i: number) =>
      `{"key":"${b64(`/p/k${i}`)}","create_revision":"${5 + i}","mod_revision":"${30 + i}","version":"1","value":"${b64(v)}"${i % 2 === 0 ? ',"lease":"7587862072903546628"' : ""}}`;
    const body = `{"header":${header},"kvs":[${VALUES.map(kv).join(",")}],"count":"${VALUES.length}"}`;
    const where = `${EP}/v3/kv/range`;
    const parsed = etcd3.decodeRangeList(etcd3.parseJson(body, where), where, LIMIT);
    expect(parsed.revision).toBe(42n);
    expectBound(parsed.entries, VALUES);
    expect(parsed.entries[0]).toMatchObject({ key: "/p/k0", revision: 30n, expires: true });
    const plain = etcd3.decodeRange(etcd3.parseJson(body, where), where).kvs.map((k) => etcd3.toKeyValue(k));
    expect(etcd3.decodeRangeList(etcd3.parseJson(body, where), where, undefined).entries).toEqual(plain);
    const rng = new Rng(4);
    for (let n = 0; n < 50; n++) {
      const json = stream(etcd3.rangeReader(LIMIT), utf8(body), rng);
      expect(etcd3.decodeRangeList(json, where, LIMIT)).toEqual(parsed);
    }
    // A value that is not base64 is refused whether it was kept or left out unread.
    const bad = `{"header":${header},"kvs":[{"key":"${b64("/p/x")}","value":"${"*".repeat(100)}"}]}`;
    expect(codeOf(() => etcd3.decodeRangeList(etcd3.parseJson(bad, where), where, LIMIT))).toBe(
      StoreErrorCode.Protocol,
    );
    expect(
      codeOf(() => etcd3.decodeRangeList(stream(etcd3.rangeReader(LIMIT), utf8(bad), rng), where, LIMIT)),
    ).toBe(StoreErrorCode.Protocol);
  });
});

/** A fetch answering every request with `body` (cut into 7-byte chunks) and `headers`. */
function chunkedFetch(body: string, headers: Record<string, string>, seen?: string[]): typeof fetch {
  return Object.assign(
    async (input: string | URL | Request) => {
      seen?.push(String(input));
      const bytes = utf8(body);
      let at = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (at >= bytes.length) controller.close();
          else {
            controller.enqueue(bytes.slice(at, at + 7));
            at += 7;
          }
        },
      });
      return new Response(stream, { status: 200, headers });
    },
    { preconnect: fetch.preconnect },
  );
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new TypeError("expected the call to fail, but it succeeded");
}

describe("json lists through the drivers", () => {
  const long = "L".repeat(100);
  const cases: {
    name: string;
    open: (f: typeof fetch, runtime: StoreRuntimeOptions) => Store;
    body: string;
    headers: Record<string, string>;
  }[] = [
    {
      name: "etcd2",
      open: (f, runtime) => new Etcd2Store({ endpoints: [EP], fetch: f }, runtime),
      body: JSON.stringify({
        action: "get",
        node: {
          key: "/p",
          dir: true,
          nodes: [
            { key: "/p/a", value: long, modifiedIndex: 5, createdIndex: 5 },
            { key: "/p/b", value: "short", modifiedIndex: 6, createdIndex: 6 },
          ],
          modifiedIndex: 2,
          createdIndex: 2,
        },
      }),
      headers: { "x-etcd-index": "9" },
    },
    {
      name: "consul",
      open: (f, runtime) => new ConsulStore({ endpoints: [EP], fetch: f }, runtime),
      body: `[{"Key":"p/a","Value":"${b64(long)}","CreateIndex":5,"ModifyIndex":5},{"Key":"p/b","Value":"${b64("short")}","CreateIndex":6,"ModifyIndex":6}]`,
      headers: { "x-consul-index": "9" },
    },
    {
      name: "etcd",
      open: (f, runtime) => new Etcd3Store({ endpoints: [EP], fetch: f }, runtime),
      body: `{"header":{"revision":"9"},"kvs":[{"key":"${b64("/p/a")}","value":"${b64(long)}","mod_revision":"5"},{"key":"${b64("/p/b")}","value":"${b64("short")}","mod_revision":"6"}]}`,
      headers: {},
    },
  ];
  // Streamed (every answer through the reader) and as text (the answers here are short).
  for (const [c, textBodyBytes] of cases.flatMap((c) => [[c, 0] as const, [c, undefined] as const])) {
    const how = textBodyBytes === 0 ? "streamed" : "as text";
    const runtime = { textBodyBytes };
    test(`json lists - ${c.name} ${how}: list with maxValueBytes reads a chunked answer and leaves the long value out`, async () => {
      const store = c.open(chunkedFetch(c.body, c.headers), runtime);
      try {
        const listed = await store.list("/p/", { maxValueBytes: 10 });
        expect(listed.revision).toBe(9n);
        expect(listed.entries.map((e) => [e.key, e.value, e.omittedBytes])).toEqual([
          ["/p/a", "", 100],
          ["/p/b", "short", undefined],
        ]);
        const whole = await store.list("/p/");
        expect(whole.entries.map((e) => [e.key, e.value, e.omittedBytes])).toEqual([
          ["/p/a", long, undefined],
          ["/p/b", "short", undefined],
        ]);
      } finally {
        await store.close();
      }
    });

    test(`json lists - ${c.name} ${how}: an answer cut short is a Protocol error naming the endpoint`, async () => {
      const store = c.open(chunkedFetch(c.body.slice(0, c.body.length - 3), c.headers), runtime);
      try {
        const err = await failure(store.list("/p/", { maxValueBytes: 10 }));
        expect(isStoreError(err, StoreErrorCode.Protocol)).toBe(true);
        expect((err as Error).message).toContain(EP);
        if (textBodyBytes === 0) expect((err as Error).message).toContain("ends early");
      } finally {
        await store.close();
      }
    });
  }
});
