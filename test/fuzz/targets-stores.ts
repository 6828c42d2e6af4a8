/**
 * Fuzz targets for the store codecs: every exported function that decodes what a server sent (a body,
 * a header, a subject, a stored message) gets each generated input. They may throw only `StoreError`
 * (etcd v3, etcd v2, Consul) or nothing at all (the NATS codec answers `undefined`).
 */
import * as consul from "../../stores/consul/codec.ts";
import { StoreError } from "../../stores/errors.ts";
import * as etcd3 from "../../stores/etcd/codec.ts";
import { decodeWatchMessage, watchReader as etcd3WatchReader } from "../../stores/etcd/watch-codec.ts";
import * as etcd2 from "../../stores/etcd2/codec.ts";
import * as nats from "../../stores/nats/codec.ts";
import { mutateText, randomBytesText, randomString, textInput } from "./inputs.ts";
import type { Rng } from "./prng.ts";
import { check, checkMessage, type FuzzTarget, tolerate } from "./target.ts";

const W = "http://127.0.0.1:2379/v3/kv/range";
const storeError = (err: unknown): boolean => {
  checkMessage(err);
  return err instanceof StoreError;
};
const b64 = (text: string) => Buffer.from(text).toString("base64");
const LEASE = '{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"host-gw"}';
const KEY = "/coreos.com/network/subnets/10.5.1.0-24";
const HEADER =
  '{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"42","raft_term":"2"}';
const KV = `{"key":"${b64(KEY)}","create_revision":"5","mod_revision":"40","version":"3","value":"${b64(LEASE)}","lease":"7587862072903546628"}`;

const ETCD3_SEEDS = [
  `{"header":${HEADER},"kvs":[${KV},${KV}],"count":"2"}`,
  `{"header":${HEADER}}`,
  `{"header":${HEADER},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"43"},"prev_kv":${KV}}}]}`,
  `{"header":${HEADER},"responses":[{"response_range":{"header":{"revision":"43"},"kvs":[${KV}],"count":"1"}}]}`,
  `{"header":${HEADER},"succeeded":true,"responses":[{"response_delete_range":{"header":{},"deleted":"1"}}]}`,
  `{"header":${HEADER},"deleted":"1"}`,
  `{"header":${HEADER},"ID":"7587862072903546628","TTL":"60"}`,
  `{"result":{"header":${HEADER},"ID":"7587862072903546628","TTL":"60"}}`,
  `{"header":${HEADER},"ID":"7587862072903546628","TTL":"59","grantedTTL":"60","keys":["${b64(KEY)}"]}`,
  `{"header":${HEADER},"token":"ZkNbYuJmNgmJQMlB.23"}`,
  '{"error":"etcdserver: requested lease not found","code":5,"message":"etcdserver: requested lease not found"}',
  '{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}',
  '{"error":"etcdserver: invalid auth token","code":16,"message":"etcdserver: invalid auth token"}',
];

const WATCH_SEEDS = [
  `{"result":{"header":${HEADER},"created":true}}`,
  `{"result":{"header":${HEADER},"events":[{"kv":${KV}},{"type":"DELETE","kv":{"key":"${b64(KEY)}","mod_revision":"44"},"prev_kv":${KV}}]}}`,
  `{"result":{"header":${HEADER},"canceled":true,"compact_revision":"10","cancel_reason":"mvcc: required revision has been compacted"}}`,
  `{"result":{"header":{"revision":"50"}}}`,
  '{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}',
];

const STATUSES = [200, 201, 400, 401, 403, 404, 409, 412, 413, 429, 500, 503];
const status = (rng: Rng) => (rng.chance(0.9) ? rng.pick(STATUSES) : rng.range(-1, 1000));
const header = (rng: Rng) =>
  rng.chance(0.1)
    ? null
    : rng.chance(0.6)
      ? String(rng.u32())
      : rng.pick(["", " 42 ", "-1", "1e3", "18446744073709551616", randomString(rng)]);

