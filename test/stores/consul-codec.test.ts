import { describe, expect, test } from "bun:test";
import {
  type ConsulEntry,
  consulKey,
  consulPrefix,
  decodeEntries,
  diffSnapshots,
  failureError,
  kvPath,
  listReader,
  op,
  orderedEvents,
  parseEntries,
  parseGoDuration,
  parseIndex,
  parseTxn,
  query,
  requireIndex,
  type Snapshot,
  sameContents,
  sessionRequest,
  sessionTtlBounds,
  sessionTtlMs,
  snapshotOf,
  startOutcome,
  stringify,
  TokenBucket,
  toKeyValue,
  tombstoneIndex,
  ttlMs,
} from "../../stores/consul/codec.ts";
import { StoreErrorCode } from "../../stores/errors.ts";
import { codeOf } from "./fixtures/code-of.ts";

const EP = "http://127.0.0.1:8500";

function entry(key: string, modifyIndex: number, extra: Partial<ConsulEntry> = {}): ConsulEntry {
  return {
    key,
    value: `v${modifyIndex}`,
    createIndex: BigInt(modifyIndex),
    modifyIndex: BigInt(modifyIndex),
    session: undefined,
    ...extra,
  };
}

function snap(index: number, ...entries: ConsulEntry[]): Snapshot {
  return snapshotOf(BigInt(index), entries);
}

