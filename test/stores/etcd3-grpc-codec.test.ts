import { describe, expect, test } from "bun:test";
import { StoreErrorCode } from "../../stores/errors.ts";
import { decodeRange, toKeyValue } from "../../stores/etcd/codec.ts";
import {
  decodeRangeMessage,
  frameMessage,
  prefixRangeMessage,
  unframeMessage,
} from "../../stores/etcd/grpc-codec.ts";
import { RangeStreamDecoder } from "../../stores/etcd/grpc-range-stream.ts";
import type { ListResult } from "../../stores/store.ts";
import { boundValue } from "../../stores/values.ts";
import { Rng } from "../fuzz/prng.ts";
import { codeOf } from "./fixtures/code-of.ts";

const W = "http://127.0.0.1:2379/etcdserverpb.KV/Range";

/** A protobuf writer for the test's own messages (varints from bigint, so any int64 fits). */
function varint(value: bigint): number[] {
  let v = BigInt.asUintN(64, value);
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}
const tag = (field: number, wire: number) => varint(BigInt((field << 3) | wire));
const bytes = (field: number, data: Uint8Array | number[]) => [
  ...tag(field, 2),
  ...varint(BigInt(data.length)),
  ...data,
];
const int = (field: number, value: bigint) => [...tag(field, 0), ...varint(value)];
const utf8 = (text: string) => [...new TextEncoder().encode(text)];

function kv(key: string, value: string, mod: bigint, lease = 0n): number[] {
  return bytes(2, [
    ...bytes(1, utf8(key)),
    ...int(2, mod - 1n),
    ...int(3, mod),
    ...int(4, 1n),
    ...bytes(5, utf8(value)),
    ...(lease === 0n ? [] : int(6, lease)),
  ]);
}
const header = (revision: bigint) => bytes(1, [...int(1, 14841639068965178418n), ...int(3, revision)]);

describe("etcd3 gRPC codec", () => {
  test("etcd3 gRPC codec - a prefix RangeRequest is key, range_end and ascending order, byte for byte", () => {
    expect([...prefixRangeMessage("/a/")]).toEqual([
      ...bytes(1, utf8("/a/")),
      ...bytes(2, utf8("/a0")), // "/" + 1 = "0"
      ...int(5, 1n),
    ]);
    // the empty prefix is the whole keyspace: key \0, range_end \0
    expect([...prefixRangeMessage("")]).toEqual([...bytes(1, [0]), ...bytes(2, [0]), ...int(5, 1n)]);
    // the last byte below 0xff is the one incremented (UTF-8 of "é" is c3 a9)
    expect([...prefixRangeMessage("é")]).toEqual([
      ...bytes(1, [0xc3, 0xa9]),
      ...bytes(2, [0xc3, 0xaa]),
      ...int(5, 1n),
    ]);
  });

  test("etcd3 gRPC codec - messages are framed with a zero flag and a big-endian length", () => {
    const framed = frameMessage(Uint8Array.of(7, 8, 9));
    expect([...framed]).toEqual([0, 0, 0, 0, 3, 7, 8, 9]);
    expect([...unframeMessage(framed, W)]).toEqual([7, 8, 9]);
    expect(codeOf(() => unframeMessage(Uint8Array.of(1, 0, 0, 0, 1, 5), W))).toBe(StoreErrorCode.Protocol);
    expect(codeOf(() => unframeMessage(Uint8Array.of(0, 0, 0, 0, 4, 5), W))).toBe(StoreErrorCode.Protocol);
    expect(codeOf(() => unframeMessage(Uint8Array.of(0, 0), W))).toBe(StoreErrorCode.Protocol);
  });

  test("etcd3 gRPC codec - a RangeResponse decodes exactly as the gateway's JSON of the same range", () => {
    const bigLease = 7_587_875_418_069_286_165n; // etcd lease IDs use all 63 bits
    const value = '{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"host-gw"} 雪 ✓ 🚀';
    const message = Uint8Array.from([
      ...header(9_007_199_254_740_993n),
      ...kv("/coreos.com/network/subnets/10.5.3.0-24&fd00::-64", value, 41n, bigLease),
      ...kv("/r", "", 42n),
      ...int(3, 0n), // more
      ...int(4, 2n), // count
    ]);
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const gateway = decodeRange(
      {
        header: { cluster_id: "14841639068965178418", revision: "9007199254740993" },
        kvs: [
          {
            key: b64("/coreos.com/network/subnets/10.5.3.0-24&fd00::-64"),
            create_revision: "40",
            mod_revision: "41",
            version: "1",
            value: b64(value),
            lease: bigLease.toString(),
          },
          { key: b64("/r"), create_revision: "41", mod_revision: "42", version: "1" },
        ],
        count: "2",
      },
      W,
    );
    expect(decodeRangeMessage(message, W)).toEqual(gateway);
  });

  test("etcd3 gRPC codec - unknown fields of every wire type are skipped", () => {
    const message = Uint8Array.from([
      ...tag(15, 1),
      ...[1, 2, 3, 4, 5, 6, 7, 8], // fixed64
      ...header(5n),
      ...tag(16, 5),
      ...[1, 2, 3, 4], // fixed32
      ...bytes(2, [...bytes(1, utf8("/k")), ...int(3, 5n), ...bytes(9, [1, 2]), ...bytes(5, utf8("v"))]),
    ]);
    expect(decodeRangeMessage(message, W)).toEqual({
      revision: 5n,
      kvs: [{ key: "/k", value: "v", createRevision: 0n, modRevision: 5n, version: 0n, lease: 0n }],
    });
  });

  test("etcd3 gRPC codec - broken answers are Protocol errors, never wrong data", () => {
    const good = [...header(5n), ...kv("/k", "v", 5n)];
    const broken: [string, number[]][] = [
      ["no header revision", kv("/k", "v", 5n)],
      ["a kv without key", [...header(5n), ...bytes(2, int(3, 5n))]],
      ["cut inside a field", good.slice(0, -1)],
      ["a length past the end", [...header(5n), ...tag(2, 2), 100, 1]],
      ["an endless varint", [...header(5n), ...tag(4, 0), ...Array(11).fill(0xff)]],
      ["wire type 3", [...header(5n), ...tag(7, 3)]],
    ];
    for (const [what, message] of broken) {
      expect({ what, code: codeOf(() => decodeRangeMessage(Uint8Array.from(message), W)) }).toEqual({
        what,
        code: StoreErrorCode.Protocol,
      });
    }
    expect(decodeRangeMessage(Uint8Array.from(good), W).kvs).toHaveLength(1);
  });
});

