/**
 * NATS-only cases of the `nats` driver against real servers: how expiry works on a server with
 * per-message TTL (v2.15.2) and on Debian's 2.9.10 (swept by one agent at a time), what the bucket and
 * its messages look like to other NATS tools, the watch's periodic re-list, and credentials. The
 * shared behaviour is in contract.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import { DEFAULT_BUCKET, streamName, subjectFor, sweeperLockSubject } from "../../stores/nats/codec.ts";
import { natsDriver } from "../../stores/nats/driver.ts";
import { NatsStore, type NatsStoreInternals } from "../../stores/nats/index.ts";
import type { StoreOptions, WatchEvent } from "../../stores/store.ts";
import { type NatsServer, startNats } from "../harness/nats.ts";
import { FakeClock, until } from "./fixtures/fake-clock.ts";
import { probe } from "./watch-probe.ts";

const SLOW = 60_000;
let unique = 0;

function freshPrefix(): string {
  unique += 1;
  return `/weft-nats/${process.pid}-${unique}/`;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** The last stored message of `key` in the default bucket, read with a plain NATS client. */
async function rawLast(nc: NatsConnection, key: string, bucket = DEFAULT_BUCKET) {
  const jsm = await jetstreamManager(nc);
  return jsm.streams.getMessage(streamName(bucket), { last_by_subj: subjectFor(bucket, key) });
}

function deletes(events: readonly WatchEvent[], key: string): Extract<WatchEvent, { type: "delete" }>[] {
  return events.filter(
    (e): e is Extract<WatchEvent, { type: "delete" }> => e.type === "delete" && e.key === key,
  );
}