describe("consul codec", () => {
  test("consul codec - a value within the limit that is no UTF-8 is left out by the length it decodes to", () => {
    // 2,000 bytes of 0xFF: each decodes to U+FFFD, three bytes; read as text and as it streams in.
    const value = Buffer.alloc(2_000, 0xff).toString("base64");
    const body = `[{"Key":"p/bytes","Value":"${value}","CreateIndex":5,"ModifyIndex":5}]`;
    const reader = listReader(4096);
    reader.push(new TextEncoder().encode(body));
    for (const [entry] of [
      parseEntries(body, EP, undefined, 4096),
      decodeEntries(reader.end(), EP, undefined, 4096),
    ]) {
      expect([entry?.value, entry?.omittedBytes]).toEqual(["", 6_000]);
    }
    expect(parseEntries(body, EP, undefined, 6_000)[0]?.value).toBe("\ufffd".repeat(2_000));
  });

  test("consul codec - keys drop the leading slash and paths percent-encode each segment", () => {
    expect(consulKey("/coreos.com/network/subnets/10.5.53.0-24&fd00:10:244::-64")).toBe(
      "coreos.com/network/subnets/10.5.53.0-24&fd00:10:244::-64",
    );
    expect(kvPath("a:b/c-d&e?f%g h#")).toBe("/v1/kv/a%3Ab/c-d%26e%3Ff%25g%20h%23");
    expect(kvPath("")).toBe("/v1/kv/");
    expect(kvPath("p/")).toBe("/v1/kv/p/");
  });

  test("consul codec - keys Consul would clean or refuse are Invalid", () => {
    for (const key of ["", "/", "a/b", "/a//b", "/a/", "/a/./b", "/a/..", "/ a", "/a ", "/\ud800"]) {
      expect({ key, code: codeOf(() => consulKey(key)) }).toEqual({ key, code: StoreErrorCode.Invalid });
    }
  });

  test("consul codec - prefixes may end open or with a slash; empty and / mean every key", () => {
    expect(consulPrefix("")).toBe("");
    expect(consulPrefix("/")).toBe("");
    expect(consulPrefix("/coreos.com/network/")).toBe("coreos.com/network/");
    expect(consulPrefix("/a/b")).toBe("a/b");
    for (const prefix of ["x/", "/a//", "/a/../", "/a/."]) {
      expect(codeOf(() => consulPrefix(prefix))).toBe(StoreErrorCode.Invalid);
    }
  });

  test("consul codec - query keeps set fields in order and encodes them", () => {
    expect(query({ recurse: true, index: 42n, wait: "60000ms", cas: undefined })).toBe(
      "?recurse=true&index=42&wait=60000ms",
    );
    expect(query({ index: undefined })).toBe("");
  });

  test("consul codec - TTLs are milliseconds up to twice the 24 h session maximum", () => {
    expect(ttlMs("/k", undefined)).toBeUndefined();
    expect(ttlMs("/k", 2)).toBe(2_000);
    expect(ttlMs("/k", 0.0015)).toBe(2);
    expect(ttlMs("/k", 172_800)).toBe(172_800_000);
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 172_801]) {
      expect(codeOf(() => ttlMs("/k", bad))).toBe(StoreErrorCode.Invalid);
    }
  });

  test("consul codec - a session lasts half the key's TTL, within the server's bounds", () => {
    expect(sessionTtlMs(86_400_000, 10_000)).toBe(43_200_000);
    expect(sessionTtlMs(60_000, 10_000)).toBe(30_000);
    expect(sessionTtlMs(2_000, 10_000)).toBe(10_000);
    expect(sessionTtlMs(2_000, 0)).toBe(1_000);
    expect(sessionTtlMs(3, 0)).toBe(2);
    expect(sessionTtlMs(172_800_000, 10_000)).toBe(86_400_000);
  });

  test("consul codec - the session request deletes its keys, has no node checks and a 1 ms lock delay", () => {
    expect(JSON.parse(sessionRequest("weft h1", 15_000))).toEqual({
      Name: "weft h1",
      TTL: "15000ms",
      Behavior: "delete",
      LockDelay: "1ms",
      NodeChecks: [],
    });
  });

  test("consul codec - Go durations and the session TTL bounds of Consul's refusal", () => {
    expect(parseGoDuration("10s")).toBe(10_000);
    expect(parseGoDuration("24h0m0s")).toBe(86_400_000);
    expect(parseGoDuration("1m30s")).toBe(90_000);
    expect(parseGoDuration("1.5s")).toBe(1_500);
    expect(parseGoDuration("250ms")).toBe(250);
    expect(parseGoDuration("0")).toBe(0);
    expect(parseGoDuration("ten")).toBeUndefined();
    expect(
      sessionTtlBounds("rpc error: Invalid Session TTL '1000000000', must be between [10s=24h0m0s]"),
    ).toEqual({ minMs: 10_000, maxMs: 86_400_000 });
    expect(sessionTtlBounds("Invalid Session TTL '1s': time: unknown unit")).toBeUndefined();
    expect(sessionTtlBounds("No cluster leader")).toBeUndefined();
  });

  test("consul codec - X-Consul-Index parses exactly beyond 2^53; its absence is a Protocol error", () => {
    expect(parseIndex("18446744073709551615")).toBe(18_446_744_073_709_551_615n);
    expect(parseIndex(null)).toBeUndefined();
    expect(parseIndex("x")).toBeUndefined();
    expect(requireIndex(" 7 ", EP)).toBe(7n);
    expect(codeOf(() => requireIndex(null, EP))).toBe(StoreErrorCode.Protocol);
  });

  test("consul codec - entries decode base64 values byte-exact and keep uint64 indexes exact", () => {
    const value = 'héllo ✓ 雪 🚀 \u0000\u001f "q"\n';
    const body = `[{"LockIndex":1,"Key":"p/a:b&c","Flags":0,"Value":"${Buffer.from(value).toString("base64")}","Session":"s-1","CreateIndex":9007199254740993,"ModifyIndex":9007199254740995},{"Key":"p/empty","Value":null,"CreateIndex":3,"ModifyIndex":4}]`;
    const [first, second] = parseEntries(body, EP);
    expect(first).toEqual({
      key: "/p/a:b&c",
      value,
      createIndex: 9_007_199_254_740_993n,
      modifyIndex: 9_007_199_254_740_995n,
      session: "s-1",
    });
    expect(second?.value).toBe("");
    expect(second?.session).toBeUndefined();
    expect(toKeyValue(first as ConsulEntry, 7)).toEqual({
      key: "/p/a:b&c",
      value,
      revision: 9_007_199_254_740_995n,
      expires: true,
      ttlSeconds: 7,
    });
    expect(toKeyValue(second as ConsulEntry).expires).toBe(false);
    expect(codeOf(() => parseEntries("{}", EP))).toBe(StoreErrorCode.Protocol);
    expect(codeOf(() => parseEntries("<html>", EP))).toBe(StoreErrorCode.Protocol);
    expect(codeOf(() => parseEntries('[{"Key":"k"}]', EP))).toBe(StoreErrorCode.Protocol);
  });

  test("consul codec - txn bodies carry base64 values and exact indexes", () => {
    const body = stringify([
      op.checkIndex("p/k", 9_007_199_254_740_993n),
      op.unlock("p/k", "v", "old"),
      op.lock("p/k", "✓", "new"),
    ]);
    expect(body).toBe(
      '[{"KV":{"Verb":"check-index","Key":"p/k","Index":9007199254740993}},' +
        '{"KV":{"Verb":"unlock","Key":"p/k","Value":"dg==","Session":"old"}},' +
        '{"KV":{"Verb":"lock","Key":"p/k","Value":"4pyT","Session":"new"}}]',
    );
    expect(JSON.parse(stringify([op.checkNotExists("k"), op.set("k", ""), op.deleteCas("k", 0n)]))).toEqual([
      { KV: { Verb: "check-not-exists", Key: "k" } },
      { KV: { Verb: "set", Key: "k", Value: "" } },
      { KV: { Verb: "delete-cas", Key: "k", Index: 0 } },
    ]);
  });

  test("consul codec - txn answers: results on 200, rolled-back errors on 409, denial is Auth", () => {
    const ok = parseTxn(
      200,
      '{"Results":[{"KV":{"LockIndex":1,"Key":"p/k","Flags":0,"Value":null,"Session":"s","CreateIndex":5,"ModifyIndex":5}}],"Errors":null}',
      EP,
      "/p/k",
    );
    expect(ok).toEqual({
      ok: true,
      results: [{ key: "/p/k", value: "", createIndex: 5n, modifyIndex: 5n, session: "s" }],
    });
    const failed = parseTxn(
      409,
      '{"Results":null,"Errors":[{"OpIndex":0,"What":"key \\"p/k\\" exists"}]}',
      EP,
      "/p/k",
    );
    expect(failed).toEqual({ ok: false, errors: [{ opIndex: 0, what: 'key "p/k" exists' }] });
    const denied =
      '{"Errors":[{"OpIndex":1,"What":"Permission denied: token lacks permission \'key:write\'"}]}';
    expect(codeOf(() => parseTxn(409, denied, EP, "/p/k"))).toBe(StoreErrorCode.Auth);
    expect(codeOf(() => parseTxn(500, "No cluster leader", EP, "/p/k"))).toBe(StoreErrorCode.Unavailable);
  });

  test("consul codec - HTTP failures map onto typed errors naming the key and endpoint", () => {
    const denied = failureError(403, "ACL not found", EP, "/k");
    expect(denied.code).toBe(StoreErrorCode.Auth);
    expect(denied.message).toContain("CONSUL_HTTP_TOKEN");
    expect(failureError(500, "rpc error: No cluster leader", EP, "/k").code).toBe(StoreErrorCode.Unavailable);
    expect(failureError(429, "rate limited", EP).code).toBe(StoreErrorCode.Unavailable);
    const tooBig = failureError(413, "Value exceeds 524288 byte limit", EP, "/k");
    expect([tooBig.code, tooBig.key, tooBig.endpoint]).toEqual([StoreErrorCode.Invalid, "/k", EP]);
    expect(failureError(418, "teapot", EP, "/k").code).toBe(StoreErrorCode.Protocol);
  });

  test("consul codec - a watch from a listed snapshot replays the puts after its revision", () => {
    const baseline = snap(10, entry("/p/a", 4), entry("/p/b", 10));
    const current = snap(14, entry("/p/a", 4), entry("/p/b", 12, { createIndex: 10n }), entry("/p/c", 14));
    expect(startOutcome(10n, baseline, current)).toEqual({
      kind: "puts",
      puts: [current.entries.get("/p/b"), current.entries.get("/p/c")] as ConsulEntry[],
    });
    expect(startOutcome(10n, baseline, snap(10, entry("/p/a", 4), entry("/p/b", 10)))).toEqual({
      kind: "puts",
      puts: [],
    });
  });

  test("consul codec - a watch resyncs as compacted when a delete since its revision may be missing", () => {
    const baseline = snap(10, entry("/p/gone", 5), entry("/p/a", 6));
    // the listed key is gone
    expect(startOutcome(10n, baseline, snap(20, entry("/p/a", 6), entry("/p/k", 20))).kind).toBe("resync");
    // deleted and created again
    expect(startOutcome(10n, baseline, snap(20, entry("/p/gone", 20), entry("/p/a", 6))).kind).toBe("resync");
    // the prefix index points past every live key: a tombstone newer than the revision
    expect(startOutcome(10n, snap(10, entry("/p/a", 6)), snap(15, entry("/p/a", 6))).kind).toBe("resync");
    // no snapshot of the prefix at or before the revision, and something changed since
    expect(startOutcome(10n, undefined, snap(11, entry("/p/a", 11)))).toEqual({
      kind: "resync",
      cause: "compacted",
    });
    // the server's index is behind the revision (restored)
    expect(startOutcome(10n, baseline, snap(9, entry("/p/gone", 5), entry("/p/a", 6))).kind).toBe("resync");
    // nothing changed: no snapshot needed
    expect(startOutcome(10n, undefined, snap(10, entry("/p/a", 6)))).toEqual({ kind: "puts", puts: [] });
    // an empty prefix reports the whole KV index, which proves nothing about deletes under it
    expect(startOutcome(10n, snap(10), snap(30))).toEqual({ kind: "puts", puts: [] });
  });

  test("consul codec - snapshot diffs: new and rewritten keys are puts, vanished keys deletes", () => {
    const prev = snap(10, entry("/p/a", 3), entry("/p/b", 4), entry("/p/c", 5));
    const next = snap(20, entry("/p/a", 3), entry("/p/b", 18, { createIndex: 4n }), entry("/p/d", 19));
    const diff = diffSnapshots(prev, next);
    expect(diff).toEqual({
      kind: "changes",
      puts: [next.entries.get("/p/b"), next.entries.get("/p/d")] as ConsulEntry[],
      deleted: [prev.entries.get("/p/c")] as ConsulEntry[],
      recreated: [],
    });
    expect(diffSnapshots(prev, snap(20, entry("/p/a", 19)))).toMatchObject({ recreated: ["/p/a"] });
  });

  test("consul codec - an index that went backwards is reported, contents compared by writes", () => {
    const prev = snap(50, entry("/p/a", 3));
    expect(diffSnapshots(prev, snap(40, entry("/p/a", 3)))).toEqual({ kind: "backwards" });
    expect(sameContents(prev, snap(40, entry("/p/a", 3)))).toBe(true);
    expect(sameContents(prev, snap(40, entry("/p/a", 2)))).toBe(false);
    expect(sameContents(prev, snap(40))).toBe(false);
  });

  test("consul codec - a tombstone index is used only when no other key can own it", () => {
    const window = { after: 10n, upTo: 20n };
    expect(tombstoneIndex("/p/k1", snap(15), window, ["/p/k1", "/p/k2"])).toBe(15n);
    expect(tombstoneIndex("/p/k1", snap(15, entry("/p/k10", 12)), window, ["/p/k1"])).toBe(15n);
    // a live key under it is the newest write
    expect(tombstoneIndex("/p/k1", snap(15, entry("/p/k10", 15)), window, ["/p/k1"])).toBeUndefined();
    // another deleted key under it may own the tombstone
    expect(tombstoneIndex("/p/k1", snap(15), window, ["/p/k1", "/p/k10"])).toBeUndefined();
    // outside the window between the snapshots (reaped tombstone, later writes)
    expect(tombstoneIndex("/p/k1", snap(10), window, ["/p/k1"])).toBeUndefined();
    expect(tombstoneIndex("/p/k1", snap(21), window, ["/p/k1"])).toBeUndefined();
    // the key is back
    expect(tombstoneIndex("/p/k1", snap(15, entry("/p/k1", 14)), window, ["/p/k1"])).toBeUndefined();
  });

  test("consul codec - events come in revision order, ties by key", () => {
    const events = orderedEvents(
      [entry("/p/b", 14), entry("/p/a", 12)],
      [
        { key: "/p/z", revision: 13n, reason: "expired" },
        { key: "/p/y", revision: 15n, reason: "deleted" },
        { key: "/p/x", revision: 15n, reason: "deleted" },
      ],
      (e) => toKeyValue(e),
    );
    expect(
      events.map((e) =>
        e.type === "put" ? `put ${e.kv.key}@${e.kv.revision}` : `${e.type} ${"key" in e ? e.key : ""}`,
      ),
    ).toEqual(["put /p/a@12", "delete /p/z", "put /p/b@14", "delete /p/x", "delete /p/y"]);
    expect(events[1]).toEqual({ type: "delete", key: "/p/z", revision: 13n, reason: "expired" });
  });

  test("consul codec - the token bucket allows a burst, then paces at its rate", () => {
    const bucket = new TokenBucket(10, 2, 0);
    expect(bucket.take(0)).toBe(0);
    expect(bucket.take(0)).toBe(0);
    expect(bucket.take(0)).toBeCloseTo(100);
    expect(bucket.take(100)).toBeCloseTo(100);
    expect(bucket.take(1_000)).toBe(0);
  });
});