export const etcd3Target: FuzzTarget<{ body: string; status: number }> = {
  name: "etcd3-answers",
  covers: [
    "parseJson, decodeRange, decodeTxn, txnRangeKvs, decodeDeleteRange, decodeLeaseGrant, decodeKeepAlive,",
    "decodeTimeToLive, decodeAuthenticate, decodeHeaderRevision, decodeKv, decodeText, parseInt64,",
    "decodeGatewayError, gatewayFailure, isInvalidToken (stores/etcd/codec.ts)",
  ],
  allowed: "StoreError",
  generate: (rng) => ({ body: textInput(rng, ETCD3_SEEDS), status: status(rng) }),
  run({ body, status }) {
    const json = tolerate(() => etcd3.parseJson(body, W), storeError);
    if (json === undefined) return;
    const decoders: ((json: unknown) => unknown)[] = [
      (j) => etcd3.decodeRange(j, W),
      (j) => etcd3.txnRangeKvs(etcd3.decodeTxn(j, W)),
      (j) => etcd3.decodeDeleteRange(j, W),
      (j) => etcd3.decodeLeaseGrant(j, W),
      (j) => etcd3.decodeKeepAlive(j, W),
      (j) => etcd3.decodeTimeToLive(j, W),
      (j) => etcd3.decodeAuthenticate(j, W),
      (j) => etcd3.decodeHeaderRevision(j, W),
      (j) => etcd3.decodeKv(j, W),
      (j) => etcd3.parseInt64(j, "field", W),
      (j) => etcd3.decodeText(typeof j === "string" ? j : body.slice(0, 100), "field", W),
    ];
    for (const decode of decoders) tolerate(() => decode(json), storeError);
    const error = etcd3.decodeGatewayError(json);
    if (error !== undefined) etcd3.isInvalidToken(error);
    const failure = etcd3.gatewayFailure(error, status, "http://127.0.0.1:2379", "/v3/kv/range", body);
    check(failure instanceof StoreError, "gatewayFailure returned no StoreError");
    checkMessage(failure);
  },
};

export const etcd3WatchTarget: FuzzTarget<{ bytes: Uint8Array; cuts: number[]; limit: number | undefined }> =
  {
    name: "etcd3-watch",
    covers: ["watchReader, decodeWatchMessage (stores/etcd/watch-codec.ts)"],
    allowed: "StoreError",
    generate(rng) {
      const n = rng.range(1, 4);
      const text = Array.from({ length: n }, () => textInput(rng, WATCH_SEEDS)).join(
        rng.pick(["\n", "", " ", "\r\n"]),
      );
      const bytes = new TextEncoder().encode(text);
      const cuts = Array.from({ length: rng.size(6) }, () => rng.int(bytes.length + 1)).sort((a, b) => a - b);
      const limits = [0, 3, 4096];
      return { bytes, cuts, limit: rng.chance(0.25) ? undefined : rng.pick(limits) };
    },
    run({ bytes, cuts, limit }) {
      const messages: unknown[] = [];
      const reader = etcd3WatchReader(limit, (json) => messages.push(json));
      let at = 0;
      for (const cut of [...cuts, bytes.length]) {
        const chunk = bytes.subarray(at, cut);
        at = cut;
        const read = tolerate(() => {
          try {
            reader.push(chunk);
          } catch (err) {
            throw etcd3.readerFailure(err, W);
          }
          return true;
        }, storeError);
        for (const json of messages.splice(0)) {
          const message = tolerate(() => decodeWatchMessage(json, W, limit), storeError);
          if (message?.kind !== "events" || limit === undefined) continue;
          // Kept values are bounded in UTF-8 by the watch (boundValue); here only what was left out is.
          for (const e of message.events) {
            const out = e.omittedBytes;
            check(out === undefined || (e.kv.value === "" && out > limit), "a value left out wrongly");
          }
        }
        if (read === undefined) return;
      }
    },
  };

const NODE = `{"key":"${KEY}","value":${JSON.stringify(LEASE)},"expiration":"2026-01-02T03:04:05.123Z","ttl":86400,"modifiedIndex":12,"createdIndex":12}`;
const ETCD2_SEEDS = [
  `{"action":"get","node":{"key":"/coreos.com/network/subnets","dir":true,"nodes":[${NODE},{"key":"/coreos.com/network/subnets/x","dir":true,"nodes":[${NODE}],"modifiedIndex":4,"createdIndex":4}],"modifiedIndex":3,"createdIndex":3}}`,
  `{"action":"set","node":${NODE},"prevNode":${NODE}}`,
  `{"action":"expire","node":{"key":"${KEY}","modifiedIndex":15,"createdIndex":12},"prevNode":${NODE}}`,
  `{"action":"delete","node":{"key":"/coreos.com/network/subnets","dir":true,"modifiedIndex":16,"createdIndex":3}}`,
  '{"errorCode":100,"message":"Key not found","cause":"/coreos.com/network/config","index":42}',
  '{"errorCode":101,"message":"Compare failed","cause":"[12 != 13]","index":13}',
  '{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [1008/3]","index":2007}',
  '{"errorCode":110,"message":"The request requires user authentication","cause":"Insufficient credentials","index":0}',
];
const PREFIXES = ["/coreos.com/network/subnets/", "/coreos.com/network/", "/", ""];

