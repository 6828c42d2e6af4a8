/**
 * The store contract suite: the same cases run unchanged against every driver on a real server
 * (see contract.test.ts for the fixtures). A driver passes when every case here passes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import { storeDrivers } from "../../stores/index.ts";
import type { KeyValue, Store, StoreName, StoreOptions, WatchEvent } from "../../stores/store.ts";
import { describe as describeEvents, probe, view } from "./watch-probe.ts";

export interface ContractFixture {
  readonly name: StoreName;
  /** The endpoint a separate process opens the store with (`--store-endpoints`). */
  readonly endpoint: string;
  /** A new client of the store under test, with its own connection. */
  open(): Store;
  /** Options that point at nothing: every call must fail with UnavailableError naming the endpoint. */
  readonly unreachable: StoreOptions;
  /** The endpoint string the unavailable error must name. */
  readonly unreachableEndpoint: string;
  /** Kills the server with SIGKILL and starts it again on the same data; absent for embedded stores. */
  readonly crash?: (() => Promise<{ restart(): Promise<void> }>) | undefined;
  /** Makes the store drop history up to now (compaction, index cleared, log trim). */
  loseHistory(store: Store): Promise<void>;
  teardown(): Promise<void>;
}

const SLOW = 60_000;
let unique = 0;

/** A fresh prefix per test, so cases never see each other's keys. */
function freshPrefix(name: string): string {
  unique += 1;
  return `/weft-contract/${name}-${process.pid}-${Date.now().toString(36)}-${unique}/`;
}