/** One entry of a `GET /v1/kv/...?recurse` answer, as Consul writes it. */
function wire(
  key: string,
  value: string | null,
  create: number | string,
  modify: number | string,
  session = "",
) {
  const index = (n: number | string) => (typeof n === "string" ? n : String(n));
  const v = value === null ? "null" : `"${Buffer.from(value).toString("base64")}"`;
  const s = session === "" ? "" : `"Session":"${session}",`;
  return `{"LockIndex":0,"Key":"${key}","Flags":0,"Value":${v},${s}"CreateIndex":${index(create)},"ModifyIndex":${index(modify)}}`;
}
const body = (...entries: string[]) => `[${entries.join(",")}]`;

describe("consul codec - answers decoded against the previous one", () => {
  const first = body(
    wire("p/a", '{"PublicIP":"172.16.0.1"}', 10, 10, "s-a"),
    wire("p/b", '{"PublicIP":"172.16.0.2"}', 11, 12),
    wire("p/c", null, 13, 13),
  );
  const before = snapshotOf(20n, parseEntries(first, EP));

  test("consul codec - an unchanged answer reuses every entry object and diffs to nothing", () => {
    const again = snapshotOf(21n, parseEntries(first, EP, before));
    for (const [key, e] of before.entries) expect(again.entries.get(key)).toBe(e);
    expect(diffSnapshots(before, again)).toEqual({ kind: "changes", puts: [], deleted: [], recreated: [] });
  });

  test("consul codec - a rewritten key is decoded anew while the others are reused", () => {
    const next = body(
      wire("p/a", '{"PublicIP":"172.16.0.1"}', 10, 10, "s-a"),
      wire("p/b", '{"PublicIP":"172.16.9.9"}', 11, 22),
      wire("p/c", null, 13, 13),
    );
    const after = snapshotOf(22n, parseEntries(next, EP, before));
    expect(after.entries.get("/p/a")).toBe(before.entries.get("/p/a") as ConsulEntry);
    expect(after.entries.get("/p/b")).toEqual({
      key: "/p/b",
      value: '{"PublicIP":"172.16.9.9"}',
      createIndex: 11n,
      modifyIndex: 22n,
      session: undefined,
    });
    const diff = diffSnapshots(before, after);
    expect(diff.kind === "changes" && diff.puts.map((e) => `${e.key}@${e.modifyIndex}`)).toEqual(["/p/b@22"]);
  });

  test("consul codec - a key gone from the answer is a delete, and one created again is not reused", () => {
    const next = body(wire("p/b", '{"PublicIP":"172.16.0.2"}', 30, 30), wire("p/c", null, 13, 13));
    const after = snapshotOf(30n, parseEntries(next, EP, before));
    const b = after.entries.get("/p/b");
    expect(b).not.toBe(before.entries.get("/p/b") as ConsulEntry);
    expect(b?.value).toBe('{"PublicIP":"172.16.0.2"}');
    expect(b?.createIndex).toBe(30n);
    expect(diffSnapshots(before, after)).toEqual({
      kind: "changes",
      puts: [],
      deleted: [before.entries.get("/p/a") as ConsulEntry],
      recreated: ["/p/b"],
    });
  });

  test("consul codec - same indexes with another value or session (a rebuilt cluster) are decoded, not reused", () => {
    const next = body(
      wire("p/a", '{"PublicIP":"172.16.0.1"}', 10, 10, "s-other"),
      wire("p/b", '{"PublicIP":"10.9.9.9"}', 11, 12),
      wire("p/c", "", 13, 13),
    );
    const after = snapshotOf(20n, parseEntries(next, EP, before));
    expect(after.entries.get("/p/a")?.session).toBe("s-other");
    expect(after.entries.get("/p/b")?.value).toBe('{"PublicIP":"10.9.9.9"}');
    // null and "" both mean an empty value: the entry is the same
    expect(after.entries.get("/p/c")).toBe(before.entries.get("/p/c") as ConsulEntry);
  });

  test("consul codec - an index beyond 2^53 is kept exact when the answer is decoded against a previous one", () => {
    const huge = "9007199254740995";
    const next = body(
      wire("p/a", '{"PublicIP":"172.16.0.1"}', 10, 10, "s-a"),
      wire("p/b", '{"PublicIP":"172.16.0.2"}', 11, huge),
    );
    const after = snapshotOf(9_007_199_254_740_995n, parseEntries(next, EP, before));
    expect(after.entries.get("/p/b")?.modifyIndex).toBe(9_007_199_254_740_995n);
    expect(after.entries.get("/p/a")).toBe(before.entries.get("/p/a") as ConsulEntry);
    // and the exact entries serve as the previous answer of a plain one
    const back = snapshotOf(9_007_199_254_740_996n, parseEntries(next, EP, after));
    expect(back.entries.get("/p/b")).toBe(after.entries.get("/p/b") as ConsulEntry);
  });

  test("consul codec - indexes that are not non-negative integers are Protocol errors on both parse paths", () => {
    for (const bad of ["-1", "1.5", '"x"', "1e400", "null"]) {
      expect(codeOf(() => parseEntries(`[{"Key":"p/a","CreateIndex":1,"ModifyIndex":${bad}}]`, EP))).toBe(
        StoreErrorCode.Protocol,
      );
    }
  });
});
