import { describe, expect, test } from "bun:test";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import {
  createTxn,
  decodeAuthenticate,
  decodeDeleteRange,
  decodeGatewayError,
  decodeKeepAlive,
  decodeLeaseGrant,
  decodeRange,
  decodeText,
  decodeTimeToLive,
  decodeTxn,
  deleteTxn,
  encodeText,
  gatewayFailure,
  isInvalidToken,
  leaseGrantRequest,
  parseInt64,
  parseJson,
  prefixRange,
  prefixRangeRequest,
  readerFailure,
  timeToLiveRequest,
  toKeyValue,
  txnRangeKvs,
  updateTxn,
  watchCreateRequest,
} from "../../stores/etcd/codec.ts";
import { decodeWatchMessage, watchReader } from "../../stores/etcd/watch-codec.ts";
import { codeOf } from "./fixtures/code-of.ts";

const W = "http://127.0.0.1:2379/v3/test";
const HEADER = {
  cluster_id: "15118495548433857066",
  member_id: "13668033151171901709",
  revision: "6",
  raft_term: "2",
};

function bytes(base64: string): number[] {
  return [...Buffer.from(base64, "base64")];
}

describe("etcd3 codec", () => {
  test("etcd3 codec - keys and values are base64 of their UTF-8 bytes", () => {
    expect(encodeText("/coreos.com/network/subnets/10.5.52.0-24")).toBe(
      "L2NvcmVvcy5jb20vbmV0d29yay9zdWJuZXRzLzEwLjUuNTIuMC0yNA==",
    );
    expect(bytes(encodeText("é✓🚀\u0000"))).toEqual([
      0xc3, 0xa9, 0xe2, 0x9c, 0x93, 0xf0, 0x9f, 0x9a, 0x80, 0x00,
    ]);
    expect(encodeText("")).toBe("");
    const value = '{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"host-gw","x":"雪 \\n\\u0000"}';
    expect(decodeText(encodeText(value), "v", W)).toBe(value);
  });

  test("etcd3 codec - non-base64 text is a protocol error naming the endpoint", () => {
    expect(codeOf(() => decodeText("not base64!", "kv.key", W))).toBe(StoreErrorCode.Protocol);
    expect(codeOf(() => decodeText("abc", "kv.key", W))).toBe(StoreErrorCode.Protocol);
    expect(() => decodeText("!!", "kv.key", W)).toThrow(W);
  });

  test("etcd3 codec - a prefix range ends at the prefix with its last byte incremented", () => {
    const slash = prefixRange("/coreos.com/network/subnets/");
    expect(decodeText(slash.key, "k", W)).toBe("/coreos.com/network/subnets/");
    expect(decodeText(slash.range_end, "k", W)).toBe("/coreos.com/network/subnets0");
    expect(bytes(prefixRange("a").range_end)).toEqual([0x62]);
    expect(bytes(prefixRange("é").range_end)).toEqual([0xc3, 0xaa]);
    expect(bytes(prefixRange("a\u007f").range_end)).toEqual([0x61, 0x80]);
  });

  test("etcd3 codec - an empty prefix selects the whole keyspace as key and range_end 0x00", () => {
    expect(prefixRange("")).toEqual({ key: "AA==", range_end: "AA==" });
  });

  test("etcd3 codec - int64 strings become exact bigints and proto3's absent default is 0", () => {
    expect(parseInt64("9223372036854775807", "f", W)).toBe(9223372036854775807n);
    expect(parseInt64("-1", "f", W)).toBe(-1n);
    expect(parseInt64(42, "f", W)).toBe(42n);
    expect(parseInt64(undefined, "f", W)).toBe(0n);
    expect(codeOf(() => parseInt64("1.5", "f", W))).toBe(StoreErrorCode.Protocol);
    expect(codeOf(() => parseInt64("12a", "f", W))).toBe(StoreErrorCode.Protocol);
    expect(codeOf(() => parseInt64(true, "f", W))).toBe(StoreErrorCode.Protocol);
  });

  test("etcd3 codec - create is a txn on create_revision 0 that puts with the lease or reads on failure", () => {
    expect(createTxn("/k", "v", 7587869214387052553n)).toEqual({
      compare: [{ target: "CREATE", key: "L2s=", result: "EQUAL", create_revision: "0" }],
      success: [{ request_put: { key: "L2s=", value: "dg==", lease: "7587869214387052553" } }],
      failure: [{ request_range: { key: "L2s=" } }],
    });
    expect(JSON.stringify(createTxn("/k", "v", 0n))).toBe(
      '{"compare":[{"target":"CREATE","key":"L2s=","result":"EQUAL","create_revision":"0"}],' +
        '"success":[{"request_put":{"key":"L2s=","value":"dg=="}}],"failure":[{"request_range":{"key":"L2s="}}]}',
    );
  });

  test("etcd3 codec - update compares mod_revision and that the key exists, and returns the old kv", () => {
    expect(updateTxn("/k", "v2", 12n, 0n)).toEqual({
      compare: [
        { target: "MOD", key: "L2s=", result: "EQUAL", mod_revision: "12" },
        { target: "CREATE", key: "L2s=", result: "GREATER", create_revision: "0" },
      ],
      success: [{ request_put: { key: "L2s=", value: "djI=", prev_kv: true } }],
      failure: [{ request_range: { key: "L2s=" } }],
    });
    const leased = updateTxn("/k", "v2", 12n, 5n) as { success: { request_put: { lease?: string } }[] };
    expect(leased.success[0]?.request_put.lease).toBe("5");
  });

  test("etcd3 codec - a conditional delete uses the same compares and deletes only that key", () => {
    expect(deleteTxn("/k", 3n)).toEqual({
      compare: [
        { target: "MOD", key: "L2s=", result: "EQUAL", mod_revision: "3" },
        { target: "CREATE", key: "L2s=", result: "GREATER", create_revision: "0" },
      ],
      success: [{ request_delete_range: { key: "L2s=" } }],
      failure: [{ request_range: { key: "L2s=" } }],
    });
  });

  test("etcd3 codec - lease, list and watch request bodies", () => {
    expect(leaseGrantRequest(86400)).toEqual({ TTL: "86400" });
    expect(timeToLiveRequest(9n, true)).toEqual({ ID: "9", keys: true });
    expect(timeToLiveRequest(9n, false)).toEqual({ ID: "9" });
    expect(prefixRangeRequest("/a/")).toEqual({
      key: "L2Ev",
      range_end: "L2Ew",
      sort_order: "ASCEND",
      sort_target: "KEY",
    });
    expect(watchCreateRequest("/a/", 42n)).toEqual({
      create_request: {
        key: "L2Ev",
        range_end: "L2Ew",
        start_revision: "42",
        prev_kv: true,
        progress_notify: true,
      },
    });
  });

  test("etcd3 codec - a range answer decodes every field and a missing lease means no expiry", () => {
    const answer = decodeRange(
      {
        header: HEADER,
        kvs: [
          { key: "L2EveA==", create_revision: "2", mod_revision: "5", version: "3", value: "aGVsbG8=" },
          { key: "L2Eveg==", create_revision: "4", mod_revision: "4", version: "1", lease: "99" },
        ],
        count: "2",
      },
      W,
    );
    expect(answer.revision).toBe(6n);
    const [x, z] = answer.kvs;
    if (x === undefined || z === undefined) throw new Error("expected two kvs");
    expect(x).toEqual({
      key: "/a/x",
      value: "hello",
      createRevision: 2n,
      modRevision: 5n,
      version: 3n,
      lease: 0n,
    });
    expect(z.value).toBe("");
    expect(toKeyValue(x)).toEqual({ key: "/a/x", value: "hello", revision: 5n, expires: false });
    expect(toKeyValue(z, 30)).toEqual({
      key: "/a/z",
      value: "",
      revision: 4n,
      expires: true,
      ttlSeconds: 30,
    });
    expect(decodeRange({ header: HEADER }, W).kvs).toEqual([]);
  });

  test("etcd3 codec - an answer without header.revision is a protocol error", () => {
    expect(codeOf(() => decodeRange({ kvs: [] }, W))).toBe(StoreErrorCode.Protocol);
    expect(codeOf(() => decodeRange({ header: { cluster_id: "1" } }, W))).toBe(StoreErrorCode.Protocol);
    expect(codeOf(() => decodeRange("nope", W))).toBe(StoreErrorCode.Protocol);
  });

  test("etcd3 codec - a failed txn has no succeeded field and its range shows what is there", () => {
    const failed = decodeTxn(
      {
        header: HEADER,
        responses: [
          {
            response_range: {
              header: { revision: "6" },
              kvs: [{ key: "L2s=", create_revision: "2", mod_revision: "4", version: "2", value: "dg==" }],
              count: "1",
            },
          },
        ],
      },
      W,
    );
    expect(failed.succeeded).toBe(false);
    expect(failed.revision).toBe(6n);
    expect(txnRangeKvs(failed)[0]?.modRevision).toBe(4n);
    const gone = decodeTxn(
      { header: HEADER, responses: [{ response_range: { header: { revision: "6" } } }] },
      W,
    );
    expect(txnRangeKvs(gone)).toEqual([]);
  });

  test("etcd3 codec - a successful put txn returns its revision and the previous kv's lease", () => {
    const ok = decodeTxn(
      {
        header: { ...HEADER, revision: "9" },
        succeeded: true,
        responses: [
          {
            response_put: {
              header: { revision: "9" },
              prev_kv: {
                key: "L2s=",
                create_revision: "2",
                mod_revision: "4",
                version: "1",
                value: "dg==",
                lease: "77",
              },
            },
          },
        ],
      },
      W,
    );
    expect(ok.succeeded).toBe(true);
    expect(ok.revision).toBe(9n);
    const put = ok.responses[0];
    expect(put?.op === "put" ? put.prevKv?.lease : undefined).toBe(77n);
    const deleted = decodeTxn(
      { header: HEADER, succeeded: true, responses: [{ response_delete_range: {} }] },
      W,
    );
    expect(deleted.responses[0]).toEqual({ op: "delete", deleted: 0n });
    expect(codeOf(() => decodeTxn({ header: HEADER, responses: [{ response_what: {} }] }, W))).toBe(
      StoreErrorCode.Protocol,
    );
  });

  test("etcd3 codec - deleterange counts deleted keys, absent meaning none", () => {
    expect(decodeDeleteRange({ header: HEADER, deleted: "1" }, W)).toBe(1n);
    expect(decodeDeleteRange({ header: HEADER }, W)).toBe(0n);
  });

  test("etcd3 codec - lease grant, keepalive and timetolive answers", () => {
    expect(decodeLeaseGrant({ header: HEADER, ID: "4111120196834744342", TTL: "2" }, W)).toEqual({
      id: 4111120196834744342n,
      ttlSeconds: 2,
    });
    expect(codeOf(() => decodeLeaseGrant({ header: HEADER, TTL: "2" }, W))).toBe(StoreErrorCode.Protocol);
    expect(decodeKeepAlive({ result: { header: HEADER, ID: "5", TTL: "30" } }, W)).toBe(30);
    expect(decodeKeepAlive({ result: { header: HEADER, ID: "123" } }, W)).toBe(0);
    expect(decodeTimeToLive({ header: HEADER, ID: "5", TTL: "-1" }, W)).toEqual({ ttlSeconds: -1, keys: [] });
    expect(
      decodeTimeToLive({ header: HEADER, ID: "5", TTL: "29", grantedTTL: "30", keys: ["L2s="] }, W),
    ).toEqual({
      ttlSeconds: 29,
      keys: ["/k"],
    });
  });

  test("etcd3 codec - authenticate returns the token", () => {
    expect(decodeAuthenticate({ header: HEADER, token: "mdqwymXqKiOgvuDH.149" }, W)).toBe(
      "mdqwymXqKiOgvuDH.149",
    );
    expect(codeOf(() => decodeAuthenticate({ header: HEADER }, W))).toBe(StoreErrorCode.Protocol);
  });

  test("etcd3 codec - gateway errors are read in the unary and the stream form", () => {
    const unary = {
      error: "etcdserver: invalid auth token",
      message: "etcdserver: invalid auth token",
      code: 16,
    };
    expect(decodeGatewayError(unary)).toEqual({ code: 16, message: "etcdserver: invalid auth token" });
    expect(decodeGatewayError({ error: { grpc_code: 14, http_code: 503, message: "no leader" } })).toEqual({
      code: 14,
      message: "no leader",
    });
    expect(decodeGatewayError({ header: HEADER })).toBeUndefined();
    expect(decodeGatewayError({ header: HEADER, error: "" })).toBeUndefined();
    expect(isInvalidToken(decodeGatewayError(unary) as never)).toBe(true);
    expect(isInvalidToken("rpc error: code = PermissionDenied desc = etcdserver: permission denied")).toBe(
      false,
    );
  });

  test("etcd3 codec - gateway failures map to Auth, Unavailable or Protocol errors naming the endpoint", () => {
    const ep = "http://127.0.0.1:2379";
    const auth = gatewayFailure(
      { code: 7, message: "etcdserver: permission denied" },
      403,
      ep,
      "/v3/kv/range",
      "",
    );
    expect([auth.code, auth.endpoint]).toEqual([StoreErrorCode.Auth, ep]);
    const badPassword = gatewayFailure(
      { code: 3, message: "etcdserver: authentication failed, invalid user ID or password" },
      400,
      ep,
      "/v3/auth/authenticate",
      "",
    );
    expect(badPassword.code).toBe(StoreErrorCode.Auth);
    const down = gatewayFailure({ code: 14, message: "etcdserver: no leader" }, 503, ep, "/v3/kv/put", "");
    expect(down.code).toBe(StoreErrorCode.Unavailable);
    expect(down.message).toContain(ep);
    const compacted = gatewayFailure(
      { code: 11, message: "etcdserver: mvcc: required revision has been compacted" },
      400,
      ep,
      "/v3/kv/range",
      "",
    );
    expect(compacted.code).toBe(StoreErrorCode.Protocol);
    expect(compacted.message).toContain(`${ep}/v3/kv/range`);
    const notFound = gatewayFailure(undefined, 404, ep, "/v3/kv/range", "Not Found");
    expect(notFound.code).toBe(StoreErrorCode.Protocol);
    expect(notFound.message).toContain("grpc gateway");
  });

  test("etcd3 codec - parseJson rejects text that is not JSON with a protocol error", () => {
    expect(parseJson('{"a":1}', W)).toEqual({ a: 1 });
    expect(codeOf(() => parseJson("Not Found", W))).toBe(StoreErrorCode.Protocol);
  });
});