/** The whole-buffer path: unframe, decode, then the contract's rule on each value. */
function wholeList(body: Uint8Array, max: number | undefined): ListResult {
  const answer = decodeRangeMessage(unframeMessage(body, W), W);
  return { revision: answer.revision, entries: answer.kvs.map((kv) => boundValue(toKeyValue(kv), max)) };
}

/** The streaming decoder fed `body` cut at `cuts` (increasing offsets). */
function streamList(body: Uint8Array, cuts: readonly number[], max: number | undefined, small?: number) {
  const decoder = new RangeStreamDecoder(W, max, small);
  let from = 0;
  for (const cut of [...cuts, body.length]) {
    decoder.push(body.subarray(from, cut));
    from = cut;
  }
  return decoder.end();
}

/** Cut points splitting `length` bytes into chunks of 1..`most` bytes, from a seeded PRNG. */
function randomCuts(rng: Rng, length: number, most: number): number[] {
  const cuts: number[] = [];
  for (let at = rng.range(1, most); at < length; at += rng.range(1, most)) cuts.push(at);
  return cuts;
}

const everyByte = (length: number) => Array.from({ length: Math.max(0, length - 1) }, (_, i) => i + 1);

function streamCode(body: Uint8Array, cuts: readonly number[], max?: number, small?: number) {
  return codeOf(() => streamList(body, cuts, max, small));
}

/**
 * A RangeResponse with what makes cutting hard: multi-byte UTF-8, 63-bit leases (10-byte varints),
 * two-byte tags and lengths, unknown fields of every wire type, an empty value, a second header.
 */
function hardMessage(): number[] {
  return [
    ...tag(15, 1),
    ...[1, 2, 3, 4, 5, 6, 7, 8],
    ...header(4n),
    ...kv("/coreos.com/network/subnets/10.5.3.0-24&fd00::-64", `{"PublicIP":"10.0.0.5"} 雪 ✓ 🚀`, 41n, -2n),
    ...tag(16, 5),
    ...[1, 2, 3, 4],
    ...kv("/é", "é".repeat(70), 42n, 7_587_875_418_069_286_165n),
    ...bytes(2, [...bytes(1, utf8("/u")), ...int(3, 43n), ...bytes(20, [9, 9]), ...int(21, 1n << 62n)]),
    ...kv("/x", "x".repeat(200), 44n),
    // Two values: the last one counts, in protobuf as in the whole decoder.
    ...bytes(2, [
      ...bytes(1, utf8("/2")),
      ...int(3, 44n),
      ...bytes(5, utf8("y".repeat(150))),
      ...bytes(5, []),
    ]),
    ...header(45n),
    ...int(3, 1n),
    ...int(4, 4n),
  ];
}

