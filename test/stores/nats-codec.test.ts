import { describe, expect, test } from "bun:test";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import {
  boundRecord,
  checkKey,
  checkTtl,
  decodeKey,
  decodeSegment,
  encodeKey,
  Header,
  hasServerTtl,
  keyOfSubject,
  parseAckSubject,
  parseTimestamp,
  prefixFilter,
  putHeaders,
  type RawRecord,
  subjectFor,
  subjectMatches,
  sweeperLockSubject,
  toEntry,
  toKeyValue,
} from "../../stores/nats/codec.ts";

/** What @nats-io/kv accepts as a key (its validateKey), and what NATS needs of subject tokens. */
function isValidKvKey(kvKey: string): boolean {
  return /^[-/=.\w]+$/.test(kvKey) && !kvKey.startsWith(".") && !kvKey.endsWith(".") && !kvKey.includes("..");
}

function record(
  subject: string,
  headers: Record<string, string>,
  data = "",
  seq = 7n,
  timeMs = 1_000_000,
): RawRecord {
  return {
    subject,
    seq,
    timeMs,
    header: (name) => headers[name] ?? "",
    data: new TextEncoder().encode(data),
  };
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isStoreError(err) ? err.code : `not a StoreError: ${String(err)}`;
  }
  return undefined;
}