describe("etcd3 watch codec", () => {
  test("etcd3 codec - watch created, progress and compaction messages", () => {
    expect(decodeWatchMessage({ result: { header: HEADER, created: true } }, W)).toEqual({ kind: "created" });
    expect(decodeWatchMessage({ result: { header: { ...HEADER, revision: "40" } } }, W)).toEqual({
      kind: "progress",
      revision: 40n,
    });
    // 3.4 sends the cancellation without header.revision and keeps the stream open.
    const canceled = {
      result: { header: { cluster_id: "1", raft_term: "2" }, canceled: true, compact_revision: "9" },
    };
    expect(decodeWatchMessage(canceled, W)).toEqual({ kind: "canceled", compactRevision: 9n, reason: "" });
    const denied = {
      result: {
        header: HEADER,
        watch_id: "-1",
        created: true,
        canceled: true,
        cancel_reason: "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
      },
    };
    expect(decodeWatchMessage(denied, W)).toMatchObject({ kind: "canceled", compactRevision: 0n });
    expect(decodeWatchMessage({ error: { grpc_code: 16, message: "invalid auth token" } }, W)).toEqual({
      kind: "error",
      error: { code: 16, message: "invalid auth token" },
    });
  });

  test("etcd3 codec - PUT events have no type field and DELETE events carry the previous kv", () => {
    const message = decodeWatchMessage(
      {
        result: {
          header: { ...HEADER, revision: "5" },
          events: [
            {
              kv: {
                key: "L2EveQ==",
                create_revision: "3",
                mod_revision: "3",
                version: "1",
                value: "dg==",
                lease: "8",
              },
            },
            {
              type: "DELETE",
              kv: { key: "L2EveQ==", mod_revision: "4" },
              prev_kv: {
                key: "L2EveQ==",
                create_revision: "3",
                mod_revision: "3",
                version: "1",
                value: "dg==",
                lease: "8",
              },
            },
          ],
        },
      },
      W,
    );
    if (message.kind !== "events") throw new Error(`expected events, got ${message.kind}`);
    expect(
      message.events.map((e) => [e.type, e.kv.key, e.kv.modRevision, e.kv.lease, e.prevKv?.lease]),
    ).toEqual([
      ["put", "/a/y", 3n, 8n, undefined],
      ["delete", "/a/y", 4n, 0n, 8n],
    ]);
    expect(
      codeOf(() =>
        decodeWatchMessage({ result: { header: HEADER, events: [{ type: "EXPIRE", kv: {} }] } }, W),
      ),
    ).toBe(StoreErrorCode.Protocol);
  });

  /** Feeds `chunks` to a watch reader; returns the messages and what it threw (as the watch maps it). */
  function readWatch(chunks: readonly Uint8Array[], maxValueBytes?: number) {
    const messages: unknown[] = [];
    const reader = watchReader(maxValueBytes, (json) => messages.push(json));
    try {
      for (const chunk of chunks) reader.push(chunk);
      reader.end();
      return { messages, error: undefined };
    } catch (err) {
      return { messages, error: readerFailure(err, W) };
    }
  }
  const bytes = (text: string) => new TextEncoder().encode(text);

  test("etcd3 codec - the watch reader yields the same messages at every chunk boundary", () => {
    const objects = [
      { result: { header: HEADER, created: true } },
      { result: { header: HEADER, events: [{ kv: { key: "L2E=", value: "e30=" } }] } },
      { result: { note: 'braces } { and "quotes" and \\ inside strings 雪 🚀', header: HEADER } },
    ];
    const stream = bytes(`${objects.map((o) => JSON.stringify(o)).join("\n")}\n`);
    for (let cut = 0; cut <= stream.length; cut++) {
      for (const second of [cut, Math.min(stream.length, cut + 7)]) {
        const got = readWatch([
          stream.subarray(0, cut),
          stream.subarray(cut, second),
          stream.subarray(second),
        ]);
        expect(got).toEqual({ messages: objects, error: undefined });
      }
    }
  });

  test("etcd3 codec - the watch reader takes objects back to back and across lines, and waits for a tail", () => {
    const messages: unknown[] = [];
    const reader = watchReader(undefined, (json) => messages.push(json));
    reader.push(bytes('{"a":1}{"b":\n[1,{"c":2}]}  {"d"'));
    expect(messages).toEqual([{ a: 1 }, { b: [1, { c: 2 }] }]);
    reader.push(bytes(":3}\r\n"));
    expect(messages).toEqual([{ a: 1 }, { b: [1, { c: 2 }] }, { d: 3 }]);
  });

  test("etcd3 codec - text that is not JSON in the watch stream is a protocol error", () => {
    const codeOfError = (err: unknown) => (isStoreError(err) ? err.code : String(err));
    expect(codeOfError(readWatch([bytes("Not Found")]).error)).toBe(StoreErrorCode.Protocol);
    const unfinished = readWatch([bytes('{"a":1}\n{"b"')]);
    expect(unfinished.messages).toEqual([{ a: 1 }]);
    expect(codeOfError(unfinished.error)).toBe(StoreErrorCode.Protocol);
    // A message that is no object is the decoder's protocol error.
    const odd = readWatch([bytes('"x"')]);
    expect(codeOf(() => decodeWatchMessage(odd.messages[0], W))).toBe(StoreErrorCode.Protocol);
  });

  test("etcd3 codec - with a value limit, a put's longer value is left out unread and its length kept", () => {
    const large = "é".repeat(3_000);
    const message = (value: string) =>
      JSON.stringify({
        result: {
          header: HEADER,
          events: [
            {
              kv: {
                key: "L2E=",
                value: Buffer.from(value).toString("base64"),
                mod_revision: "9",
                lease: "3",
              },
            },
          ],
        },
      });
    const stream = bytes(`${message(large)}\n${message("fits")}\n`);
    for (const size of [1, 100, stream.length]) {
      const chunks: Uint8Array[] = [];
      for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size));
      const { messages, error } = readWatch(chunks, 4096);
      expect(error).toBeUndefined();
      const events = messages.flatMap((json) => {
        const decoded = decodeWatchMessage(json, W, 4096);
        return decoded.kind === "events" ? decoded.events : [];
      });
      expect(events.map((e) => [e.kv.value, e.omittedBytes])).toEqual([
        ["", 6_000],
        ["fits", undefined],
      ]);
    }
  });
});