describe("nats driver on nats-server 2.15", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  const stores: NatsStore[] = [];
  const open = (internals: NatsStoreInternals = {}, options: Partial<StoreOptions> = {}) => {
    const store = new NatsStore({ endpoints: [server.endpoint], ...options }, internals);
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    server = await startNats({ flavour: "2.15" });
    nc = await connect({ servers: server.endpoint });
  }, SLOW);

  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await nc?.close();
    await server?.stop();
  }, SLOW);

  test("nats - version detection: 2.15 expires keys itself, and the bucket is set up for it", async () => {
    const store = open();
    expect(store.capabilities).toEqual(natsDriver.capabilities); // not connected yet: the declared values
    expect(store.capabilities.serverTtl).toBe(false);
    expect(await store.server()).toEqual({ version: "2.15.2", serverTtl: true });
    expect(store.capabilities).toEqual({
      serverTtl: true,
      multiHost: true,
      expiryReason: true,
      minTtlSeconds: 1,
    });
    // Connected, it differs from its driver's declaration only in what the driver says it learns.
    const learned = natsDriver.learnedOnConnect as readonly string[];
    const changed = Object.entries(store.capabilities)
      .filter(([key, value]) => natsDriver.capabilities[key as keyof typeof store.capabilities] !== value)
      .map(([key]) => key);
    expect(changed.every((key) => learned.includes(key))).toBe(true);
    const { config } = await (await jetstreamManager(nc)).streams.info(streamName(DEFAULT_BUCKET));
    expect(config.max_msgs_per_subject).toBe(1);
    expect(config.allow_msg_ttl).toBe(true);
    expect(config.subject_delete_marker_ttl ?? 0).toBeGreaterThan(0);
    expect(config.max_age).toBe(0);
  });

  test(
    "nats - per-key TTL: the server's MaxAge marker reaches a watch as delete/expired, no agent sweeps",
    async () => {
      const store = open();
      const p = freshPrefix();
      const watch = probe(store, p, (await store.list(p)).revision);
      try {
        await store.create(`${p}leased`, "v", { ttlSeconds: 1 });
        const written = await rawLast(nc, `${p}leased`);
        expect(written?.header.get("Nats-TTL")).toBe("1s");
        await watch.until("the expiry", (es) => deletes(es, `${p}leased`).length > 0, 10_000);
        expect(deletes(watch.events, `${p}leased`).map((e) => e.reason)).toEqual(["expired"]);
        const marker = await rawLast(nc, `${p}leased`);
        expect(marker?.header.get("Nats-Marker-Reason")).toBe("MaxAge");
        // Nobody took the sweeper lock: on this server no agent sweeps.
        const jsm = await jetstreamManager(nc);
        expect(
          await jsm.streams.getMessage(streamName(DEFAULT_BUCKET), {
            last_by_subj: sweeperLockSubject(DEFAULT_BUCKET),
          }),
        ).toBeNull();
      } finally {
        await watch.stop();
      }
    },
    SLOW,
  );

  test("nats - a payload within the value limit that is no UTF-8 is left out by the length it decodes to", async () => {
    const store = open();
    const p = freshPrefix();
    const start = await store.list(p);
    const watch = probe(store, p, start.revision, { maxValueBytes: 4096 });
    try {
      // 2,000 bytes of 0xFF written by another tool: each decodes to U+FFFD, three bytes.
      await jetstream(nc).publish(subjectFor(DEFAULT_BUCKET, `${p}bytes`), new Uint8Array(2_000).fill(0xff));
      await watch.until("the put", (es) => es.some((e) => e.type === "put"));
      const put = watch.events.find((e) => e.type === "put");
      expect(put?.type === "put" && [put.kv.value, put.kv.omittedBytes]).toEqual(["", 6_000]);
      const listed = await store.list(p, { maxValueBytes: 4096 });
      expect(listed.entries.map((e) => [e.value, e.omittedBytes])).toEqual([["", 6_000]]);
    } finally {
      await watch.stop();
    }
  });

  test("nats - renew republishes the value with Nats-TTL; a key without TTL carries none", async () => {
    const store = open();
    const p = freshPrefix();
    const created = await store.create(`${p}leased`, "lease", { ttlSeconds: 30 });
    const renewed = await store.renew(`${p}leased`);
    expect(renewed.revision > created.revision).toBe(true);
    expect(renewed).toMatchObject({ value: "lease", expires: true, ttlSeconds: 30 });
    const raw = await rawLast(nc, `${p}leased`);
    expect(raw?.seq).toBe(Number(renewed.revision));
    expect(raw?.header.get("Nats-TTL")).toBe("30s");
    expect(new TextDecoder().decode(raw?.data)).toBe("lease");
    await store.create(`${p}reserved`, "r");
    expect((await rawLast(nc, `${p}reserved`))?.header.get("Nats-TTL")).toBe("");
    const kept = await store.renew(`${p}reserved`);
    expect(kept).toMatchObject({ value: "r", expires: false });
  });

  test("nats - keys are readable subjects of the bucket for other NATS tools", async () => {
    const store = open();
    const key = "/coreos.com/network/subnets/10.5.53.0-24&fd00:10:244::-64";
    const value = '{"PublicIP":"10.0.0.5","BackendType":"vxlan"}';
    await store.delete(key);
    await store.create(key, value);
    const kv = await new Kvm(nc).open(DEFAULT_BUCKET);
    const entry = await kv.get(
      "=.coreos=2Ecom.network.subnets.10=2E5=2E53=2E0-24=26fd00=3A10=3A244=3A=3A-64",
    );
    expect(entry?.string()).toBe(value);
  });

  test("nats - an existing bucket with more history and no TTL support is adjusted on connect", async () => {
    const bucket = `adjust${process.pid}`;
    await new Kvm(nc).create(bucket, { history: 5 });
    const store = open({ bucket });
    await store.server();
    const { config } = await (await jetstreamManager(nc)).streams.info(streamName(bucket));
    expect(config.max_msgs_per_subject).toBe(1);
    expect(config.allow_msg_ttl).toBe(true);
    expect(config.subject_delete_marker_ttl ?? 0).toBeGreaterThan(0);
  });

  test("nats - --nats-replicas: the bucket the store creates gets it; 3 on a single server is refused naming the flag", async () => {
    const jsm = await jetstreamManager(nc);
    const one = open({ bucket: `rep1x${process.pid}` }, { replicas: 1 });
    await one.server();
    expect((await jsm.streams.info(streamName(`rep1x${process.pid}`))).config.num_replicas).toBe(1);

    const bucket = `rep3x${process.pid}`;
    const three = open({ bucket }, { replicas: 3 });
    const err = await rejection(three.server());
    expect(isStoreError(err, StoreErrorCode.Invalid)).toBe(true);
    expect((err as Error).message).toContain("--nats-replicas=3");
    expect((err as Error).message).toContain(`bucket ${bucket}`);
    expect((err as Error).message).toContain(server.endpoint);
    // Nothing was created with another replica count instead.
    expect(await rejection(jsm.streams.info(streamName(bucket)))).toBeInstanceOf(Error);

    for (const bad of [0, 6, 2.5]) {
      let thrown: unknown;
      try {
        new NatsStore({ endpoints: [server.endpoint], replicas: bad });
      } catch (e) {
        thrown = e;
      }
      expect(isStoreError(thrown, StoreErrorCode.Invalid)).toBe(true);
      expect((thrown as Error).message).toStartWith(
        `--nats-replicas=${bad}: must be a whole number from 1 to 5`,
      );
    }
  });

  test("nats - --nats-replicas: an existing bucket with another replica count is used as it is, with one warning", async () => {
    const bucket = `repkeep${process.pid}`;
    await new Kvm(nc).create(bucket, { history: 1, replicas: 1 });
    const warnings: string[] = [];
    const logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (message: string, fields?: Record<string, unknown>) =>
        void warnings.push(`${message} ${JSON.stringify(fields)}`),
    };
    const store = open({ bucket }, { replicas: 2, logger });
    const p = freshPrefix();
    await store.create(`${p}k`, "v");
    expect((await store.get(`${p}k`))?.value).toBe("v");
    expect((await store.list(p)).entries.length).toBe(1);
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info(streamName(bucket))).config.num_replicas).toBe(1);
    const replicaWarnings = warnings.filter((w) => w.includes("replica"));
    expect(replicaWarnings.length).toBe(1);
    expect(replicaWarnings[0]).toContain('"replicas":1');
    expect(replicaWarnings[0]).toContain('"requested":2');
  });

  test(
    "nats - a watch's re-list and its silent-feed watchdog run on the injected clock",
    async () => {
      const clock = new FakeClock({ start: Date.now() });
      const lines: string[] = [];
      const logger = {
        debug: () => undefined,
        info: () => undefined,
        warn: (message: string, fields?: Record<string, unknown>) =>
          void lines.push(`${message} ${JSON.stringify(fields)}`),
      };
      const store = open({ clock, relistMs: 300 }, { logger });
      const p = freshPrefix();
      const watch = probe(store, p, (await store.list(p)).revision);
      try {
        await store.create(`${p}kept`, "1");
        await store.create(`${p}purged`, "2");
        await watch.until("both puts", (es) => es.length >= 2);
        const jsm = await jetstreamManager(nc);
        await jsm.streams.purge(streamName(DEFAULT_BUCKET), {
          filter: subjectFor(DEFAULT_BUCKET, `${p}purged`),
        });
        // Three re-list intervals of real time pass, none of the injected clock: no re-list.
        await Bun.sleep(900);
        expect(watch.events.some((e) => e.type === "resync")).toBe(false);
        await clock.advance(300);
        await watch.until("a resync", (es) => es.some((e) => e.type === "resync"), 10_000);
        const resync = watch.events.find((e) => e.type === "resync");
        if (resync?.type !== "resync") throw new Error("no resync");
        expect(resync.cause).toBe("gap");
        expect(resync.entries.map((kv) => kv.key)).toEqual([`${p}kept`]);
        // The feed's heartbeats are judged on the same clock: 3 s of it without one reopens the feed.
        expect(lines.some((l) => l.includes("sent nothing"))).toBe(false);
        await clock.advance(4_000);
        await until("the watchdog", () =>
          lines.some((l) => l.includes("the watch feed sent nothing for 3 s")),
        );
      } finally {
        await watch.stop();
      }
    },
    SLOW,
  );

  test(
    "nats - a key removed behind the watch's back (a raw purge) is put right by the periodic re-list",
    async () => {
      const store = open({ relistMs: 300 });
      const p = freshPrefix();
      const watch = probe(store, p, (await store.list(p)).revision);
      try {
        await store.create(`${p}kept`, "1");
        await store.create(`${p}purged`, "2");
        await watch.until("both puts", (es) => es.length >= 2);
        const jsm = await jetstreamManager(nc);
        await jsm.streams.purge(streamName(DEFAULT_BUCKET), {
          filter: subjectFor(DEFAULT_BUCKET, `${p}purged`),
        });
        await watch.until("a resync", (es) => es.some((e) => e.type === "resync"), 10_000);
        const resync = watch.events.find((e) => e.type === "resync");
        if (resync?.type !== "resync") throw new Error("no resync");
        expect(resync.cause).toBe("gap");
        expect(resync.entries.map((kv) => kv.key)).toEqual([`${p}kept`]);
        await Bun.sleep(1_000);
        expect(watch.events.filter((e) => e.type === "resync").length).toBe(1);
      } finally {
        await watch.stop();
      }
    },
    SLOW,
  );
});