function expectCode(err: unknown, code: StoreErrorCode): void {
  if (!isStoreError(err, code))
    throw new Error(`expected a StoreError with code ${code}, got ${String(err)}`);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

export function runStoreContract(name: string, setup: () => Promise<ContractFixture>): void {
  describe(`${name} contract`, () => {
    let fixture: ContractFixture;
    let a: Store;
    let b: Store;

    beforeAll(async () => {
      fixture = await setup();
      a = fixture.open();
      b = fixture.open();
    }, SLOW);

    afterAll(async () => {
      await a?.close();
      await b?.close();
      await fixture?.teardown();
    }, SLOW);

    test(`${name} - get of a missing key resolves undefined`, async () => {
      expect(await a.get(`${freshPrefix(name)}missing`)).toBeUndefined();
    });

    test(`${name} - values round-trip byte-exact and keys may contain & : - /`, async () => {
      const p = freshPrefix(name);
      const value = JSON.stringify({
        PublicIP: "10.0.0.5",
        PublicIPv6: null,
        note: "héllo ✓ 雪 🚀 \u0000\u001f",
        quoted: 'a"b\\c\n\t',
      });
      const keys = [`${p}subnets/10.5.52.0-24`, `${p}subnets/10.5.53.0-24&fd00:10:244::-64`, `${p}a:b/c-d&e`];
      for (const key of keys) await a.create(key, value);
      for (const key of keys) {
        const got = await b.get(key);
        expect(got?.key).toBe(key);
        expect(got?.value).toBe(value);
      }
      const listed = await b.list(p);
      expect(listed.entries.map((e) => e.key)).toEqual([...keys].sort());
      expect(listed.entries.every((e) => e.value === value)).toBe(true);
    });

    test(`${name} - list returns exactly the keys under the prefix, sorted, with the snapshot revision`, async () => {
      const p = freshPrefix(name);
      const written = [];
      for (const k of ["c", "a", "e", "b", "d"]) written.push(await a.create(`${p}${k}`, k));
      await a.create(`${p.slice(0, -1)}-sibling/x`, "outside");
      const listed = await b.list(p);
      expect(listed.entries.map((e) => e.key)).toEqual(["a", "b", "c", "d", "e"].map((k) => `${p}${k}`));
      let newest = 0n;
      for (const kv of written) if (kv.revision > newest) newest = kv.revision;
      expect(listed.revision >= newest).toBe(true);
      for (const entry of listed.entries) expect(entry.expires).toBe(false);
    });

    test(`${name} - list with maxValueBytes leaves out longer values and says how long they are`, async () => {
      const p = freshPrefix(name);
      const limit = 4096;
      // Byte lengths, not characters: "é" is two UTF-8 bytes, "🚀" four.
      const values: Record<string, string> = {
        at: "x".repeat(limit),
        over: "x".repeat(limit + 1),
        wideFits: "é".repeat(limit / 2),
        wideOver: "é".repeat(limit / 2 + 1),
        emoji: "🚀".repeat(limit / 4 + 1),
        large: `{"PublicIP":"10.0.0.9","pad":"${'\\u0000"'.repeat(50_000)}"}`,
        small: '{"PublicIP":"10.0.0.5"}',
      };
      for (const [k, v] of Object.entries(values)) await a.create(`${p}${k}`, v, { ttlSeconds: 60 });
      await a.create(`${p}reserved`, "y".repeat(limit * 3));
      const listed = await b.list(p, { maxValueBytes: limit });
      const got = new Map(listed.entries.map((e) => [e.key.slice(p.length), e]));
      expect([...got.keys()]).toEqual([...Object.keys(values), "reserved"].sort());
      for (const k of ["at", "wideFits", "small"]) {
        expect(got.get(k)?.value).toBe(values[k] as string);
        expect(got.get(k)?.omittedBytes).toBeUndefined();
      }
      for (const k of ["over", "wideOver", "emoji", "large"]) {
        expect(got.get(k)?.value).toBe("");
        expect(got.get(k)?.omittedBytes).toBe(Buffer.byteLength(values[k] as string));
        expect(got.get(k)?.expires).toBe(true);
      }
      expect(got.get("reserved")).toMatchObject({ value: "", omittedBytes: limit * 3, expires: false });
      const whole = await b.list(p);
      expect(whole.entries.every((e) => e.omittedBytes === undefined)).toBe(true);
      expect(whole.entries.find((e) => e.key === `${p}large`)?.value).toBe(values.large as string);
    });

    test(`${name} - a watch with maxValueBytes delivers a longer value's put without it`, async () => {
      const p = freshPrefix(name);
      const start = await b.list(p);
      const watch = probe(b, p, start.revision, { maxValueBytes: 4096 });
      try {
        await a.create(`${p}large`, "é".repeat(30_000), { ttlSeconds: 60 });
        await a.create(`${p}small`, "fits");
        await watch.until("both puts", (es) => view(es).has(`${p}small`));
        const puts = new Map(
          watch.events.flatMap((e) => (e.type === "put" ? [[e.kv.key.slice(p.length), e.kv] as const] : [])),
        );
        expect(puts.get("large")).toMatchObject({ value: "", omittedBytes: 60_000, expires: true });
        expect(puts.get("small")?.value).toBe("fits");
        expect(puts.get("small")?.omittedBytes).toBeUndefined();
      } finally {
        await watch.stop();
      }
    });

    test(`${name} - create of an existing key fails with KeyExistsError and changes nothing`, async () => {
      const key = `${freshPrefix(name)}k`;
      const first = await a.create(key, "first");
      expectCode(await rejection(b.create(key, "second")), StoreErrorCode.KeyExists);
      const got = await a.get(key);
      expect(got?.value).toBe("first");
      expect(got?.revision).toBe(first.revision);
    });

    test(
      `${name} - 50 concurrent creators of one key: exactly one wins, 20 times`,
      async () => {
        const p = freshPrefix(name);
        const clients = Array.from({ length: 5 }, () => fixture.open());
        try {
          for (let round = 0; round < 20; round++) {
            const key = `${p}race-${round}`;
            const attempts = Array.from({ length: 50 }, (_, i) =>
              (clients[i % clients.length] as Store).create(key, `creator-${i}`, { ttlSeconds: 60 }),
            );
            const results = await Promise.allSettled(attempts);
            const winners = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
            expect(winners.length).toBe(1);
            for (const r of results)
              if (r.status === "rejected") expectCode(r.reason, StoreErrorCode.KeyExists);
            expect((await a.get(key))?.value).toBe(`creator-${winners[0]}`);
          }
        } finally {
          await Promise.all(clients.map((c) => c.close()));
        }
      },
      SLOW,
    );

    test(`${name} - update with the current revision succeeds and moves the revision forward`, async () => {
      const key = `${freshPrefix(name)}k`;
      const created = await a.create(key, "v1");
      const updated = await b.update(key, "v2", { expectRevision: created.revision });
      expect(updated.revision > created.revision).toBe(true);
      expect((await a.get(key))?.value).toBe("v2");
    });

    test(`${name} - update with a stale revision fails with ConflictError and changes nothing`, async () => {
      const key = `${freshPrefix(name)}k`;
      const created = await a.create(key, "v1");
      const current = await a.update(key, "v2", { expectRevision: created.revision });
      expectCode(
        await rejection(b.update(key, "v3", { expectRevision: created.revision })),
        StoreErrorCode.Conflict,
      );
      const got = await a.get(key);
      expect(got?.value).toBe("v2");
      expect(got?.revision).toBe(current.revision);
    });

    test(`${name} - update of a missing key fails with ConflictError`, async () => {
      const key = `${freshPrefix(name)}k`;
      expectCode(await rejection(a.update(key, "v", { expectRevision: 1n })), StoreErrorCode.Conflict);
      expect(await a.get(key)).toBeUndefined();
    });

    test(`${name} - delete: absent is false, a stale revision conflicts, the current one deletes`, async () => {
      const key = `${freshPrefix(name)}k`;
      expect(await a.delete(key)).toBe(false);
      const created = await a.create(key, "v1");
      const current = await a.update(key, "v2", { expectRevision: created.revision });
      expectCode(
        await rejection(b.delete(key, { expectRevision: created.revision })),
        StoreErrorCode.Conflict,
      );
      expect((await a.get(key))?.value).toBe("v2");
      expect(await b.delete(key, { expectRevision: current.revision })).toBe(true);
      expect(await a.get(key)).toBeUndefined();
    });

    test(`${name} - revisions grow with every write from any client`, async () => {
      const p = freshPrefix(name);
      let last = (await a.list(p)).revision;
      for (let i = 0; i < 20; i++) {
        const writer = i % 2 === 0 ? a : b;
        const kv = await writer.create(`${p}k${i}`, String(i));
        expect(kv.revision > last).toBe(true);
        last = kv.revision;
      }
      expect((await b.list(p)).revision >= last).toBe(true);
    });

    test(
      `${name} - an unrenewed TTL key expires and another client's watch sees it; a key without TTL stays`,
      async () => {
        const p = freshPrefix(name);
        const start = await b.list(p);
        const watch = probe(b, p, start.revision);
        try {
          const leased = await a.create(`${p}leased`, "lease", { ttlSeconds: 2 });
          const reserved = await a.create(`${p}reserved`, "reservation");
          expect(leased.expires).toBe(true);
          expect(reserved.expires).toBe(false);
          await watch.until(
            "the delete of the expired key",
            (es) => es.some((e) => e.type === "delete" && e.key === `${p}leased`),
            15_000,
          );
          const gone = watch.events.find((e) => e.type === "delete" && e.key === `${p}leased`);
          if (gone?.type !== "delete") throw new Error("no delete event");
          expect(gone.reason).toBe(
            storeDrivers[fixture.name].capabilities.expiryReason ? "expired" : "deleted",
          );
          expect(await b.get(`${p}leased`)).toBeUndefined();
          await Bun.sleep(2_500);
          const kept = await b.get(`${p}reserved`);
          expect(kept?.value).toBe("reservation");
          expect(kept?.expires).toBe(false);
          expect(watch.events.some((e) => e.type === "delete" && e.key === `${p}reserved`)).toBe(false);
        } finally {
          await watch.stop();
        }
      },
      SLOW,
    );

    test(
      `${name} - a renewed TTL key survives three times its TTL`,
      async () => {
        // Renewed every ~200 ms. Only a gap between two renewals as long as the TTL (a stalled
        // machine, not the store) may lose the key: such a run proves nothing and is tried again.
        const ttlMs = 2_000;
        let outcome: { lost: unknown; maxGapMs: number; key: string } | undefined;
        for (let attempt = 1; attempt <= 3; attempt++) {
          const key = `${freshPrefix(name)}renewed`;
          await a.create(key, "v", { ttlSeconds: ttlMs / 1000 });
          let last = Date.now();
          let maxGapMs = 0;
          let lost: unknown;
          const until = last + 3 * ttlMs + 500;
          while (Date.now() < until && lost === undefined) {
            await Bun.sleep(200);
            const renewed = await a.renew(key).catch((err: unknown) => {
              lost = err;
            });
            if (renewed !== undefined) expect(renewed.expires).toBe(true);
            maxGapMs = Math.max(maxGapMs, Date.now() - last);
            last = Date.now();
          }
          outcome = { lost, maxGapMs, key };
          if (lost === undefined || maxGapMs < ttlMs) break;
        }
        if (outcome === undefined) throw new Error("no attempt ran");
        expect({ lost: outcome.lost, maxGapMs: outcome.maxGapMs < ttlMs }).toEqual({
          lost: undefined,
          maxGapMs: true,
        });
        const got = await b.get(outcome.key);
        expect(got?.value).toBe("v");
        expect(got?.expires).toBe(true);
      },
      SLOW,
    );

    test(`${name} - renewing a key that is gone fails with KeyNotFoundError`, async () => {
      const key = `${freshPrefix(name)}k`;
      await a.create(key, "v", { ttlSeconds: 30 });
      await b.delete(key);
      expectCode(await rejection(a.renew(key)), StoreErrorCode.KeyNotFound);
    });

    test(
      `${name} - 200 puts and 50 deletes from another client arrive in order, each exactly once`,
      async () => {
        const p = freshPrefix(name);
        const start = await a.list(p);
        const watch = probe(a, p, start.revision);
        try {
          const expected: string[] = [];
          for (let i = 0; i < 200; i++) {
            await b.create(`${p}k${String(i).padStart(3, "0")}`, `v${i}`);
            expected.push(`put ${p}k${String(i).padStart(3, "0")}`);
          }
          for (let i = 0; i < 50; i++) {
            await b.delete(`${p}k${String(i).padStart(3, "0")}`);
            expected.push(`delete ${p}k${String(i).padStart(3, "0")}`);
          }
          await watch.until("250 events", (es) => es.length >= 250, 30_000);
          await Bun.sleep(200);
          const seen = watch.events.map((e) =>
            e.type === "put"
              ? `put ${e.kv.key}`
              : e.type === "delete"
                ? `delete ${e.key}`
                : `resync ${e.cause}`,
          );
          expect(seen).toEqual(expected);
          const revisions = watch.events.map((e) => (e.type === "put" ? e.kv.revision : e.revision));
          for (let i = 1; i < revisions.length; i++) {
            expect((revisions[i] as bigint) > (revisions[i - 1] as bigint)).toBe(true);
          }
        } finally {
          await watch.stop();
        }
      },
      SLOW,
    );

    test(`${name} - a watch delivers only changes after afterRevision`, async () => {
      const p = freshPrefix(name);
      await b.create(`${p}before`, "1");
      const { revision } = await a.list(p);
      await b.create(`${p}after`, "2");
      const watch = probe(a, p, revision);
      try {
        await watch.until("the put of 'after'", (es) => es.length >= 1);
        await Bun.sleep(100);
        expect(describeEvents(watch.events)).toContain(`put ${p}after@`);
        expect(watch.events.length).toBe(1);
      } finally {
        await watch.stop();
      }
    });

    test.skipIf(setupHasNoServer(name))(
      `${name} - a watch resumes after the server is killed and restarted, losing nothing`,
      async () => {
        if (fixture.crash === undefined) throw new Error(`${name}: fixture has no crash()`);
        const p = freshPrefix(name);
        const start = await a.list(p);
        const watch = probe(a, p, start.revision);
        try {
          for (let i = 0; i < 10; i++) await b.create(`${p}before-${i}`, `b${i}`, { ttlSeconds: 120 });
          await watch.until("10 puts before the crash", (es) => view(es).size >= 10);
          const server = await fixture.crash();
          await Bun.sleep(300);
          await server.restart();
          for (let i = 0; i < 10; i++) await b.create(`${p}after-${i}`, `a${i}`);
          await b.delete(`${p}before-0`);
          const truth = new Map((await b.list(p)).entries.map((kv) => [kv.key, kv.value]));
          await watch.until(
            "the watcher's view to equal the store",
            (es) => sameMap(view(es), truth),
            30_000,
          );
          const puts = watch.events
            .filter((e) => e.type === "put")
            .map((e) => (e.type === "put" ? e.kv.key : ""));
          expect(new Set(puts).size).toBe(puts.length);
          expect(watch.finished).toBe(false);
        } finally {
          await watch.stop();
        }
      },
      SLOW,
    );

    test(
      `${name} - lost history yields a resync with the exact current contents, then changes continue`,
      async () => {
        const p = freshPrefix(name);
        await b.create(`${p}gone`, "x");
        const old = (await a.list(p)).revision;
        await b.delete(`${p}gone`);
        for (let i = 0; i < 5; i++)
          await b.create(`${p}k${i}`, `v${i}`, i % 2 === 0 ? { ttlSeconds: 120 } : {});
        // Over the watch's value limit: the resync leaves it out as a list with that limit does.
        await b.create(`${p}large`, "z".repeat(10_000));
        await fixture.loseHistory(b);
        const watch = probe(a, p, old, { maxValueBytes: 4096 });
        try {
          await watch.until("a resync", (es) => es.some((e) => e.type === "resync"), 30_000);
          const resync = watch.events.find(
            (e): e is Extract<WatchEvent, { type: "resync" }> => e.type === "resync",
          );
          expect(resync?.cause).toBe("compacted");
          const truth = (await b.list(p, { maxValueBytes: 4096 })).entries;
          const seen = (kv: KeyValue) => [kv.key, kv.value, kv.expires, kv.omittedBytes];
          expect(resync?.entries.map(seen)).toEqual(truth.map(seen));
          expect(truth.find((kv) => kv.key === `${p}large`)?.omittedBytes).toBe(10_000);
          await b.create(`${p}later`, "after resync");
          await watch.until("the put after the resync", (es) => view(es).get(`${p}later`) === "after resync");
          expect(view(watch.events).size).toBe(7);
        } finally {
          await watch.stop();
        }
      },
      SLOW,
    );

    test(
      `${name} - an unreachable endpoint fails with UnavailableError naming it, in bounded time`,
      async () => {
        const store = fixture.open();
        await store.close();
        const { openStore } = await import("../../stores/index.ts");
        const dead = openStore(name, fixture.unreachable);
        const started = Date.now();
        try {
          const err = await rejection(dead.list("/x/"));
          expectCode(err, StoreErrorCode.Unavailable);
          expect((err as Error).message).toContain(fixture.unreachableEndpoint);
          expect(Date.now() - started).toBeLessThan(10_000);
        } finally {
          await dead.close();
        }
      },
      SLOW,
    );

    // A closed store leaves no timer, socket or watcher behind: a process that opened one, watched,
    // and closed it must exit by itself.
    test(
      `${name} - a process that closes its store exits by itself`,
      async () => {
        const script = join(import.meta.dir, "fixtures", "close-exits.ts");
        const child = Bun.spawn([process.execPath, script, name, fixture.endpoint], {
          stdout: "pipe",
          stderr: "pipe",
        });
        const exited = await Promise.race([child.exited, Bun.sleep(15_000).then(() => "timeout" as const)]);
        if (exited === "timeout") child.kill("SIGKILL");
        const out = await new Response(child.stdout).text();
        const err = await new Response(child.stderr).text();
        expect({ exited, out: out.trim(), err: err.trim() }).toEqual({
          exited: 0,
          out: "watch ended",
          err: "",
        });
      },
      SLOW,
    );

    test(`${name} - after close, calls reject with ClosedError and open watches end`, async () => {
      const store = fixture.open();
      const p = freshPrefix(name);
      const watch = probe(store, p, (await store.list(p)).revision);
      await b.create(`${p}k`, "v");
      await watch.until("the put", (es) => es.length >= 1);
      await store.close();
      const deadline = Date.now() + 5_000;
      while (!watch.finished && Date.now() < deadline) await Bun.sleep(10);
      expect(watch.finished).toBe(true);
      expect(watch.error).toBeUndefined();
      expectCode(await rejection(store.get(`${p}k`)), StoreErrorCode.Closed);
    });
  });
}

function sameMap(x: ReadonlyMap<string, string>, y: ReadonlyMap<string, string>): boolean {
  if (x.size !== y.size) return false;
  for (const [k, v] of x) if (y.get(k) !== v) return false;
  return true;
}

/** Embedded stores have no server to kill; the resume case does not apply to them. */
function setupHasNoServer(name: string): boolean {
  return name === "sqlite";
}
