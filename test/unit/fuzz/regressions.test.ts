// What the fuzzers found (test/fuzz/run.ts), one test each: crashes on deep nesting, quadratic or
// unbounded error messages, and a NATS subject that aliased another key.
import { expect, test } from "bun:test";
import { parseFlags } from "../../../src/config/flags.ts";
import { parseNetworkConfig } from "../../../src/config/network-config.ts";
import { isWeftError } from "../../../src/errors.ts";
import { parseLease } from "../../../src/lease/lease.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";
import * as consul from "../../../stores/consul/codec.ts";
import { StoreError } from "../../../stores/errors.ts";
import * as etcd3 from "../../../stores/etcd/codec.ts";
import * as etcd2 from "../../../stores/etcd2/codec.ts";
import * as nats from "../../../stores/nats/codec.ts";

const deepList = (n: number) => `${"[".repeat(n)}1${"]".repeat(n)}`;
const deepObject = (n: number) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`;

/** Runs `fn`, which must throw; returns the error and how long it took. */
function thrown(fn: () => unknown): { err: unknown; ms: number } {
  const started = performance.now();
  try {
    fn();
  } catch (err) {
    return { err, ms: performance.now() - started };
  }
  throw new Error("expected a throw");
}

test("fuzz finding - network config nested 100,000 levels deep is CONFIG_INVALID, not a stack overflow", () => {
  // Invalid JSON: the scanner that locates the error used to recurse until the stack overflowed.
  for (const text of [deepList(100_000).slice(0, -1), `{"Network":${deepObject(100_000).slice(0, -3)}`]) {
    const { err } = thrown(() => parseNetworkConfig(text));
    expect(isWeftError(err, "CONFIG_INVALID")).toBe(true);
    expect((err as Error).message).toContain("nested more than 1000 levels deep");
  }
  // Valid JSON, deep where a string belongs: named in a short message.
  const { err } = thrown(() => parseNetworkConfig(`{"Network":${deepList(100_000)}}`));
  expect(isWeftError(err, "CONFIG_INVALID")).toBe(true);
  expect((err as Error).message.length).toBeLessThan(300);
});

test("fuzz finding - a network config that is a long string is named in a short message", () => {
  const { err } = thrown(() => parseNetworkConfig(JSON.stringify("x".repeat(80_000))));
  expect(isWeftError(err, "CONFIG_INVALID")).toBe(true);
  expect((err as Error).message.length).toBeLessThan(300);
});

test("fuzz finding - a lease key of 80,000 characters gets a short rejection reason", () => {
  const rules = { network: parseCidr("10.5.0.0/16"), subnetLen: 24, subnets: "/p/subnets/" };
  const parsed = parseLease(
    { key: `/p/subnets/${"x".repeat(80_000)}`, value: "{}", revision: 1n, expires: true },
    rules,
  );
  expect(parsed.ok ? "accepted" : parsed.reason.length < 400).toBe(true);
});

test("fuzz finding - long flag values: short messages, and no quadratic redaction (50,000 characters)", () => {
  for (const [argv, env] of [
    [["x".repeat(15_000)], {}],
    [[`--etcd-endpoints=${"x".repeat(8_000)}`], {}],
    [[`--log-format=${"x".repeat(50_000)}`], {}],
    [[], { FLANNELD_HEALTHZ_IP: `${"a".repeat(50_000)}!`, FLANNELD_ETCD_ENDPOINTS: "x".repeat(50_000) }],
  ] as const) {
    const started = performance.now();
    try {
      const flags = parseFlags(argv, env);
      for (const w of flags.warnings) expect(w.length).toBeLessThan(1_000);
    } catch (err) {
      expect(isWeftError(err)).toBe(true);
      expect((err as Error).message.length).toBeLessThan(1_000);
    }
    // The redaction pattern used to be quadratic: ~800 ms for 50,000 characters.
    expect(performance.now() - started).toBeLessThan(200);
  }
  // A password in a URL is still redacted.
  const { err } = thrown(() => parseFlags(["--etcd-endpoints=http://user:secret@ x"], {}));
  expect((err as Error).message).not.toContain("secret");
});

test("fuzz finding - etcd v3 answers nested 100,000 levels deep are Protocol errors, fast", () => {
  const where = "http://127.0.0.1:2379/v3/kv/range";
  for (const [body, decode] of [
    [`{"header":{"revision":${deepObject(100_000)}}}`, etcd3.decodeRange],
    [`{"header":{"revision":"5"},"kvs":[${deepList(100_000)}]}`, etcd3.decodeRange],
    [`{"header":{"revision":"5"},"responses":[${deepObject(100_000)}]}`, etcd3.decodeTxn],
  ] as const) {
    const json = etcd3.parseJson(body, where);
    const { err, ms } = thrown(() => decode(json, where));
    expect(err).toBeInstanceOf(StoreError);
    expect((err as Error).message.length).toBeLessThan(400);
    expect(ms).toBeLessThan(100);
  }
  const error = etcd3.decodeGatewayError(JSON.parse(`{"error":${deepObject(10_000)}}`));
  expect(error?.message.length).toBeLessThan(250);
});

test("fuzz finding - etcd v2: a success body without a node is a Protocol error; deep and wide trees are fine", () => {
  const ep = "http://127.0.0.1:2379";
  // Found in the iterative node check before it was committed: an absent node passed unchecked.
  const { err } = thrown(() => etcd2.parseAnswer('{"action":"set"}', ep));
  expect(err).toBeInstanceOf(StoreError);
  let node = '{"key":"/k","value":"v","modifiedIndex":1,"createdIndex":1}';
  for (let i = 0; i < 50_000; i++)
    node = `{"key":"/d","dir":true,"nodes":[${node}],"modifiedIndex":1,"createdIndex":1}`;
  expect(etcd2.parseAnswer(`{"action":"get","node":${node}}`, ep).node.key).toBe("/d");
  // A directory of 200,000 keys: flatten used to spread them into one push() call (RangeError).
  const wide = Array.from({ length: 200_000 }, (_, i) => ({
    key: `/p/${i}`,
    value: "v",
    modifiedIndex: 1,
    createdIndex: 1,
  }));
  const answer = etcd2.parseAnswer(
    JSON.stringify({
      action: "get",
      node: { key: "/p", dir: true, nodes: wide, modifiedIndex: 1, createdIndex: 1 },
    }),
    ep,
  );
  expect(etcd2.flatten(answer.node, "/p/")).toHaveLength(200_000);
});

test("fuzz finding - Consul entries nested 100,000 levels deep are Protocol errors, fast and short", () => {
  const ep = "http://127.0.0.1:8500";
  const { err, ms } = thrown(() => consul.parseEntries(`[${deepObject(100_000)}]`, ep));
  expect(err).toBeInstanceOf(StoreError);
  expect((err as Error).message.length).toBeLessThan(400);
  expect(ms).toBeLessThan(200);
  const outcome = consul.parseTxn(409, `{"Errors":[{"OpIndex":0,"What":${deepList(10_000)}}]}`, ep, "/k");
  expect(outcome.ok ? 0 : (outcome.errors[0]?.what.length ?? 0)).toBeLessThan(250);
});

test("fuzz finding - a NATS subject whose token decodes to a segment with / is no store key", () => {
  // `10=2F5` decoded to the segment "10/5", so this subject aliased the key of `…subnets.10.5=2E1=2E0-24`.
  const alias = "$KV.weft.=.coreos=2Ecom.network.subnets.10=2F5=2E1=2E0-24";
  expect(nats.keyOfSubject("weft", alias)).toBeUndefined();
  const key = "/coreos.com/network/subnets/10/5.1.0-24";
  expect(nats.keyOfSubject("weft", nats.subjectFor("weft", key))).toBe(key);
});