export const etcd2Target: FuzzTarget<{
  body: string;
  status: number;
  header: string | null;
  prefix: string;
}> = {
  name: "etcd2-answers",
  covers: [
    "parseAnswer, flatten, watchStep, pollOutcome, parseFailure, failureError, hasCode, actualIndex,",
    "parseIndex, requireIndex, toKeyValue (stores/etcd2/codec.ts)",
  ],
  allowed: "StoreError",
  generate: (rng) => ({
    body: textInput(rng, ETCD2_SEEDS),
    status: status(rng),
    header: header(rng),
    prefix: rng.chance(0.9) ? rng.pick(PREFIXES) : randomString(rng),
  }),
  run({ body, status, header, prefix }) {
    const ep = "http://127.0.0.1:2379";
    const answer = tolerate(() => etcd2.parseAnswer(body, ep), storeError);
    if (answer !== undefined) {
      const kvs = etcd2.flatten(answer.node, prefix);
      for (const kv of kvs) check(kv.key.startsWith(prefix), "flatten returned a key outside the prefix");
      tolerate(() => etcd2.watchStep(answer, prefix, ep), storeError);
    }
    tolerate(() => etcd2.pollOutcome(status, body, prefix, ep), storeError);
    const failure = etcd2.parseFailure(body);
    if (failure !== undefined) etcd2.actualIndex(failure);
    etcd2.hasCode(body, 401);
    const error = etcd2.failureError(status, body, { key: KEY, endpoint: ep, expectRevision: 3n });
    check(error instanceof StoreError, "failureError returned no StoreError");
    checkMessage(error);
    etcd2.parseIndex(header);
    tolerate(() => etcd2.requireIndex(header, ep), storeError);
  },
};

const ENTRY = `{"LockIndex":0,"Key":"coreos.com/network/subnets/10.5.1.0-24","Flags":0,"Value":"${b64(LEASE)}","CreateIndex":10,"ModifyIndex":12,"Session":"adf4238a-882b-9ddc-4a9d-5b6758e4159e"}`;
const CONSUL_SEEDS = [
  `[${ENTRY},${ENTRY.replace('"Value":', '"Value":null,"X":')}]`,
  "[]",
  `{"Results":[{"KV":${ENTRY}}],"Errors":null}`,
  '{"Results":null,"Errors":[{"OpIndex":0,"What":"failed to check index: key does not exist"}]}',
  '{"Results":null,"Errors":[{"OpIndex":1,"What":"invalid session \\"adf4238a\\""}]}',
  "Permission denied: token with AccessorID 'x' lacks permission 'key:write'",
  "Invalid Session TTL '1s', must be between [10s=24h0m0s]",
  "rpc error making call: No cluster leader",
];
const DURATIONS = ["10s", "24h0m0s", "1m30s", "1.5s", "250ms", "0", "1h2m3.4s5ms", "µs"];

export const consulTarget: FuzzTarget<{ body: string; status: number; header: string | null; text: string }> =
  {
    name: "consul-answers",
    covers: [
      "parseJson, parseEntries, toEntry, parseTxn, failureError, isInvalidSession, parseIndex, requireIndex,",
      "parseGoDuration, sessionTtlBounds (stores/consul/codec.ts)",
    ],
    allowed: "StoreError",
    generate: (rng) => ({
      body: textInput(rng, CONSUL_SEEDS),
      status: status(rng),
      header: header(rng),
      text: rng.chance(0.5) ? mutateText(rng, rng.pick(DURATIONS), DURATIONS) : randomString(rng),
    }),
    run({ body, status, header, text }) {
      const ep = "http://127.0.0.1:8500";
      const json = tolerate(() => consul.parseJson(body, ep), storeError);
      if (Array.isArray(json)) for (const item of json) tolerate(() => consul.toEntry(item, ep), storeError);
      tolerate(() => consul.parseEntries(body, ep), storeError);
      const outcome = tolerate(() => consul.parseTxn(status, body, ep, KEY), storeError);
      if (outcome !== undefined && !outcome.ok)
        for (const e of outcome.errors) consul.isInvalidSession(e.what);
      const error = consul.failureError(status, body, ep, KEY);
      check(error instanceof StoreError, "failureError returned no StoreError");
      checkMessage(error);
      consul.parseIndex(header);
      tolerate(() => consul.requireIndex(header, ep), storeError);
      const ms = consul.parseGoDuration(text);
      check(ms === undefined || ms >= 0, `duration ${ms}`);
      consul.sessionTtlBounds(body);
    },
  };