describe("nats driver on Debian nats-server 2.9", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  const stores: NatsStore[] = [];
  const open = (internals: NatsStoreInternals = {}) => {
    const store = new NatsStore({ endpoints: [server.endpoint] }, internals);
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    server = await startNats({ flavour: "2.9" });
    nc = await connect({ servers: server.endpoint });
  }, SLOW);

  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await nc?.close();
    await server?.stop();
  }, SLOW);

  test("nats - version detection: 2.9 has no per-message TTL, so agents sweep and no Nats-TTL is sent", async () => {
    const store = open();
    expect(await store.server()).toEqual({ version: "2.9.10", serverTtl: false });
    expect(store.capabilities).toEqual({
      serverTtl: false,
      multiHost: true,
      expiryReason: true,
      minTtlSeconds: 1,
    });
    const p = freshPrefix();
    await store.create(`${p}leased`, "v", { ttlSeconds: 60 });
    const raw = await rawLast(nc, `${p}leased`);
    expect(raw?.header.get("Weft-TTL")).toBe("60");
    expect(raw?.header.get("Nats-TTL")).toBe("");
    const { config } = await (await jetstreamManager(nc)).streams.info(streamName(DEFAULT_BUCKET));
    expect(config.max_msgs_per_subject).toBe(1);
    expect(config.max_age).toBe(0);
  });

  test(
    "nats - on 2.9 expiry is swept by exactly one of two clients and seen as expired, once per key",
    async () => {
      // A bucket of their own: the other tests' open stores would take part in sweeping it.
      const bucket = `sweep${process.pid}a`;
      const a = open({ bucket });
      const b = open({ bucket });
      await Promise.all([a.server(), b.server()]);
      const p = freshPrefix();
      const watch = probe(a, p, (await a.list(p)).revision);
      try {
        const keys = Array.from({ length: 5 }, (_, i) => `${p}leased-${i}`);
        for (const [i, key] of keys.entries())
          await (i % 2 === 0 ? a : b).create(key, "v", { ttlSeconds: 1 });
        await watch.until("five expiries", (es) => keys.every((k) => deletes(es, k).length > 0), 15_000);
        await Bun.sleep(1_500);
        const sweepers = new Set<string>();
        for (const key of keys) {
          expect(deletes(watch.events, key).map((e) => e.reason)).toEqual(["expired"]);
          const marker = await rawLast(nc, key, bucket);
          expect(marker?.header.get("KV-Operation")).toBe("DEL");
          expect(marker?.header.get("Weft-Reason")).toBe("expired");
          sweepers.add(marker?.header.get("Weft-Swept-By") ?? "");
        }
        expect(sweepers.size).toBe(1);
        expect([a.id, b.id]).toContain([...sweepers][0] as string);
        for (const key of keys) expect(await b.get(key)).toBeUndefined();
      } finally {
        await watch.stop();
      }
    },
    SLOW,
  );

  test(
    "nats - on 2.9 a key without TTL never expires and is never swept",
    async () => {
      const a = open({ sweepIntervalMs: 200 });
      const p = freshPrefix();
      const watch = probe(a, p, (await a.list(p)).revision);
      try {
        await a.create(`${p}reserved`, "forever");
        await Bun.sleep(3_000);
        expect(await a.get(`${p}reserved`)).toMatchObject({ value: "forever", expires: false });
        expect(watch.events.map((e) => e.type)).toEqual(["put"]);
      } finally {
        await watch.stop();
      }
    },
    SLOW,
  );

  test("nats - on 2.9 reads hide an expired key before any sweeper marks it; update and renew treat it as gone", async () => {
    const never = 3_600_000;
    const writer = open({ sweepIntervalMs: never });
    // A client whose clock is 10 s ahead: for it the key below has expired already.
    const later = open({ sweepIntervalMs: never, now: () => Date.now() + 10_000 });
    const p = freshPrefix();
    const kv = await writer.create(`${p}leased`, "v", { ttlSeconds: 5 });
    expect(await later.get(`${p}leased`)).toBeUndefined();
    expect((await later.list(p)).entries).toEqual([]);
    expect((await writer.get(`${p}leased`))?.value).toBe("v");
    const watch = probe(writer, p, kv.revision);
    try {
      const err = await rejection(later.update(`${p}leased`, "w", { expectRevision: kv.revision }));
      expect(isStoreError(err, StoreErrorCode.Conflict)).toBe(true);
      // The refusal marked the key expired for everyone.
      await watch.until("the expiry", (es) => deletes(es, `${p}leased`).length > 0);
      expect(deletes(watch.events, `${p}leased`)[0]?.reason).toBe("expired");
      expect(await writer.get(`${p}leased`)).toBeUndefined();
      const gone = await rejection(later.renew(`${p}leased`));
      expect(isStoreError(gone, StoreErrorCode.KeyNotFound)).toBe(true);
      // A new create over the marker works.
      expect((await writer.create(`${p}leased`, "again", { ttlSeconds: 5 })).value).toBe("again");
    } finally {
      await watch.stop();
    }
  });

  test(
    "nats - on 2.9 the sweeper lock passes to the other client when its holder stops",
    async () => {
      const bucket = `sweep${process.pid}b`;
      const a = open({ bucket });
      const b = open({ bucket });
      await Promise.all([a.server(), b.server()]);
      const p = freshPrefix();
      await a.create(`${p}first`, "v", { ttlSeconds: 1 });
      await Bun.sleep(3_000);
      const first = (await rawLast(nc, `${p}first`, bucket))?.header.get("Weft-Swept-By");
      const holder = [a, b].find((s) => s.id === first);
      const other = [a, b].find((s) => s.id !== first);
      if (holder === undefined || other === undefined)
        throw new Error(`no known sweeper marked the key: ${first}`);
      await holder.close();
      await other.create(`${p}second`, "v", { ttlSeconds: 1 });
      const deadline = Date.now() + 20_000;
      let swept: string | undefined;
      while (Date.now() < deadline && swept === undefined) {
        await Bun.sleep(250);
        const marker = await rawLast(nc, `${p}second`, bucket);
        if (marker?.header.get("KV-Operation") === "DEL") swept = marker.header.get("Weft-Swept-By");
      }
      expect(swept).toBe(other.id);
    },
    SLOW,
  );
});

