/**
 * Consul-specific behaviour of the consul driver against a real Consul server (the shared contract
 * lives in contract.ts): sessions per key, lost sessions, reservations, takeovers, the server-side
 * fallback for short TTLs, tombstone-placed deletes, index rules, and ACL tokens.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ConsulStore } from "../../stores/consul/index.ts";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import type { Store, WatchEvent } from "../../stores/store.ts";
import { type ConsulServer, startConsul } from "../harness/consul.ts";
import { probe } from "./watch-probe.ts";

const SLOW = 60_000;
setDefaultTimeout(SLOW);
let unique = 0;
const freshPrefix = () => `/weft-consul/${process.pid}-${Date.now().toString(36)}-${++unique}/`;

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** A raw Consul HTTP call (the test's own view of the server). */
async function raw(server: ConsulServer, path: string, init: RequestInit = {}): Promise<Response> {
  const token = server.managementToken;
  return fetch(`${server.endpoint}${path}`, {
    ...init,
    headers: token === undefined ? {} : { "x-consul-token": token },
  });
}

async function sessionOf(server: ConsulServer, key: string): Promise<string | undefined> {
  const res = await raw(server, `/v1/kv${key}`);
  if (res.status === 404) return undefined;
  const [entry] = (await res.json()) as { Session?: string }[];
  return entry?.Session;
}

async function sessionInfo(server: ConsulServer, id: string): Promise<Record<string, unknown> | undefined> {
  const sessions = (await (await raw(server, `/v1/session/info/${id}`)).json()) as
    | Record<string, unknown>[]
    | null;
  return sessions?.[0];
}

const line = (e: WatchEvent) =>
  e.type === "put"
    ? `put ${e.kv.key}`
    : e.type === "delete"
      ? `delete(${e.reason}) ${e.key}`
      : `resync(${e.cause})`;

