/**
 * etcd-only cases of the `etcd` driver against a real etcd 3.4: what flanneld and etcdctl see of the
 * driver's keys and leases, and what the driver sees of theirs. The shared behaviour is in contract.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import { Etcd3Store } from "../../stores/etcd/index.ts";
import type { StoreLogger, StoreOptions, WatchEvent } from "../../stores/store.ts";
import { type EtcdServer, startEtcd } from "../harness/servers.ts";
import { probe } from "./watch-probe.ts";

const SLOW = 60_000;
const FLANNEL_LEASE = '{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"host-gw"}';
let unique = 0;

function freshPrefix(): string {
  unique += 1;
  return `/weft-etcd3/${process.pid}-${unique}/`;
}

/** The lease IDs etcdctl lists, in hex (its `-w json` prints int64 IDs as lossy JSON numbers). */
async function leaseIds(server: EtcdServer): Promise<string[]> {
  const lines = (await server.etcdctl("lease", "list")).trim().split("\n");
  return lines.filter((line) => /^[0-9a-f]+$/.test(line));
}

/** `etcdctl lease grant` → the lease ID in hex, as etcdctl's other commands take it. */
async function grant(server: EtcdServer, ttl: number): Promise<string> {
  const match = /lease ([0-9a-f]+) granted/.exec(await server.etcdctl("lease", "grant", String(ttl)));
  if (match?.[1] === undefined) throw new Error("etcdctl lease grant printed no ID");
  return match[1];
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** A fetch that counts the gateway paths it was asked for. */
function countingFetch(paths: string[]): typeof fetch {
  return ((input: string | URL | Request, init?: RequestInit) => {
    paths.push(new URL(String(input)).pathname);
    return fetch(input, init);
  }) as typeof fetch;
}

/** A fetch that hands the watch stream to the driver one byte per chunk. */
const bytewiseWatchFetch = (async (input: string | URL | Request, init?: RequestInit) => {
  const res = await fetch(input, init);
  if (!String(input).endsWith("/v3/watch") || res.body === null) return res;
  const reader = res.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) return controller.close();
      for (const byte of value) controller.enqueue(new Uint8Array([byte]));
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return new Response(body, { status: res.status, headers: res.headers });
}) as typeof fetch;

