/**
 * Fuzz targets for the etcd driver's gRPC codec (stores/etcd/grpc-codec.ts): byte strings built from a
 * valid RangeResponse (bytes flipped, cut, inserted, repeated, or random) into `unframeMessage` and
 * `decodeRangeMessage`, which may throw only `StoreError`; a decoded answer must hold kvs with keys.
 */
import { StoreError } from "../../stores/errors.ts";
import { toKeyValue } from "../../stores/etcd/codec.ts";
import { decodeRangeMessage, frameMessage, unframeMessage } from "../../stores/etcd/grpc-codec.ts";
import { RangeStreamDecoder } from "../../stores/etcd/grpc-range-stream.ts";
import type { ListResult } from "../../stores/store.ts";
import { boundValue } from "../../stores/values.ts";
import type { Rng } from "./prng.ts";
import { check, checkMessage, type FuzzTarget, tolerate } from "./target.ts";

const W = "http://127.0.0.1:2379/etcdserverpb.KV/Range";
const storeError = (err: unknown): boolean => {
  checkMessage(err);
  return err instanceof StoreError;
};

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
const field = (n: number, wire: number) => varint(BigInt((n << 3) | wire));
const bytes = (n: number, data: number[]) => [...field(n, 2), ...varint(BigInt(data.length)), ...data];
const int = (n: number, value: bigint) => [...field(n, 0), ...varint(value)];
const utf8 = (text: string) => [...new TextEncoder().encode(text)];
const kv = (key: string, value: string, lease: bigint) =>
  bytes(2, [
    ...bytes(1, utf8(key)),
    ...int(2, 5n),
    ...int(3, 40n),
    ...int(4, 3n),
    ...bytes(5, utf8(value)),
    ...int(6, lease),
  ]);

const SEED = [
  ...bytes(1, [...int(1, 14_841_639_068_965_178_418n), ...int(3, 42n), ...int(4, 2n)]),
  ...kv(
    "/coreos.com/network/subnets/10.5.1.0-24",
    '{"PublicIP":"10.0.0.5","PublicIPv6":null}',
    7_587_862_072_903_546_628n,
  ),
  ...kv("/coreos.com/network/subnets/10.5.2.0-24&fd00::-64", "雪 ✓ 🚀", 0n),
  ...int(4, 2n),
];

function mutate(rng: Rng, input: number[]): number[] {
  const out = [...input];
  for (let i = rng.range(1, 4); i > 0; i--) {
    const at = rng.int(out.length + 1);
    switch (rng.int(5)) {
      case 0:
        out[at] = rng.int(256);
        break;
      case 1:
        out.splice(at, rng.size(out.length));
        break;
      case 2:
        out.splice(at, 0, ...Array.from({ length: rng.size(16) + 1 }, () => rng.int(256)));
        break;
      case 3:
        out.splice(at, 0, ...out.slice(rng.int(out.length), rng.int(out.length)));
        break;
      default:
        out.splice(at, 0, ...varint(BigInt(rng.u32()) * BigInt(rng.u32())));
    }
  }
  return out.slice(0, 1 << 16);
}

export const etcd3GrpcTarget: FuzzTarget<{ message: number[]; framed: boolean }> = {
  name: "etcd3-grpc",
  covers: ["unframeMessage, decodeRangeMessage (stores/etcd/grpc-codec.ts)"],
  allowed: "StoreError",
  generate: (rng) => ({
    message: rng.chance(0.1)
      ? Array.from({ length: rng.size(512) }, () => rng.int(256))
      : rng.chance(0.1)
        ? SEED
        : mutate(rng, SEED),
    framed: rng.chance(0.3),
  }),
  run({ message, framed }) {
    const bytesIn = Uint8Array.from(message);
    const body = framed ? frameMessage(bytesIn) : bytesIn;
    const inner = framed ? tolerate(() => unframeMessage(body, W), storeError) : bytesIn;
    if (inner === undefined) return;
    const answer = tolerate(() => decodeRangeMessage(inner, W), storeError);
    if (answer === undefined) return;
    check(answer.revision > 0n, "a decoded answer without a revision");
    for (const kv of answer.kvs) check(kv.key !== "", "a decoded kv without a key");
  },
};

type StreamInput = {
  readonly body: number[];
  readonly cuts: number[];
  readonly max: number | undefined;
  readonly small: number | undefined;
};

function streamDecode(input: StreamInput, cuts: readonly number[]): ListResult {
  const decoder = new RangeStreamDecoder(W, input.max, input.small);
  const body = Uint8Array.from(input.body);
  let from = 0;
  for (const cut of [...cuts, body.length]) {
    decoder.push(body.subarray(from, cut));
    from = cut;
  }
  return decoder.end();
}

/**
 * The streaming decoder (stores/etcd/grpc-range-stream.ts) fed the same bodies in random chunks, kvs
 * buffered or walked, with and without `maxValueBytes`: it fails exactly when unframing and decoding
 * the whole body fails, else hands over the whole decoder's entries with `boundValue` applied (a left
 * out value's `omittedBytes` counts the bytes etcd holds, which only an invalid UTF-8 value's U+FFFD
 * make shorter than the text's length), and the same however the body was cut.
 */
export const etcd3GrpcStreamTarget: FuzzTarget<StreamInput> = {
  name: "etcd3-grpc-stream",
  covers: ["RangeStreamDecoder (stores/etcd/grpc-range-stream.ts), against decodeRangeMessage"],
  allowed: "StoreError",
  generate(rng) {
    const message = rng.chance(0.1)
      ? Array.from({ length: rng.size(512) }, () => rng.int(256))
      : rng.chance(0.1)
        ? SEED
        : mutate(rng, SEED);
    const framed = [...frameMessage(Uint8Array.from(message))];
    const body = rng.chance(0.2) ? mutate(rng, framed) : framed;
    const most = [1, 2, 7, 64, 4_096][rng.int(5)] ?? 1;
    const cuts: number[] = [];
    for (let at = rng.range(1, most); at < body.length; at += rng.range(1, most)) cuts.push(at);
    return {
      body,
      cuts,
      max: [undefined, 0, 5, 40, 1 << 20][rng.int(5)],
      small: [undefined, 0, 8, 50][rng.int(4)],
    };
  },
  run(input) {
    const streamed = tolerate(() => streamDecode(input, input.cuts), storeError);
    const whole = tolerate(
      () => decodeRangeMessage(unframeMessage(Uint8Array.from(input.body), W), W).kvs,
      storeError,
    );
    check((streamed === undefined) === (whole === undefined), "streamed and whole decoding disagree");
    if (streamed === undefined || whole === undefined) return;
    check(Bun.deepEquals(streamDecode(input, []), streamed), "a different answer in one chunk");
    check(streamed.entries.length === whole.length, "another number of entries");
    streamed.entries.forEach((got, i) => {
      const kv = whole[i];
      if (kv === undefined) return;
      const want = boundValue(toKeyValue(kv), input.max);
      check(got.key === want.key && got.value === want.value, "another key or value");
      check(got.revision === want.revision && got.expires === want.expires, "another revision or expiry");
      const left = want.omittedBytes;
      if (left === undefined || !kv.value.includes("\ufffd")) {
        check(got.omittedBytes === left, `omittedBytes ${got.omittedBytes}, not ${left}`);
      } else
        check(got.omittedBytes !== undefined && got.omittedBytes <= left, "omittedBytes above the text's");
    });
  },
};