describe("consul driver", () => {
  let server: ConsulServer;
  let a: Store;
  let b: Store;

  // The first run on a machine builds Consul (about 10 minutes on 2 cores) before the server starts.
  beforeAll(async () => {
    server = await startConsul();
    a = new ConsulStore({ endpoints: [server.endpoint] });
    b = new ConsulStore({ endpoints: [server.endpoint] });
  }, 20 * 60_000);

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await server?.stop();
  }, SLOW);

  test("consul - a TTL key has a session of its own: half the TTL, delete behaviour, no checks, 1 ms lock delay", async () => {
    const p = freshPrefix();
    const leased = await a.create(`${p}leased`, "v", { ttlSeconds: 60 });
    expect([leased.expires, leased.ttlSeconds]).toEqual([true, 60]);
    const id = await sessionOf(server, `${p}leased`);
    expect(await sessionInfo(server, id ?? "")).toMatchObject({
      TTL: "30000ms",
      Behavior: "delete",
      NodeChecks: [],
      LockDelay: 1_000_000,
    });
    await a.create(`${p}other`, "v", { ttlSeconds: 60 });
    expect(await sessionOf(server, `${p}other`)).not.toBe(id);
    const reserved = await a.create(`${p}reserved`, "r");
    expect(reserved.expires).toBe(false);
    expect(await sessionOf(server, `${p}reserved`)).toBeUndefined();
  });

  test("consul - a lost session takes its key along: watchers see an expiry and renew says KeyNotFound", async () => {
    const p = freshPrefix();
    const watch = probe(b, p, (await b.list(p)).revision);
    try {
      await a.create(`${p}lost`, "v", { ttlSeconds: 60 });
      await a.create(`${p}dropped`, "v", { ttlSeconds: 60 });
      // A key that comes and goes between two reads is invisible to Consul watches: see both first.
      await watch.until("both puts", (es) => es.length >= 2);
      const id = await sessionOf(server, `${p}lost`);
      expect((await raw(server, `/v1/session/destroy/${id}`, { method: "PUT" })).status).toBe(200);
      await a.delete(`${p}dropped`);
      await watch.until("both deletes", (es) => es.filter((e) => e.type === "delete").length === 2);
      expect(watch.events.map(line)).toEqual([
        `put ${p}lost`,
        `put ${p}dropped`,
        `delete(expired) ${p}lost`,
        `delete(deleted) ${p}dropped`,
      ]);
      const err = await rejection(a.renew(`${p}lost`));
      expect(isStoreError(err, StoreErrorCode.KeyNotFound)).toBe(true);
      expect(await a.get(`${p}lost`)).toBeUndefined();
    } finally {
      await watch.stop();
    }
  });

  test("consul - updates move a key between sessions and to none, ending the sessions left empty", async () => {
    const key = `${freshPrefix()}k`;
    const created = await a.create(key, "r");
    const leased = await a.update(key, "l1", { expectRevision: created.revision, ttlSeconds: 30 });
    const first = await sessionOf(server, key);
    expect((await sessionInfo(server, first ?? ""))?.TTL).toBe("15000ms");
    const longer = await a.update(key, "l2", { expectRevision: leased.revision, ttlSeconds: 60 });
    const second = await sessionOf(server, key);
    expect(second).not.toBe(first);
    expect(await sessionInfo(server, first ?? "")).toBeUndefined();
    const same = await a.update(key, "l3", { expectRevision: longer.revision, ttlSeconds: 60 });
    expect(await sessionOf(server, key)).toBe(second);
    const permanent = await a.update(key, "r2", { expectRevision: same.revision });
    expect(permanent.expires).toBe(false);
    expect(await sessionOf(server, key)).toBeUndefined();
    expect(await sessionInfo(server, second ?? "")).toBeUndefined();
    expect(await b.get(key)).toMatchObject({ value: "r2", expires: false });
    expect(await a.renew(key)).toMatchObject({ value: "r2", expires: false, revision: permanent.revision });
  });

  test("consul - another client's update takes a lease over; the old holder's renew says KeyNotFound", async () => {
    const key = `${freshPrefix()}k`;
    const mine = await a.create(key, "a", { ttlSeconds: 60 });
    const theirs = await b.update(key, "b", { expectRevision: mine.revision, ttlSeconds: 60 });
    const err = await rejection(a.renew(key));
    expect(isStoreError(err, StoreErrorCode.KeyNotFound)).toBe(true);
    expect(await b.renew(key)).toMatchObject({ value: "b", revision: theirs.revision, expires: true });
  });

  test(
    "consul - a short TTL outlives a closed writer only until the server reaps the shortest session",
    async () => {
      const key = `${freshPrefix()}short`;
      const writer = new ConsulStore({ endpoints: [server.endpoint] });
      await writer.create(key, "v", { ttlSeconds: 2 });
      const id = await sessionOf(server, key);
      expect((await sessionInfo(server, id ?? ""))?.TTL).toBe("10000ms");
      await writer.close();
      await Bun.sleep(4_000);
      expect((await b.get(key))?.value).toBe("v");
      const deadline = Date.now() + 25_000;
      while ((await b.get(key)) !== undefined && Date.now() < deadline) await Bun.sleep(250);
      expect(await b.get(key)).toBeUndefined();
    },
    SLOW,
  );

  test("consul - keys deleted in one transaction arrive as deletes at its index, in key order", async () => {
    const p = freshPrefix();
    for (const k of ["c", "a", "b", "keep"]) await a.create(`${p}${k}`, k);
    const watch = probe(b, p, (await b.list(p)).revision);
    try {
      await Bun.sleep(200);
      const ops = ["c", "a", "b"].map((k) => ({ KV: { Verb: "delete", Key: `${p.slice(1)}${k}` } }));
      expect((await raw(server, "/v1/txn", { method: "PUT", body: JSON.stringify(ops) })).status).toBe(200);
      await watch.until("three deletes", (es) => es.length >= 3);
      await Bun.sleep(200);
      expect(watch.events.map(line)).toEqual(["a", "b", "c"].map((k) => `delete(deleted) ${p}${k}`));
      const revisions = new Set(watch.events.map((e) => (e.type === "delete" ? e.revision : 0n)));
      expect(revisions.size).toBe(1);
      expect([...revisions][0] ?? 0n).toBe((await b.list(p)).revision);
    } finally {
      await watch.stop();
    }
  });

  test("consul - a key deleted and created again between two reads yields a gap resync", async () => {
    const p = freshPrefix();
    await a.create(`${p}k`, "old");
    const watch = probe(b, p, (await b.list(p)).revision);
    try {
      await Bun.sleep(200);
      const key = `${p.slice(1)}k`;
      const value = Buffer.from("new").toString("base64");
      const ops = [{ KV: { Verb: "delete", Key: key } }, { KV: { Verb: "set", Key: key, Value: value } }];
      expect((await raw(server, "/v1/txn", { method: "PUT", body: JSON.stringify(ops) })).status).toBe(200);
      await watch.until("a resync", (es) => es.some((e) => e.type === "resync"));
      const resync = watch.events.find((e) => e.type === "resync");
      expect(resync).toMatchObject({ cause: "gap", entries: [{ key: `${p}k`, value: "new" }] });
    } finally {
      await watch.stop();
    }
  });

  test("consul - a watch from a revision this client never listed resyncs only if the prefix moved on", async () => {
    const p = freshPrefix();
    await a.create(`${p}k1`, "1");
    const { revision } = await a.list(p);
    const fresh = new ConsulStore({ endpoints: [server.endpoint] });
    const quiet = probe(fresh, p, revision);
    try {
      await Bun.sleep(200);
      await a.create(`${p}k2`, "2");
      await quiet.until("the put", (es) => es.length >= 1);
      expect(quiet.events.map(line)).toEqual([`put ${p}k2`]);
      const late = probe(new ConsulStore({ endpoints: [server.endpoint] }), p, revision);
      try {
        await late.until("a resync", (es) => es.length >= 1);
        expect(late.events[0]).toMatchObject({ type: "resync", cause: "compacted", entries: [{}, {}] });
      } finally {
        await late.stop();
      }
    } finally {
      await quiet.stop();
      await fresh.close();
    }
  });
});