describe("nats driver with credentials", () => {
  let userServer: NatsServer;
  let tokenServer: NatsServer;
  const stores: NatsStore[] = [];
  const open = (options: Partial<StoreOptions> & { endpoints: string[] }) => {
    const store = new NatsStore({ requestTimeoutMs: 3_000, ...options });
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    [userServer, tokenServer] = await Promise.all([
      startNats({ flavour: "2.15", auth: { user: "weft", pass: "s3cret" } }),
      startNats({ flavour: "2.15", auth: { token: "t0ken" } }),
    ]);
  }, SLOW);

  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await userServer?.stop();
    await tokenServer?.stop();
  }, SLOW);

  test("nats - user and password: the right ones work, wrong ones fail with Auth naming the endpoint", async () => {
    const good = open({ endpoints: [userServer.endpoint], username: "weft", password: "s3cret" });
    const p = freshPrefix();
    await good.create(`${p}k`, "v");
    expect((await good.get(`${p}k`))?.value).toBe("v");
    const bad = open({ endpoints: [userServer.endpoint], username: "weft", password: "wrong" });
    const err = await rejection(bad.list(p));
    expect(isStoreError(err, StoreErrorCode.Auth)).toBe(true);
    expect((err as Error).message).toContain(userServer.endpoint);
    expect((err as Error).message).not.toContain("wrong");
  });

  test("nats - token: the right one works, a wrong one fails with Auth", async () => {
    const good = open({ endpoints: [tokenServer.endpoint], token: "t0ken" });
    const p = freshPrefix();
    await good.create(`${p}k`, "v");
    expect((await good.list(p)).entries.map((kv) => kv.value)).toEqual(["v"]);
    const err = await rejection(open({ endpoints: [tokenServer.endpoint], token: "nope" }).get(`${p}k`));
    expect(isStoreError(err, StoreErrorCode.Auth)).toBe(true);
  });

  test("nats - an unreadable credentials file fails with Invalid naming the file", async () => {
    const path = `/nonexistent/weft-${process.pid}.creds`;
    const err = await rejection(open({ endpoints: [tokenServer.endpoint], credsFile: path }).get("/k"));
    expect(isStoreError(err, StoreErrorCode.Invalid)).toBe(true);
    expect((err as Error).message).toContain(path);
  });
});
