import { describe, expect, test } from "bun:test";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import { decodeRange } from "../../stores/etcd/codec.ts";
import {
  decodeRangeMessage,
  frameMessage,
  prefixRangeMessage,
  unframeMessage,
} from "../../stores/etcd/grpc-codec.ts";

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

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isStoreError(err) ? err.code : `not a StoreError: ${String(err)}`;
  }
  return undefined;
}

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