describe("consul driver on a restored server", () => {
  let server: ConsulServer;

  beforeAll(async () => {
    server = await startConsul();
  }, SLOW);

  afterAll(async () => {
    await server?.stop();
  }, SLOW);

  test(
    "consul - a snapshot restore sends the index backwards: the watch resyncs to the restored contents",
    async () => {
      const store = new ConsulStore({ endpoints: [server.endpoint] });
      const p = freshPrefix();
      try {
        await store.create(`${p}kept`, "1");
        const snapshot = await (await raw(server, "/v1/snapshot")).arrayBuffer();
        await store.create(`${p}later`, "2");
        await store.create(`${p}later2`, "3");
        const watch = probe(store, p, (await store.list(p)).revision);
        try {
          await Bun.sleep(300);
          const restored = await raw(server, "/v1/snapshot", { method: "PUT", body: snapshot });
          expect(restored.status).toBe(200);
          await watch.until("a resync", (es) => es.some((e) => e.type === "resync"), 15_000);
          expect(watch.events.map(line)).toEqual(["resync(reconnect)"]);
          expect(watch.events[0]).toMatchObject({ entries: [{ key: `${p}kept`, value: "1" }] });
          await store.create(`${p}after`, "4");
          await watch.until("the put after the restore", (es) => es.length >= 2);
          expect(watch.events.map(line)).toEqual(["resync(reconnect)", `put ${p}after`]);
        } finally {
          await watch.stop();
        }
      } finally {
        await store.close();
      }
    },
    SLOW,
  );
});