describe("etcd3 driver", () => {
  let server: EtcdServer;
  const stores: Etcd3Store[] = [];
  const open = (options: Partial<StoreOptions> = {}) => {
    const store = new Etcd3Store({ endpoints: [server.endpoint], ...options });
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    server = await startEtcd();
  }, SLOW);

  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await server?.stop();
  }, SLOW);

  test("etcd3 - a lease written by the driver is what flanneld writes, byte for byte, with an etcd lease", async () => {
    const key = "/coreos.com/network/subnets/10.5.52.0-24";
    const kv = await open().create(key, FLANNEL_LEASE, { ttlSeconds: 86_400 });
    expect(kv).toMatchObject({ key, value: FLANNEL_LEASE, expires: true, ttlSeconds: 86_400 });
    expect(await server.etcdctl("get", "--prefix", "/coreos.com/network/subnets")).toBe(
      `${key}\n${FLANNEL_LEASE}\n`,
    );
    const lease = BigInt(/"lease":(\d+)/.exec(await server.etcdctl("get", key, "-w", "json"))?.[1] ?? "0");
    expect(lease).not.toBe(0n);
    const ttl = await server.etcdctl("lease", "timetolive", lease.toString(16), "--keys");
    expect(ttl).toContain("granted with TTL(86400s)");
    expect(ttl).toContain(key);
    await server.etcdctl("del", key);
  });

  test("etcd3 - a key etcdctl puts with its own lease arrives in the watch with expires and its TTL", async () => {
    const p = freshPrefix();
    const store = open();
    const watch = probe(store, p, (await store.list(p)).revision);
    try {
      const lease = await grant(server, 60);
      await server.etcdctl("put", `--lease=${lease}`, `${p}from-etcdctl`, FLANNEL_LEASE);
      await server.etcdctl("put", `${p}reservation`, "kept");
      await watch.until("both puts", (es) => es.length >= 2);
      const [leased, reserved] = watch.events;
      if (leased?.type !== "put" || reserved?.type !== "put") throw new Error("expected two puts");
      expect(leased.kv).toMatchObject({ key: `${p}from-etcdctl`, value: FLANNEL_LEASE, expires: true });
      expect(leased.kv.ttlSeconds).toBeGreaterThan(0);
      expect(leased.kv.ttlSeconds).toBeLessThanOrEqual(60);
      expect(reserved.kv.expires).toBe(false);
      expect(reserved.kv.ttlSeconds).toBeUndefined();
      const listed = await store.list(p);
      expect(listed.entries.map((e) => [e.key, e.expires, e.ttlSeconds])).toEqual([
        [`${p}from-etcdctl`, true, undefined],
        [`${p}reservation`, false, undefined],
      ]);
    } finally {
      await watch.stop();
    }
  });

  test("etcd3 - a revoked lease is reported as expired, a plain delete as deleted", async () => {
    const p = freshPrefix();
    const store = open();
    const watch = probe(store, p, (await store.list(p)).revision);
    try {
      const lease = await grant(server, 60);
      await server.etcdctl("put", `--lease=${lease}`, `${p}revoked`, "a");
      await server.etcdctl("put", `--lease=${lease}`, `${p}deleted`, "b");
      await server.etcdctl("del", `${p}deleted`);
      await server.etcdctl("lease", "revoke", lease);
      await watch.until("two deletes", (es) => es.filter((e) => e.type === "delete").length >= 2);
      const deletes = watch.events.flatMap((e) => (e.type === "delete" ? [[e.key, e.reason]] : []));
      expect(deletes).toEqual([
        [`${p}deleted`, "deleted"],
        [`${p}revoked`, "expired"],
      ]);
    } finally {
      await watch.stop();
    }
  });

  test("etcd3 - a create that loses the race revokes its lease: no lease leaks", async () => {
    const p = freshPrefix();
    const before = new Set(await leaseIds(server));
    await server.etcdctl("put", `${p}taken`, "etcdctl was first");
    const err = await rejection(open().create(`${p}taken`, "mine", { ttlSeconds: 60 }));
    expect(isStoreError(err, StoreErrorCode.KeyExists)).toBe(true);
    expect((await leaseIds(server)).filter((id) => !before.has(id))).toEqual([]);

    const racers = Array.from({ length: 4 }, () => open());
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) =>
        (racers[i % racers.length] as Etcd3Store).create(`${p}race`, `r${i}`, { ttlSeconds: 60 }),
      ),
    );
    expect(results.filter((r) => r.status === "fulfilled").length).toBe(1);
    const added = (await leaseIds(server)).filter((id) => !before.has(id));
    expect(added.length).toBe(1);
    const holder = await server.etcdctl("lease", "timetolive", added[0] ?? "0", "--keys");
    expect(holder).toContain(`${p}race`);
  });

  test("etcd3 - update with a TTL moves the key to a new lease and revokes the old one unless shared", async () => {
    const p = freshPrefix();
    const store = open();
    const before = new Set(await leaseIds(server));
    const created = await store.create(`${p}own`, "v1", { ttlSeconds: 60 });
    const [first] = (await leaseIds(server)).filter((id) => !before.has(id));
    const updated = await store.update(`${p}own`, "v2", { expectRevision: created.revision, ttlSeconds: 30 });
    expect(updated).toMatchObject({ value: "v2", expires: true, ttlSeconds: 30 });
    const after = (await leaseIds(server)).filter((id) => !before.has(id));
    expect(after.length).toBe(1);
    expect(after).not.toContain(first);

    const shared = await grant(server, 60);
    await server.etcdctl("put", `--lease=${shared}`, `${p}mine`, "m");
    await server.etcdctl("put", `--lease=${shared}`, `${p}other-tool`, "o");
    const mine = await store.get(`${p}mine`);
    await store.update(`${p}mine`, "m2", { expectRevision: mine?.revision ?? 0n, ttlSeconds: 60 });
    expect(await leaseIds(server)).toContain(shared);
    expect((await store.get(`${p}other-tool`))?.value).toBe("o");

    const permanent = await store.update(`${p}own`, "v3", { expectRevision: updated.revision });
    expect(permanent.expires).toBe(false);
    expect((await store.get(`${p}own`))?.expires).toBe(false);
    expect(await leaseIds(server)).not.toContain(after[0]);
  });

  test("etcd3 - a conflicting update revokes the lease it granted", async () => {
    const p = freshPrefix();
    const store = open();
    const created = await store.create(`${p}k`, "v1");
    await store.update(`${p}k`, "v2", { expectRevision: created.revision });
    const before = await leaseIds(server);
    const err = await rejection(
      store.update(`${p}k`, "v3", { expectRevision: created.revision, ttlSeconds: 60 }),
    );
    expect(isStoreError(err, StoreErrorCode.Conflict)).toBe(true);
    expect(await leaseIds(server)).toEqual(before);
  });

  test("etcd3 - renew restarts the lease TTL and leaves a reservation as it is", async () => {
    const p = freshPrefix();
    const store = open();
    await store.create(`${p}leased`, "v", { ttlSeconds: 5 });
    await Bun.sleep(1_500);
    const renewed = await store.renew(`${p}leased`);
    expect(renewed).toMatchObject({ key: `${p}leased`, value: "v", expires: true, ttlSeconds: 5 });
    await store.create(`${p}reserved`, "r");
    const reserved = await store.renew(`${p}reserved`);
    expect(reserved).toMatchObject({ value: "r", expires: false });
    expect(reserved.ttlSeconds).toBeUndefined();
    expect(isStoreError(await rejection(store.renew(`${p}missing`)), StoreErrorCode.KeyNotFound)).toBe(true);
  });

  test("etcd3 - list is one range request however many leased keys it returns", async () => {
    const p = freshPrefix();
    const writer = open();
    for (let i = 0; i < 20; i++)
      await writer.create(`${p}k${String(i).padStart(2, "0")}`, `v${i}`, { ttlSeconds: 60 });
    const paths: string[] = [];
    const listed = await open({ fetch: countingFetch(paths) }).list(p);
    expect(listed.entries.length).toBe(20);
    expect(listed.entries.every((e) => e.expires)).toBe(true);
    expect(paths).toEqual(["/v3/kv/range"]);
  });

  test("etcd3 - a watch stream arriving one byte at a time still yields every event intact", async () => {
    const p = freshPrefix();
    const store = open({ fetch: bytewiseWatchFetch });
    const watch = probe(store, p, (await store.list(p)).revision);
    try {
      const writer = open();
      const values = ["雪 ✓ 🚀", '{"a":"}{\\""}', FLANNEL_LEASE];
      for (const [i, value] of values.entries()) await writer.create(`${p}k${i}`, value, { ttlSeconds: 60 });
      await writer.delete(`${p}k0`);
      await watch.until("four events", (es) => es.length >= 4, 15_000);
      const seen = watch.events.map((e: WatchEvent) => (e.type === "put" ? e.kv.value : e.type));
      expect(seen).toEqual([...values, "delete"]);
    } finally {
      await watch.stop();
    }
  });

  test("etcd3 - invalid keys and TTLs are rejected before any request", async () => {
    const paths: string[] = [];
    const store = open({ fetch: countingFetch(paths) });
    expect(isStoreError(await rejection(store.get("")), StoreErrorCode.Invalid)).toBe(true);
    for (const ttlSeconds of [0, -1, Number.NaN, 1e10]) {
      expect(
        isStoreError(await rejection(store.create("/k", "v", { ttlSeconds })), StoreErrorCode.Invalid),
      ).toBe(true);
    }
    expect(paths).toEqual([]);
  });
});

