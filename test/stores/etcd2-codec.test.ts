import { describe, expect, test } from "bun:test";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import {
  actualIndex,
  basicAuth,
  checkPrefix,
  checkValue,
  directoryOf,
  type EtcdAnswer,
  type EtcdNode,
  failureError,
  flatten,
  form,
  keyPath,
  parseAnswer,
  parseFailure,
  parseIndex,
  pollOutcome,
  query,
  requireIndex,
  toKeyValue,
  ttlField,
  validateKey,
  watchStep,
} from "../../stores/etcd2/codec.ts";
import { codeOf } from "./fixtures/code-of.ts";

const EP = "http://127.0.0.1:2379";

describe("etcd2 codec", () => {
  test("etcd2 codec - keyPath percent-encodes each segment but keeps the slashes", () => {
    expect(keyPath("/coreos.com/network/subnets/10.5.53.0-24&fd00:10:244::-64")).toBe(
      "/v2/keys/coreos.com/network/subnets/10.5.53.0-24%26fd00%3A10%3A244%3A%3A-64",
    );
    expect(keyPath("/a b/c?d#e%f")).toBe("/v2/keys/a%20b/c%3Fd%23e%25f");
    expect(keyPath("/雪")).toBe("/v2/keys/%E9%9B%AA");
    expect(keyPath("/")).toBe("/v2/keys/");
  });

  test("etcd2 codec - validateKey accepts flannel keys and rejects keys etcd would rewrite or hide", () => {
    expect(codeOf(() => validateKey("/coreos.com/network/subnets/10.5.52.0-24"))).toBeUndefined();
    expect(codeOf(() => validateKey("/a:b/c-d&e"))).toBeUndefined();
    for (const bad of ["", "/", "a/b", "/a//b", "/a/b/", "/a/./b", "/a/../b", "/a/_hidden", "/a/\ud800"]) {
      expect({ bad, code: codeOf(() => validateKey(bad)) }).toEqual({ bad, code: StoreErrorCode.Invalid });
    }
  });

  test("etcd2 codec - directoryOf is the deepest directory holding every key with the prefix", () => {
    expect(directoryOf("/coreos.com/network/subnets/")).toBe("/coreos.com/network/subnets");
    expect(directoryOf("/coreos.com/network/sub")).toBe("/coreos.com/network");
    expect(directoryOf("/a")).toBe("/");
    expect(directoryOf("/")).toBe("/");
    expect(directoryOf("")).toBe("/");
  });

  test("etcd2 codec - query keeps order, skips unset fields and encodes values", () => {
    expect(query({ wait: true, recursive: true, waitIndex: 42n })).toBe(
      "?wait=true&recursive=true&waitIndex=42",
    );
    expect(query({ prevIndex: undefined, prevExist: false })).toBe("?prevExist=false");
    expect(query({ a: undefined })).toBe("");
    expect(query({ x: "a&b=c" })).toBe("?x=a%26b%3Dc");
  });

  test("etcd2 codec - form bodies round-trip any UTF-8 value exactly", () => {
    const value = JSON.stringify({
      note: "héllo ✓ 雪 🚀 \u0000\u001f",
      quoted: 'a"b\\c\n\t',
      amp: "x&y=z+w %41",
    });
    const body = form({ value, ttl: 30 });
    expect(body.endsWith("&ttl=30")).toBe(true);
    const decoded = new URLSearchParams(body);
    expect(decoded.get("value")).toBe(value);
    expect(decoded.get("ttl")).toBe("30");
    expect(form({ value: "v", ttl: undefined })).toBe("value=v");
    expect(form({ value: "" })).toBe("value=");
  });

  test("etcd2 codec - ttlField rounds fractions up and rejects non-positive TTLs", () => {
    expect(ttlField("/k", undefined)).toBeUndefined();
    expect(ttlField("/k", 30)).toBe(30);
    expect(ttlField("/k", 1.2)).toBe(2);
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(codeOf(() => ttlField("/k", bad))).toBe(StoreErrorCode.Invalid);
    }
  });

  test("etcd2 codec - parseIndex reads X-Etcd-Index as a bigint and rejects junk", () => {
    expect(parseIndex("1105")).toBe(1105n);
    expect(parseIndex(" 7 ")).toBe(7n);
    expect(parseIndex(null)).toBeUndefined();
    expect(parseIndex("-1")).toBeUndefined();
    expect(parseIndex("abc")).toBeUndefined();
  });

  test("etcd2 codec - parseAnswer checks the shape and names the endpoint when it is wrong", () => {
    const ok = parseAnswer(
      '{"action":"create","node":{"key":"/a/b","value":"hi","expiration":"2026-01-01T00:00:00Z","ttl":30,"modifiedIndex":4,"createdIndex":4}}',
      EP,
    );
    expect(ok.action).toBe("create");
    expect(ok.node.ttl).toBe(30);
    for (const body of ["", "not json", "{}", '{"action":"get"}', '{"action":"get","node":{"key":"/a"}}']) {
      try {
        parseAnswer(body, EP);
        throw new Error(`accepted ${body}`);
      } catch (err) {
        expect(isStoreError(err, StoreErrorCode.Protocol)).toBe(true);
        expect((err as Error).message).toContain(EP);
      }
    }
  });

  test("etcd2 codec - parseFailure and actualIndex read the error body and the Compare failed cause", () => {
    const failure = parseFailure('{"errorCode":101,"message":"Compare failed","cause":"[1 != 4]","index":5}');
    expect(failure).toEqual({ errorCode: 101, message: "Compare failed", cause: "[1 != 4]", index: 5 });
    expect(failure && actualIndex(failure)).toBe(4n);
    expect(actualIndex({ errorCode: 101, message: "", cause: "[old != new] [3 != 9]" })).toBe(9n);
    expect(actualIndex({ errorCode: 101, message: "" })).toBeUndefined();
    expect(parseFailure("<html>")).toBeUndefined();
    expect(parseFailure('{"action":"get"}')).toBeUndefined();
  });

  test("etcd2 codec - failureError maps v2 error codes onto typed errors", () => {
    const at = { key: "/k", endpoint: EP };
    const body = (code: number, cause = "/k") =>
      JSON.stringify({ errorCode: code, message: "m", cause, index: 9 });
    expect(failureError(404, body(100), at).code).toBe(StoreErrorCode.KeyNotFound);
    expect(failureError(404, body(100), { ...at, expectRevision: 3n }).code).toBe(StoreErrorCode.Conflict);
    const conflict = failureError(412, body(101, "[3 != 8]"), { ...at, expectRevision: 3n });
    expect(conflict.code).toBe(StoreErrorCode.Conflict);
    expect(conflict.message).toContain("expected revision 3, it is now at revision 8");
    expect(failureError(412, body(105), at).code).toBe(StoreErrorCode.KeyExists);
    expect(failureError(403, body(102), at).code).toBe(StoreErrorCode.Invalid);
    expect(failureError(400, body(104), at).code).toBe(StoreErrorCode.Invalid);
    expect(failureError(401, body(110), at).code).toBe(StoreErrorCode.Auth);
    expect(failureError(500, body(300), at).code).toBe(StoreErrorCode.Unavailable);
    expect(failureError(502, "<html>bad gateway</html>", at).code).toBe(StoreErrorCode.Unavailable);
    expect(failureError(401, "", at).code).toBe(StoreErrorCode.Auth);
    const odd = failureError(400, body(209), at);
    expect(odd.code).toBe(StoreErrorCode.Protocol);
    expect(odd.message).toContain(EP);
    expect(odd.endpoint).toBe(EP);
  });

  test("etcd2 codec - toKeyValue marks TTL keys as expiring and permanent keys as not", () => {
    const leased = toKeyValue({
      key: "/a",
      value: "v",
      ttl: 29,
      expiration: "x",
      modifiedIndex: 7,
      createdIndex: 5,
    });
    expect(leased).toEqual({ key: "/a", value: "v", revision: 7n, expires: true, ttlSeconds: 29 });
    const reserved = toKeyValue({ key: "/b", value: "", modifiedIndex: 3, createdIndex: 3 });
    expect(reserved).toEqual({ key: "/b", value: "", revision: 3n, expires: false });
    expect("ttlSeconds" in reserved).toBe(false);
  });

  test("etcd2 codec - flatten walks nested directories, skips dirs, filters by prefix and sorts", () => {
    const leaf = (key: string, modifiedIndex: number): EtcdNode => ({
      key,
      value: key,
      modifiedIndex,
      createdIndex: modifiedIndex,
    });
    const tree: EtcdNode = {
      key: "/n",
      dir: true,
      modifiedIndex: 1,
      createdIndex: 1,
      nodes: [
        leaf("/n/subnetsx", 9),
        {
          key: "/n/subnets",
          dir: true,
          modifiedIndex: 2,
          createdIndex: 2,
          nodes: [
            leaf("/n/subnets/10.0.2.0-24", 4),
            {
              key: "/n/subnets/deep",
              dir: true,
              modifiedIndex: 5,
              createdIndex: 5,
              nodes: [leaf("/n/subnets/deep/x", 6)],
            },
            leaf("/n/subnets/10.0.1.0-24", 3),
            { key: "/n/subnets/empty", dir: true, modifiedIndex: 8, createdIndex: 8 },
          ],
        },
      ],
    };
    expect(flatten(tree, "/n/subnets/").map((kv) => kv.key)).toEqual([
      "/n/subnets/10.0.1.0-24",
      "/n/subnets/10.0.2.0-24",
      "/n/subnets/deep/x",
    ]);
    expect(flatten(tree, "/n/subnets").map((kv) => kv.key)).toContain("/n/subnetsx");
    expect(flatten(leaf("/n/k", 1), "/n/k/")).toEqual([]);
  });

  test("etcd2 codec - watchStep maps every v2 action onto put or delete with the right reason", () => {
    const node: EtcdNode = { key: "/p/k", value: "v", modifiedIndex: 12, createdIndex: 10 };
    const step = (action: string, n: EtcdNode = node, prefix = "/p/") =>
      watchStep({ action, node: n } satisfies EtcdAnswer, prefix, EP);
    for (const action of ["set", "create", "update", "compareAndSwap"]) {
      expect(step(action)).toEqual({
        kind: "event",
        event: { type: "put", kv: { key: "/p/k", value: "v", revision: 12n, expires: false } },
      });
    }
    const deletes = [
      ["delete", "deleted"],
      ["compareAndDelete", "deleted"],
      ["expire", "expired"],
    ] as const;
    for (const [action, reason] of deletes) {
      expect(step(action)).toEqual({
        kind: "event",
        event: { type: "delete", key: "/p/k", revision: 12n, reason },
      });
    }
    expect(step("set", node, "/q/")).toEqual({ kind: "skip" });
    expect(codeOf(() => step("get"))).toBe(StoreErrorCode.Protocol);
  });

  test("etcd2 codec - watchStep skips new directories but resyncs when a directory of watched keys vanishes", () => {
    const dir = (key: string): EtcdNode => ({ key, dir: true, modifiedIndex: 20, createdIndex: 3 });
    const step = (action: string, key: string, prefix: string) =>
      watchStep({ action, node: dir(key) }, prefix, EP).kind;
    expect(step("set", "/p/sub", "/p/")).toBe("skip");
    expect(step("delete", "/p/sub", "/p/")).toBe("resync");
    expect(step("expire", "/p/sub", "/p/")).toBe("resync");
    expect(step("delete", "/p", "/p/sub/")).toBe("resync");
    expect(step("delete", "/p", "/p/")).toBe("resync");
    expect(step("delete", "/q", "/p/")).toBe("skip");
    expect(step("delete", "/p/subx", "/p/sub/")).toBe("skip");
  });

  test("etcd2 codec - pollOutcome turns an event into the next waitIndex and skips keys outside the prefix", () => {
    const body = (key: string) =>
      JSON.stringify({ action: "set", node: { key, value: "v", modifiedIndex: 41, createdIndex: 41 } });
    const inside = pollOutcome(200, body("/p/k"), "/p/", EP);
    expect(inside).toEqual({
      kind: "next",
      event: { type: "put", kv: { key: "/p/k", value: "v", revision: 41n, expires: false } },
      waitIndex: 42n,
    });
    expect(pollOutcome(200, body("/px"), "/p/", EP)).toEqual({
      kind: "next",
      event: undefined,
      waitIndex: 42n,
    });
    const dirGone = JSON.stringify({
      action: "delete",
      node: { key: "/p", dir: true, modifiedIndex: 50, createdIndex: 2 },
    });
    expect(pollOutcome(200, dirGone, "/p/", EP)).toEqual({ kind: "resync", cause: "gap" });
  });

  test("etcd2 codec - pollOutcome asks for a re-list when the index was cleared and throws other failures", () => {
    const cleared =
      '{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [106/5]","index":1105}';
    expect(pollOutcome(400, cleared, "/p/", EP)).toEqual({ kind: "resync", cause: "compacted" });
    expect(
      pollOutcome(400, '{"errorCode":400,"message":"watcher is cleared due to etcd recovery"}', "/p/", EP),
    ).toEqual({
      kind: "resync",
      cause: "compacted",
    });
    expect(codeOf(() => pollOutcome(401, '{"message":"Insufficient credentials"}', "/p/", EP))).toBe(
      StoreErrorCode.Auth,
    );
    expect(codeOf(() => pollOutcome(503, "", "/p/", EP))).toBe(StoreErrorCode.Unavailable);
    expect(codeOf(() => pollOutcome(200, "garbage", "/p/", EP))).toBe(StoreErrorCode.Protocol);
  });

  test("etcd2 codec - values, prefixes, credentials and the index header are checked", () => {
    expect(checkValue("/k", "héllo ✓ 🚀")).toBe("héllo ✓ 🚀");
    expect(codeOf(() => checkValue("/k", "broken \udc00"))).toBe(StoreErrorCode.Invalid);
    expect(codeOf(() => checkPrefix("/a/"))).toBeUndefined();
    expect(codeOf(() => checkPrefix(""))).toBeUndefined();
    expect(codeOf(() => checkPrefix("a/"))).toBe(StoreErrorCode.Invalid);
    expect(basicAuth(undefined, "x")).toEqual({});
    // UTF-8, as etcd compares the decoded bytes with the stored password
    expect(basicAuth("user", "pä:ss")).toEqual({ authorization: "Basic dXNlcjpww6Q6c3M=" });
    expect(requireIndex("12", EP)).toBe(12n);
    expect(codeOf(() => requireIndex(null, EP))).toBe(StoreErrorCode.Protocol);
  });
});