describe("consul driver with ACLs", () => {
  let server: ConsulServer;

  beforeAll(async () => {
    server = await startConsul({ acl: true });
  }, SLOW);

  afterAll(async () => {
    await server?.stop();
  }, SLOW);

  test("consul - the token goes out as X-Consul-Token; a refusal or a partial listing is an Auth error", async () => {
    const token = server.managementToken ?? "";
    const p = freshPrefix();
    const rules = `key_prefix "${p.slice(1)}mine/" { policy = "write" }\nsession_prefix "" { policy = "write" }`;
    const policy = await raw(server, "/v1/acl/policy", {
      method: "PUT",
      body: JSON.stringify({ Name: `weft-${unique}`, Rules: rules }),
    });
    expect(policy.status).toBe(200);
    const issued = await raw(server, "/v1/acl/token", {
      method: "PUT",
      body: JSON.stringify({ Policies: [{ Name: `weft-${unique}` }] }),
    });
    const { SecretID } = (await issued.json()) as { SecretID: string };
    const anonymous = new ConsulStore({ endpoints: [server.endpoint] });
    const trusted = new ConsulStore({ endpoints: [server.endpoint], token });
    const limited = new ConsulStore({ endpoints: [server.endpoint], token: SecretID });
    try {
      const refused = [
        () => anonymous.create(`${p}k`, "v"),
        () => anonymous.get(`${p}k`),
        () => anonymous.create(`${p}t`, "v", { ttlSeconds: 30 }),
        () => limited.create(`${p}other`, "v"),
      ];
      for (const call of refused) {
        const err = await rejection(call());
        expect(isStoreError(err, StoreErrorCode.Auth)).toBe(true);
        expect((err as Error).message).toContain("CONSUL_HTTP_TOKEN");
      }
      const created = await trusted.create(`${p}k`, "v", { ttlSeconds: 30 });
      expect((await trusted.renew(`${p}k`)).revision).toBe(created.revision);
      await limited.create(`${p}mine/k`, "m", { ttlSeconds: 30 });
      expect((await limited.list(`${p}mine/`)).entries.map((e) => e.value)).toEqual(["m"]);
      expect((await trusted.list(p)).entries.map((e) => e.value)).toEqual(["v", "m"]);
      // The limited token sees only part of p: a listing that silently drops keys is refused.
      const partial = await rejection(limited.list(p));
      expect(isStoreError(partial, StoreErrorCode.Auth)).toBe(true);
    } finally {
      await anonymous.close();
      await trusted.close();
      await limited.close();
    }
  });

  test("consul - CONSUL_HTTP_TOKEN is the token when none is given", async () => {
    const saved = process.env.CONSUL_HTTP_TOKEN;
    process.env.CONSUL_HTTP_TOKEN = server.managementToken ?? "";
    const store = new ConsulStore({ endpoints: [server.endpoint] });
    try {
      expect((await store.list(freshPrefix())).entries).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.CONSUL_HTTP_TOKEN;
      else process.env.CONSUL_HTTP_TOKEN = saved;
      await store.close();
    }
  });
});

describe("consul driver on a fake transport", () => {
  test("consul - every request carries the token header and no error repeats the token", async () => {
    const token = "s3cr3t-0000-4000-8000-token";
    const seen: (string | null)[] = [];
    const fake = (async (_url: string | URL | Request, init?: RequestInit) => {
      seen.push(new Headers(init?.headers).get("x-consul-token"));
      return new Response(`Permission denied: token with AccessorID 'x' lacks permission 'key:read'`, {
        status: 403,
      });
    }) as unknown as typeof fetch;
    const store = new ConsulStore({ endpoints: ["http://consul.invalid:8500"], token, fetch: fake });
    try {
      const errors = [
        await rejection(store.get("/k")),
        await rejection(store.create("/k", "v", { ttlSeconds: 30 })),
        await rejection(store.delete("/k")),
      ];
      for (const err of errors) {
        expect(isStoreError(err, StoreErrorCode.Auth)).toBe(true);
        expect(String((err as Error).message)).not.toContain(token);
      }
      expect(seen.length).toBe(3);
      expect(seen.every((h) => h === token)).toBe(true);
    } finally {
      await store.close();
    }
  });
});