describe("etcd3 driver with authentication", () => {
  let server: EtcdServer;
  const messages: string[] = [];
  const logger: StoreLogger = {
    debug: (m, f) => messages.push(`${m} ${JSON.stringify(f)}`),
    info: (m, f) => messages.push(`${m} ${JSON.stringify(f)}`),
    warn: (m, f) => messages.push(`${m} ${JSON.stringify(f)}`),
  };

  beforeAll(async () => {
    server = await startEtcd();
    await server.etcdctl("user", "add", "root:root-secret-pw");
    await server.etcdctl("user", "grant-role", "root", "root");
    await server.etcdctl("user", "add", "weft:weft-secret-pw");
    await server.etcdctl("role", "add", "weft");
    await server.etcdctl("role", "grant-permission", "--prefix=true", "weft", "readwrite", "/weft/");
    await server.etcdctl("user", "grant-role", "weft", "weft");
    await server.etcdctl("auth", "enable");
  }, SLOW);

  afterAll(async () => {
    await server?.stop();
  }, SLOW);

  test(
    "etcd3 - with credentials it reads, writes and watches, and survives its token being invalidated",
    async () => {
      const paths: string[] = [];
      const store = new Etcd3Store({
        endpoints: [server.endpoint],
        username: "weft",
        password: "weft-secret-pw",
        logger,
        fetch: countingFetch(paths),
      });
      try {
        const p = "/weft/auth/";
        const watch = probe(store, p, (await store.list(p)).revision);
        try {
          await store.create(`${p}a`, "1", { ttlSeconds: 30 });
          await watch.until("the first put", (es) => es.length >= 1);
          // Disabling auth drops every token; after enabling it again the old token is invalid.
          await server.etcdctl("--user=root:root-secret-pw", "auth", "disable");
          await server.etcdctl("auth", "enable");
          expect((await store.get(`${p}a`))?.value).toBe("1");
          await store.create(`${p}b`, "2");
          await watch.until("the second put", (es) => es.length >= 2, 15_000);
          expect(watch.error).toBeUndefined();
          expect(paths.filter((path) => path === "/v3/auth/authenticate").length).toBeGreaterThanOrEqual(2);
        } finally {
          await watch.stop();
        }
        const denied = await rejection(store.get("/elsewhere"));
        expect(isStoreError(denied, StoreErrorCode.Auth)).toBe(true);
      } finally {
        await store.close();
      }
      expect(messages.join("\n")).not.toContain("secret");
    },
    SLOW,
  );

  test("etcd3 - wrong credentials fail calls and end a watch with an Auth error", async () => {
    const store = new Etcd3Store({
      endpoints: [server.endpoint],
      username: "weft",
      password: "wrong-secret",
      logger,
    });
    try {
      const err = await rejection(store.get("/weft/x"));
      expect(isStoreError(err, StoreErrorCode.Auth)).toBe(true);
      expect((err as Error).message).not.toContain("wrong-secret");
      const watch = probe(store, "/weft/", 1n);
      const deadline = Date.now() + 10_000;
      while (!watch.finished && Date.now() < deadline) await Bun.sleep(10);
      expect(watch.finished).toBe(true);
      expect(isStoreError(watch.error, StoreErrorCode.Auth)).toBe(true);
    } finally {
      await store.close();
    }
    expect(messages.join("\n")).not.toContain("secret");
  });
});