const SUBJECTS = [
  "$KV.weft.=.coreos=2Ecom.network.subnets.10=2E5=2E1=2E0-24",
  "$KV.weft.=.coreos=2Ecom.network.subnets.10=2E5=2E53=2E0-24=26fd00=3A10=3A244=3A=3A-64",
  "$KV.weft.==.sweeper",
  "$KV.other.=.x",
];
const REPLIES = [
  "$JS.ACK.KV_weft.c1.1.42.7.1767323045123456789.0",
  "$JS.ACK.hub.5c8ba0ee.KV_weft.c1.1.42.7.1767323045123456789.3.tok",
];
const HEADERS = ["KV-Operation", "Nats-Marker-Reason", "Weft-TTL", "Weft-Reason"];

export const natsTarget: FuzzTarget<{
  subject: string;
  headers: Record<string, string>;
  data: string;
  reply: string;
  version: string;
  filter: string;
}> = {
  name: "nats-messages",
  covers: [
    "toEntry, keyOfSubject, decodeKey, decodeSegment, subjectMatches, parseTtlSeconds, parseAckSubject,",
    "parseTimestamp, parseVersion, hasServerTtl, lockHolder, isExpired, toKeyValue (stores/nats/codec.ts)",
  ],
  allowed: "nothing (answers undefined)",
  generate(rng) {
    const headers: Record<string, string> = {};
    for (const name of HEADERS) {
      if (rng.chance(0.3))
        headers[name] = rng.chance(0.5)
          ? rng.pick(["DEL", "PURGE", "MaxAge", "expired", "60", "0", "1e3"])
          : randomString(rng);
    }
    return {
      subject: rng.chance(0.8) ? mutateText(rng, rng.pick(SUBJECTS), SUBJECTS) : randomString(rng),
      headers,
      data: rng.chance(0.5) ? randomBytesText(rng, 200) : textInput(rng, [LEASE, '{"holder":"agent-1"}']),
      reply: rng.chance(0.8) ? mutateText(rng, rng.pick(REPLIES), REPLIES) : randomString(rng),
      version: rng.chance(0.5) ? mutateText(rng, "2.11.2", ["v2.10.0", "3.0.0-beta"]) : randomString(rng),
      filter: rng.pick([">", "*.>", "=.coreos=2Ecom.network.subnets.>", randomString(rng)]),
    };
  },
  run({ subject, headers, data, reply, version, filter }) {
    const bytes = Buffer.from(data, "latin1");
    const record = {
      subject,
      seq: 42n,
      timeMs: 1_767_323_045_123,
      header: (n: string) => headers[n] ?? "",
      data: bytes,
    };
    const entry = nats.toEntry("weft", record);
    if (entry !== undefined) {
      const canonical = nats.subjectPrefix("weft") + nats.encodeKey(entry.key);
      check(canonical === subject, `subject ${subject} is not canonical for ${entry.key}`);
      if (entry.kind === "put" && !nats.isExpired(entry, 0)) nats.toKeyValue(entry, 0);
    }
    const kvKey = subject.slice(subject.indexOf(".", 4) + 1);
    const key = nats.decodeKey(kvKey);
    if (key !== undefined) check(nats.encodeKey(key) === kvKey, `${kvKey} decodes but is not canonical`);
    nats.subjectMatches(subject, filter);
    nats.parseTtlSeconds(headers["Weft-TTL"] ?? data);
    const delivery = nats.parseAckSubject(reply);
    if (delivery !== undefined) check(Number.isFinite(delivery.timeMs), "a delivery time that is not finite");
    nats.parseTimestamp(data);
    nats.parseVersion(version);
    nats.hasServerTtl(version);
    nats.lockHolder(bytes);
  },
};
