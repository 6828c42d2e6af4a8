/**
 * etcd2-only behaviour against a real etcd 3.4 with `--enable-v2` (the shared cases are in contract.ts):
 * keys written by other v2 clients, refresh semantics, TTL removal, index-0 guards, directory deletes,
 * credentials, and watches that stop when their consumer leaves.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import { Etcd2Store } from "../../stores/etcd2/index.ts";
import type { StoreOptions } from "../../stores/store.ts";
import { type EtcdServer, startEtcd } from "../harness/servers.ts";
import { probe } from "./watch-probe.ts";

const SLOW = 60_000;
let server: EtcdServer;
let unique = 0;
const stores: Etcd2Store[] = [];

function open(options: Partial<StoreOptions> = {}): Etcd2Store {
  const store = new Etcd2Store({ endpoints: [server.endpoint], ...options });
  stores.push(store);
  return store;
}

function freshPrefix(): string {
  unique += 1;
  return `/weft-etcd2/${process.pid}-${Date.now().toString(36)}-${unique}/`;
}

/** A raw v2 request, as `etcdctl` (v2) or another client would send it. */
async function raw(method: string, path: string, body?: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${server.endpoint}/v2/keys${path}`, {
    method,
    headers: { "content-type": "application/x-www-form-urlencoded" },
    ...(body === undefined ? {} : { body }),
  });
  return (await res.json()) as Record<string, unknown>;
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

beforeAll(async () => {
  server = await startEtcd({ enableV2: true });
}, SLOW);

afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await server?.stop();
}, SLOW);

describe("etcd2 driver", () => {
  test("etcd2 - a key written with a plain PUT value= (etcdctl set) is readable and listed as permanent", async () => {
    const p = freshPrefix();
    await raw("PUT", `${p}subnets/10.5.52.0-24`, `value=${encodeURIComponent('{"PublicIP":"10.0.0.5"}')}`);
    const store = open();
    const got = await store.get(`${p}subnets/10.5.52.0-24`);
    expect(got?.value).toBe('{"PublicIP":"10.0.0.5"}');
    expect(got?.expires).toBe(false);
    const listed = await store.list(`${p}subnets/`);
    expect(listed.entries.map((kv) => kv.key)).toEqual([`${p}subnets/10.5.52.0-24`]);
    expect(await store.list(`${p}nothing/`)).toEqual({ entries: [], revision: listed.revision });
  });

  test("etcd2 - renew restarts the full TTL, moves the revision, and does not wake a watch", async () => {
    const p = freshPrefix();
    const a = open();
    const created = await a.create(`${p}lease`, "v", { ttlSeconds: 30 });
    const watch = probe(a, p, created.revision);
    try {
      await Bun.sleep(1_100);
      expect((await a.get(`${p}lease`))?.ttlSeconds).toBeLessThan(30);
      const renewed = await a.renew(`${p}lease`);
      expect(renewed.revision > created.revision).toBe(true);
      expect(renewed.ttlSeconds).toBe(30);
      expect(renewed.value).toBe("v");
      await a.create(`${p}marker`, "m");
      await watch.until("the marker put", (es) => es.length >= 1);
      await Bun.sleep(100);
      expect(watch.events.map((e) => (e.type === "put" ? e.kv.key : e.type))).toEqual([`${p}marker`]);
    } finally {
      await watch.stop();
    }
  });

  test("etcd2 - renew of a key without TTL returns it unchanged and adds no TTL", async () => {
    const key = `${freshPrefix()}reservation`;
    const a = open();
    const created = await a.create(key, "r");
    const renewed = await a.renew(key);
    expect(renewed).toEqual(created);
    const got = await a.get(key);
    expect(got?.expires).toBe(false);
    expect(got?.revision).toBe(created.revision);
  });

  test("etcd2 - renew of a key another client wrote takes the TTL from the write event", async () => {
    const key = `${freshPrefix()}lease`;
    const writer = open();
    await writer.create(key, "v", { ttlSeconds: 40 });
    await Bun.sleep(1_100);
    const renewed = await open().renew(key);
    expect(renewed.ttlSeconds).toBe(40);
  });

  test("etcd2 - renew fails with Invalid when the full TTL cannot be known", async () => {
    const key = `${freshPrefix()}lease`;
    const writer = open();
    await writer.create(key, "v", { ttlSeconds: 40 });
    await writer.renew(key); // a refresh leaves no event behind to read the TTL from
    const err = await failure(open().renew(key));
    expect(isStoreError(err, StoreErrorCode.Invalid)).toBe(true);
    expect((err as Error).message).toContain("update");
    expect((await writer.get(key))?.expires).toBe(true);
  });

  test("etcd2 - update without a TTL makes a TTL key permanent; with one it sets it", async () => {
    const key = `${freshPrefix()}k`;
    const a = open();
    const created = await a.create(key, "v1", { ttlSeconds: 30 });
    const permanent = await a.update(key, "v2", { expectRevision: created.revision });
    expect(permanent.expires).toBe(false);
    expect((await a.get(key))?.expires).toBe(false);
    const leased = await a.update(key, "v3", { expectRevision: permanent.revision, ttlSeconds: 20 });
    expect(leased.expires).toBe(true);
    expect(leased.ttlSeconds).toBe(20);
  });

  test("etcd2 - expectRevision 0 is a conflict, never the unconditional write etcd makes of prevIndex=0", async () => {
    const key = `${freshPrefix()}k`;
    const a = open();
    const created = await a.create(key, "v1");
    const err = await failure(a.update(key, "v2", { expectRevision: 0n }));
    expect(isStoreError(err, StoreErrorCode.Conflict)).toBe(true);
    expect((err as Error).message).toContain(`revision ${created.revision}`);
    expect(isStoreError(await failure(a.delete(key, { expectRevision: 0n })), StoreErrorCode.Conflict)).toBe(
      true,
    );
    expect((await a.get(key))?.value).toBe("v1");
    expect(
      isStoreError(await failure(a.update(`${key}-absent`, "v", { expectRevision: 0n })), "CONFLICT"),
    ).toBe(true);
    expect(await a.get(`${key}-absent`)).toBeUndefined();
  });

  test("etcd2 - deleting a directory of watched keys yields a resync with what is left", async () => {
    const p = freshPrefix();
    const a = open();
    await a.create(`${p}sub/x`, "1");
    await a.create(`${p}sub/y`, "2");
    await a.create(`${p}keep`, "3");
    const { revision } = await a.list(p);
    const watch = probe(a, p, revision);
    try {
      await raw("DELETE", `${p}sub?dir=true&recursive=true`);
      await watch.until("a resync", (es) => es.some((e) => e.type === "resync"));
      const resync = watch.events.find((e) => e.type === "resync");
      expect(resync?.type === "resync" && resync.entries.map((kv) => kv.key)).toEqual([`${p}keep`]);
      await a.create(`${p}after`, "4");
      await watch.until("the put after", (es) =>
        es.some((e) => e.type === "put" && e.kv.key === `${p}after`),
      );
    } finally {
      await watch.stop();
    }
  });

  test("etcd2 - a consumer that leaves the loop stops the long polls", async () => {
    const p = freshPrefix();
    let polls = 0;
    const counting: typeof fetch = Object.assign(
      (input: string | URL | Request, init?: RequestInit) => {
        if (String(input).includes("wait=true")) polls += 1;
        return fetch(input, init);
      },
      { preconnect: fetch.preconnect },
    );
    const a = open({ fetch: counting });
    const { revision } = await a.list(p);
    const first = (async () => {
      for await (const event of a.watch(p, { afterRevision: revision })) return event;
      return undefined;
    })();
    await a.create(`${p}k0`, "v");
    expect((await first)?.type).toBe("put");
    await Bun.sleep(100);
    const before = polls;
    for (let i = 1; i <= 3; i++) await a.create(`${p}k${i}`, "v");
    await Bun.sleep(200);
    expect(polls).toBe(before);
  });

  test("etcd2 - credentials go in a Basic header and never into logs", async () => {
    const seen: string[] = [];
    const logs: string[] = [];
    const failing: typeof fetch = Object.assign(
      async (_input: string | URL | Request, init?: RequestInit) => {
        seen.push(new Headers(init?.headers).get("authorization") ?? "");
        throw new TypeError("connection refused");
      },
      { preconnect: fetch.preconnect },
    );
    const log = (message: string, fields?: Record<string, unknown>) =>
      logs.push(message + JSON.stringify(fields));
    const store = open({
      fetch: failing,
      username: "flannel",
      password: "s3cret-pässword",
      logger: { debug: log, info: log, warn: log },
    });
    const err = await failure(store.get("/k"));
    expect(isStoreError(err, StoreErrorCode.Unavailable)).toBe(true);
    expect(seen[0]).toBe(`Basic ${Buffer.from("flannel:s3cret-pässword").toString("base64")}`);
    const controller = new AbortController();
    const loop = (async () => {
      for await (const _ of store.watch("/p/", { afterRevision: 1n, signal: controller.signal })) {
        // no events: every request fails
      }
    })();
    const deadline = Date.now() + 5_000;
    while (logs.length < 2 && Date.now() < deadline) await Bun.sleep(20);
    controller.abort();
    await loop;
    expect(logs.length).toBeGreaterThanOrEqual(2);
    expect(logs.join("\n")).not.toContain("s3cret");
    expect(String((err as Error).message)).not.toContain("s3cret");
  });

  test("etcd2 - a poll the server ends with an empty body moves on to the index the watch started at", async () => {
    const waitIndexes: string[] = [];
    const fake: typeof fetch = Object.assign(
      async (input: string | URL | Request, init?: RequestInit) => {
        const url = new URL(String(input));
        waitIndexes.push(url.searchParams.get("waitIndex") ?? "");
        const headers = { "x-etcd-index": "2000", "content-type": "application/json" };
        if (waitIndexes.length === 1) return new Response("", { status: 200, headers });
        if (waitIndexes.length === 2) {
          const node = { key: "/p/k", value: "v", modifiedIndex: 2005, createdIndex: 2005 };
          return new Response(JSON.stringify({ action: "set", node }), { status: 200, headers });
        }
        const signal = init?.signal;
        return new Response(
          new ReadableStream({
            start: (c) => signal?.addEventListener("abort", () => c.error(signal.reason)),
          }),
          { status: 200, headers },
        );
      },
      { preconnect: fetch.preconnect },
    );
    const store = open({ fetch: fake });
    const watch = probe(store, "/p/", 5n);
    try {
      await watch.until("the put", (es) => es.length >= 1);
      const deadline = Date.now() + 2_000;
      while (waitIndexes.length < 3 && Date.now() < deadline) await Bun.sleep(5);
      expect(waitIndexes).toEqual(["6", "2001", "2006"]);
      expect(watch.events.map((e) => (e.type === "put" ? `${e.kv.key}@${e.kv.revision}` : e.type))).toEqual([
        "/p/k@2005",
      ]);
    } finally {
      await watch.stop();
    }
  });

  test("etcd2 - a server answering nonsense is a Protocol error naming the endpoint", async () => {
    const nonsense: typeof fetch = Object.assign(
      async () => new Response("<html>hello</html>", { status: 200, headers: { "x-etcd-index": "3" } }),
      { preconnect: fetch.preconnect },
    );
    const err = await failure(open({ fetch: nonsense }).get("/k"));
    expect(isStoreError(err, StoreErrorCode.Protocol)).toBe(true);
    expect((err as Error).message).toContain(server.endpoint);
  });

  test(
    "etcd2 - after the server is killed a watch retries from the same index and misses nothing",
    async () => {
      const p = freshPrefix();
      const logs: string[] = [];
      const warn = (message: string) => logs.push(message);
      const a = open({ logger: { debug() {}, info: warn, warn } });
      const b = open();
      const { revision } = await a.list(p);
      const watch = probe(a, p, revision);
      try {
        await b.create(`${p}k0`, "v0");
        await watch.until("the first put", (es) => es.length >= 1);
        await server.kill();
        await Bun.sleep(500);
        await server.start();
        for (let i = 1; i <= 3; i++) await b.create(`${p}k${i}`, `v${i}`);
        await watch.until("4 puts", (es) => es.length >= 4, 20_000);
        expect(watch.events.map((e) => (e.type === "put" ? e.kv.key : e.type))).toEqual(
          [0, 1, 2, 3].map((i) => `${p}k${i}`),
        );
        expect(logs.some((l) => l.includes("retrying"))).toBe(true);
      } finally {
        await watch.stop();
      }
    },
    SLOW,
  );
});