describe("etcd3 gRPC streaming decode", () => {
  const hard = frameMessage(Uint8Array.from(hardMessage()));

  test("etcd3 gRPC stream - every cut of an answer decodes as the whole answer does, kvs buffered or walked", () => {
    const expected = wholeList(hard, undefined);
    expect(expected.entries).toHaveLength(5);
    expect(expected.revision).toBe(45n);
    // Small messages buffered (the default), or every kv and header walked field by field.
    for (const small of [undefined, 0, 40]) {
      expect(streamList(hard, [], undefined, small)).toEqual(expected);
      expect(streamList(hard, everyByte(hard.length), undefined, small)).toEqual(expected);
      for (let a = 1; a < hard.length; a++) {
        expect(streamList(hard, [a], undefined, small)).toEqual(expected);
        for (let b = a + 1; b < hard.length; b += 7) {
          expect(streamList(hard, [a, b], undefined, small)).toEqual(expected);
        }
      }
    }
  });

  test("etcd3 gRPC stream - random cuts with a limit leave out exactly the values boundValue leaves out", () => {
    const rng = new Rng(20_260_311);
    for (const max of [0, 1, 2, 4, 10, 139, 140, 141, 200, 4096]) {
      const expected = wholeList(hard, max);
      for (let round = 0; round < 60; round++) {
        const small = [undefined, 0, 16, 64, 256][rng.int(5)];
        const cuts = randomCuts(rng, hard.length, rng.pick([1, 3, 17, 64, 1_000]));
        expect({ max, small, cuts, got: streamList(hard, cuts, max, small) }).toEqual({
          max,
          small,
          cuts,
          got: expected,
        });
      }
    }
    // "é" is 2 bytes: 140 bytes fit a limit of 140, not of 139.
    const wide = (max: number) => streamList(hard, everyByte(hard.length), max, 0).entries[1];
    expect(wide(140)).toMatchObject({ key: "/é", value: "é".repeat(70) });
    expect(wide(139)).toMatchObject({ key: "/é", value: "", omittedBytes: 140, expires: true });
  });

  test("etcd3 gRPC stream - a kv of 1 MiB is walked: key, revisions and lease kept, its value counted not held", () => {
    const mib = "m".repeat(1 << 20);
    const lease = 7_587_875_418_069_286_165n;
    const body = frameMessage(
      Uint8Array.from([...header(9n), ...kv("/big", mib, 8n, lease), ...kv("/small", "s", 9n)]),
    );
    const rng = new Rng(7);
    for (const cuts of [[], randomCuts(rng, body.length, 16_384), randomCuts(rng, body.length, 5)]) {
      const limited = streamList(body, cuts, 4096);
      expect(limited).toEqual({
        revision: 9n,
        entries: [
          { key: "/big", value: "", revision: 8n, expires: true, omittedBytes: 1 << 20 },
          { key: "/small", value: "s", revision: 9n, expires: false },
        ],
      });
      expect(streamList(body, cuts, undefined)).toEqual(wholeList(body, undefined));
      // A limit above the value keeps it, walked or buffered.
      expect(streamList(body, cuts, 1 << 20).entries[0]?.value).toBe(mib);
    }
  });

  test("etcd3 gRPC stream - 256 MiB of values pass through without the decoder's memory growing", () => {
    const count = 16;
    const valueBytes = 16 << 20;
    const kvHead = [...bytes(1, utf8("/k")), ...int(3, 5n), ...tag(5, 2), ...varint(BigInt(valueBytes))];
    const kvBytes = kvHead.length + valueBytes;
    const head = [...header(5n)];
    const messageBytes = head.length + count * (1 + varint(BigInt(kvBytes)).length + kvBytes);
    // Pushed as generated: the answer itself is never in memory either.
    const prefix = new Uint8Array(5);
    new DataView(prefix.buffer).setUint32(1, messageBytes);
    const decoder = new RangeStreamDecoder(W, 4096);
    decoder.push(prefix);
    decoder.push(Uint8Array.from(head));
    const chunk = new Uint8Array(16_384).fill(0x61);
    Bun.gc(true);
    const before = process.memoryUsage().rss;
    for (let i = 0; i < count; i++) {
      decoder.push(Uint8Array.from([...tag(2, 2), ...varint(BigInt(kvBytes)), ...kvHead]));
      for (let left = valueBytes; left > 0; left -= chunk.length) {
        decoder.push(chunk.subarray(0, Math.min(chunk.length, left)));
      }
    }
    const grown = process.memoryUsage().rss - before;
    const listed = decoder.end();
    expect(listed.entries).toHaveLength(count);
    expect(listed.entries.every((e) => e.value === "" && e.omittedBytes === valueBytes)).toBe(true);
    expect(grown).toBeLessThan(32 << 20);
  });

  test("etcd3 gRPC stream - broken answers are Protocol errors naming the endpoint, however they are cut", () => {
    const good = [...header(5n), ...kv("/k", "v", 5n)];
    const broken: [string, number[]][] = [
      ["no header revision", kv("/k", "v", 5n)],
      ["a kv without key", [...header(5n), ...bytes(2, int(3, 5n))]],
      ["an empty kv", [...header(5n), ...bytes(2, [])]],
      ["a length past the end", [...header(5n), ...tag(2, 2), 100, 1]],
      ["a length past its kv", [...header(5n), ...bytes(2, [...bytes(1, utf8("/k")), ...tag(5, 2), 9])]],
      ["an endless varint", [...header(5n), ...tag(4, 0), ...Array(11).fill(0xff)]],
      ["an endless tag", [...header(5n), ...Array(9).fill(0xff), 1]],
      [
        "a varint cut by its kv's end",
        [...header(5n), ...bytes(2, [...bytes(1, utf8("/k")), ...tag(3, 0), 0x80])],
      ],
      ["a fixed64 past the end", [...header(5n), ...tag(15, 1), 1, 2, 3]],
      ["wire type 3", [...header(5n), ...tag(7, 3)]],
      ["wire type 4 in a kv", [...header(5n), ...bytes(2, [...bytes(1, utf8("/k")), ...tag(7, 4)])]],
    ];
    for (const [what, message] of broken) {
      const body = frameMessage(Uint8Array.from(message));
      expect(codeOf(() => wholeList(body, undefined))).toBe(StoreErrorCode.Protocol);
      for (const small of [undefined, 0]) {
        for (const cuts of [[], everyByte(body.length)]) {
          expect({ what, small, code: streamCode(body, cuts, undefined, small) }).toEqual({
            what,
            small,
            code: StoreErrorCode.Protocol,
          });
        }
      }
    }
    const body = frameMessage(Uint8Array.from(good));
    // Cut short anywhere, or one byte too long: never an answer.
    for (let cut = 0; cut < body.length; cut++) {
      expect({ cut, code: streamCode(body.subarray(0, cut), everyByte(cut)) }).toEqual({
        cut,
        code: StoreErrorCode.Protocol,
      });
    }
    expect(streamCode(Uint8Array.from([...body, 0]), everyByte(body.length + 1))).toBe(
      StoreErrorCode.Protocol,
    );
    // A varint cut by the end of its walked kv fails at once, not only when the body ends.
    const cutVarint = frameMessage(
      Uint8Array.from([
        ...header(5n),
        ...bytes(2, [...bytes(1, utf8("/k")), ...tag(3, 0), 0x80]),
        ...int(3, 0n),
      ]),
    );
    expect(codeOf(() => new RangeStreamDecoder(W, undefined, 0).push(cutVarint))).toBe(
      StoreErrorCode.Protocol,
    );
    expect(streamCode(Uint8Array.from([...body, ...body]), [body.length])).toBe(StoreErrorCode.Protocol);
    const compressed = Uint8Array.from(body);
    compressed[0] = 1;
    expect(streamCode(compressed, [1])).toBe(StoreErrorCode.Protocol);
    expect(streamList(body, everyByte(body.length), undefined).entries).toHaveLength(1);
    let message = "";
    try {
      streamList(Uint8Array.from([...body].slice(0, -2)), [3], undefined);
    } catch (err) {
      message = String(err);
    }
    expect(message).toContain(`etcd at ${W} answered unexpectedly`);
  });

  test("etcd3 gRPC stream - a decoder that threw stays broken", () => {
    const decoder = new RangeStreamDecoder(W, undefined);
    expect(codeOf(() => decoder.push(Uint8Array.of(1, 0, 0, 0, 0)))).toBe(StoreErrorCode.Protocol);
    expect(codeOf(() => decoder.push(frameMessage(Uint8Array.from(header(5n)))))).toBe(
      StoreErrorCode.Protocol,
    );
    expect(codeOf(() => decoder.end())).toBe(StoreErrorCode.Protocol);
  });
});