describe("nats codec", () => {
  test("boundRecord drops a payload over the limit, keeps its length and the headers the codec reads", () => {
    const subject = subjectFor("b", "/p/k");
    const headers = { [Header.WeftTtl]: "30", "Other-Header": "x" };
    const large = record(subject, headers, "é".repeat(3_000), 9n, 5_000);
    const bounded = boundRecord(large, 4096);
    expect(bounded.data.length).toBe(0);
    expect(bounded.omittedBytes).toBe(6_000);
    expect(bounded.header(Header.WeftTtl)).toBe("30");
    expect(bounded.header("Other-Header")).toBe("");
    const entry = toEntry("b", bounded);
    if (entry?.kind !== "put") throw new Error("not a put");
    expect(toKeyValue(entry, 5_000)).toEqual({
      key: "/p/k",
      value: "",
      revision: 9n,
      expires: true,
      ttlSeconds: 30,
      omittedBytes: 6_000,
    });
    const fits = record(subject, headers, "x".repeat(4096));
    expect(boundRecord(fits, 4096)).toBe(fits);
    expect(boundRecord(large, undefined)).toBe(large);
  });

  const keys = [
    "/coreos.com/network/subnets/10.5.52.0-24",
    "/coreos.com/network/subnets/10.5.53.0-24&fd00:10:244::-64",
    "/weft-contract/x-1/a:b/c-d&e",
    "/a//b/",
    "/",
    "relative/key",
    "under_score/=equals/*/>/sp ace/tab\t",
    "/héllo/雪/🚀",
    "/.../..",
  ];

  test("nats codec - keys with & : - / . = * > and non-ASCII round-trip through valid KV keys", () => {
    for (const key of keys) {
      const kvKey = encodeKey(key);
      expect(isValidKvKey(kvKey)).toBe(true);
      expect(decodeKey(kvKey)).toBe(key);
    }
  });

  test("nats codec - one token per path segment, forbidden characters as =XY per UTF-8 byte", () => {
    expect(encodeKey("/coreos.com/network/subnets/10.5.53.0-24&fd00:10:244::-64")).toBe(
      "=.coreos=2Ecom.network.subnets.10=2E5=2E53=2E0-24=26fd00=3A10=3A244=3A=3A-64",
    );
    expect(encodeKey("/a//b/")).toBe("=.a.=.b.=");
    expect(encodeKey("x=é")).toBe("x=3D=C3=A9");
  });

  test("nats codec - distinct keys never share a subject", () => {
    const subjects = new Set(keys.map(encodeKey));
    expect(subjects.size).toBe(keys.length);
    expect(encodeKey("/a.b")).not.toBe(encodeKey("/a/b"));
    expect(encodeKey("/a=2Eb")).not.toBe(encodeKey("/a.b"));
  });

  test("nats codec - only the canonical spelling of a token decodes", () => {
    expect(decodeSegment("=41")).toBeUndefined(); // "A" is written as itself
    expect(decodeSegment("=2e")).toBeUndefined(); // lower-case hex
    expect(decodeSegment("==")).toBeUndefined();
    expect(decodeSegment("=FF")).toBeUndefined(); // not UTF-8
    expect(decodeSegment("a=2")).toBeUndefined();
    expect(decodeSegment("=")).toBe("");
    expect(decodeSegment("=2E")).toBe(".");
  });

  test("nats codec - the sweeper lock's subject is never a store key", () => {
    expect(keyOfSubject("weft", sweeperLockSubject("weft"))).toBeUndefined();
    expect(keyOfSubject("weft", subjectFor("weft", "/a/b"))).toBe("/a/b");
    expect(keyOfSubject("weft", "$KV.other.=.a")).toBeUndefined();
  });

  test("nats codec - a prefix ending in / is a subject filter that selects exactly its keys", () => {
    const prefix = "/weft-contract/x-1/";
    const filter = `$KV.weft.${prefixFilter(prefix)}`;
    expect(filter).toBe("$KV.weft.=.weft-contract.x-1.>");
    expect(subjectMatches(subjectFor("weft", "/weft-contract/x-1/a"), filter)).toBe(true);
    expect(subjectMatches(subjectFor("weft", "/weft-contract/x-1/a/b&c"), filter)).toBe(true);
    expect(subjectMatches(subjectFor("weft", "/weft-contract/x-1"), filter)).toBe(false);
    expect(subjectMatches(subjectFor("weft", "/weft-contract/x-1-sibling/x"), filter)).toBe(false);
    expect(prefixFilter("")).toBe(">");
    expect(prefixFilter("abc")).toBe(">");
    // Ending inside a segment: the filter covers the segment's parent, callers check startsWith.
    expect(prefixFilter("/a/b")).toBe("=.a.>");
  });

  test("nats codec - subject filters: * is one token, > one or more", () => {
    expect(subjectMatches("a.b.c", "a.*.c")).toBe(true);
    expect(subjectMatches("a.b", "a.>")).toBe(true);
    expect(subjectMatches("a", "a.>")).toBe(false);
    expect(subjectMatches("a.b.c", "a.b")).toBe(false);
    expect(subjectMatches("a.b", "a.b.c")).toBe(false);
  });

  test("nats codec - empty keys and broken Unicode are rejected as Invalid", () => {
    expect(code(() => checkKey(""))).toBe(StoreErrorCode.Invalid);
    expect(code(() => checkKey("/a/\ud800"))).toBe(StoreErrorCode.Invalid);
    expect(code(() => subjectFor("weft", `/${"x".repeat(3_000)}`))).toBe(StoreErrorCode.Invalid);
    expect(code(() => checkKey("/ok"))).toBeUndefined();
  });

  test("nats codec - a put carries its TTL and expires at the server's write time plus it", () => {
    const entry = toEntry("weft", record(subjectFor("weft", "/a"), { "Weft-TTL": "30" }, "v", 9n, 5_000));
    expect(entry).toEqual({
      kind: "put",
      key: "/a",
      value: "v",
      revision: 9n,
      ttlSeconds: 30,
      expiresAtMs: 35_000,
    });
    if (entry?.kind !== "put") throw new Error("not a put");
    expect(toKeyValue(entry, 5_000)).toEqual({
      key: "/a",
      value: "v",
      revision: 9n,
      expires: true,
      ttlSeconds: 30,
    });
    expect(toKeyValue(entry, 20_500).ttlSeconds).toBe(15);
    expect(toKeyValue(entry, 40_000)).toEqual({ key: "/a", value: "v", revision: 9n, expires: true });
    const forever = toEntry("weft", record(subjectFor("weft", "/b"), {}, "w"));
    if (forever?.kind !== "put") throw new Error("not a put");
    expect(toKeyValue(forever, 0)).toEqual({ key: "/b", value: "w", revision: 7n, expires: false });
  });

  test("nats codec - deletion markers: DEL, PURGE, swept expiry and the server's MaxAge marker", () => {
    const subject = subjectFor("weft", "/a");
    const reason = (headers: Record<string, string>) => {
      const entry = toEntry("weft", record(subject, headers));
      return entry?.kind === "delete" ? entry.reason : entry?.kind;
    };
    expect(reason({ "KV-Operation": "DEL" })).toBe("deleted");
    expect(reason({ "KV-Operation": "PURGE" })).toBe("deleted");
    expect(reason({ "KV-Operation": "DEL", "Weft-Reason": "expired" })).toBe("expired");
    expect(reason({ "Nats-Marker-Reason": "MaxAge", "Nats-TTL": "15m0s" })).toBe("expired");
    expect(reason({ "Nats-Marker-Reason": "Remove" })).toBe("deleted");
    expect(reason({ "Weft-TTL": "5" })).toBe("put");
  });

  test("nats codec - TTL headers: Nats-TTL only where the server expires keys itself", () => {
    expect(putHeaders(undefined, true)).toEqual([]);
    expect(putHeaders(2, true)).toEqual([
      ["Weft-TTL", "2"],
      ["Nats-TTL", "2s"],
    ]);
    expect(putHeaders(2, false)).toEqual([["Weft-TTL", "2"]]);
  });

  test("nats codec - TTLs are whole seconds, rounded up, within range", () => {
    expect(checkTtl("/k", undefined)).toBeUndefined();
    expect(checkTtl("/k", 1.2)).toBe(2);
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 400_000_000]) {
      expect(code(() => checkTtl("/k", bad))).toBe(StoreErrorCode.Invalid);
    }
  });

  test("nats codec - per-message TTL with expiry markers needs nats-server 2.11.2", () => {
    expect(hasServerTtl("2.9.10")).toBe(false);
    expect(hasServerTtl("2.10.24")).toBe(false);
    expect(hasServerTtl("2.11.1")).toBe(false);
    expect(hasServerTtl("2.11.2")).toBe(true);
    expect(hasServerTtl("2.15.2")).toBe(true);
    expect(hasServerTtl("3.0.0-beta.1")).toBe(true);
    expect(hasServerTtl("")).toBe(false);
  });

  test("nats codec - consumer reply subjects give stream sequence, time and pending (both forms)", () => {
    expect(parseAckSubject("$JS.ACK.KV_weft.p4ml33vF.1.3.3.1795460855734884790.0")).toEqual({
      streamSeq: 3n,
      timeMs: 1795460855734,
      pending: 0,
    });
    expect(parseAckSubject("$JS.ACK.hub.ACCHASH.KV_weft.c1.1.42.7.1795460855734884790.5.token")).toEqual({
      streamSeq: 42n,
      timeMs: 1795460855734,
      pending: 5,
    });
    expect(parseAckSubject("_INBOX.abc")).toBeUndefined();
    expect(parseAckSubject("$JS.ACK.KV_weft.c.1.x.3.4.0")).toBeUndefined();
  });

  test("nats codec - stored message timestamps with nanoseconds", () => {
    expect(parseTimestamp("2026-11-23T19:07:33.734060881Z")).toBe(Date.UTC(2026, 10, 23, 19, 7, 33, 734));
    expect(parseTimestamp("not a time")).toBeUndefined();
  });
});
