/**
 * SQLite driver tests beyond the shared contract: several processes on one file (create races,
 * cross-process watches, expiry of a killed writer's lease, lock contention), the expiry rules on a
 * fake clock, the directory policy, history trimming, and the pure key-range helper.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { isStoreError, StoreErrorCode } from "../../stores/errors.ts";
import { SqliteStore } from "../../stores/sqlite/index.ts";
import { prefixRange } from "../../stores/sqlite/schema.ts";
import type { Store, WatchEvent } from "../../stores/store.ts";
import { probe } from "./watch-probe.ts";

const CHILD = join(import.meta.dir, "fixtures", "sqlite-child.ts");
const READONLY = join(import.meta.dir, "fixtures", "sqlite-readonly.ts");
let root: string;
let unique = 0;
const opened: Store[] = [];
const children: Subprocess<"pipe", "pipe", "pipe">[] = [];

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "weft-sqlite-test-"));
});
afterEach(async () => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
  await Promise.all(opened.splice(0).map((s) => s.close()));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

function freshDb(): string {
  unique += 1;
  return join(root, `t${unique}.db`);
}

function open(path: string, now?: () => number): SqliteStore {
  const store = new SqliteStore({ endpoints: [path] }, { now });
  opened.push(store);
  return store;
}

/** A child bun process running sqlite-child.ts, with its stdout as JSON lines. */
function spawnChild(...args: string[]) {
  const proc = Bun.spawn([process.execPath, CHILD, ...args], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  children.push(proc);
  const stderr = new Response(proc.stderr).text();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    proc,
    /** The next JSON line, or a rejection after `timeoutMs`. */
    async line(timeoutMs = 10_000): Promise<Record<string, unknown>> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const newline = buffer.indexOf("\n");
        if (newline >= 0) {
          const text = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          return JSON.parse(text) as Record<string, unknown>;
        }
        const chunk = await Promise.race([reader.read(), Bun.sleep(Math.max(0, deadline - Date.now()))]);
        if (chunk === undefined || chunk.done) {
          const exited = chunk?.done === true ? await Promise.race([stderr, Bun.sleep(1_000)]) : "";
          throw new Error(`child ${args[0]} gave no line in ${timeoutMs} ms (stderr: ${exited ?? ""})`);
        }
        buffer += chunk.value;
      }
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail");
}

describe("sqlite - several processes on one file", () => {
  test("sqlite - 5 processes × 2 clients race to create a key: exactly one winner per round, 20 rounds", async () => {
    const db = freshDb();
    const prefix = "/race/";
    const racers = Array.from({ length: 5 }, () => spawnChild("race", db, prefix, "20"));
    for (const racer of racers) expect((await racer.line(20_000)).ready).toBe(true);
    const start = Date.now() + 100;
    for (const racer of racers) {
      racer.proc.stdin.write(`${start}\n`);
      await racer.proc.stdin.flush();
    }
    const outcomes = await Promise.all(
      racers.map(async (racer) => {
        const lines = [];
        for (let i = 0; i < 40; i++) lines.push(await racer.line());
        return lines;
      }),
    );
    const store = open(db);
    for (let round = 0; round < 20; round++) {
      const mine = outcomes.flat().filter((o) => o.round === round);
      expect(mine.length).toBe(10);
      const winners = mine.filter((o) => o.outcome === "won");
      expect(winners.length).toBe(1);
      expect(mine.filter((o) => o.outcome === StoreErrorCode.KeyExists).length).toBe(9);
      expect((await store.get(`${prefix}race-${round}`))?.value).toBe(String(winners[0]?.creator));
    }
    expect((await store.list(prefix)).revision).toBe(20n);
  }, 60_000);

  test("sqlite - a watcher here sees another process's puts in order, each once", async () => {
    const db = freshDb();
    const store = open(db);
    const prefix = "/coreos.com/network/subnets/";
    const { revision } = await store.list(prefix);
    const writer = spawnChild("put", db, prefix, "150", "25");
    const keys: string[] = [];
    const latencies: number[] = [];
    for await (const event of store.watch(prefix, {
      afterRevision: revision,
      signal: AbortSignal.timeout(30_000),
    })) {
      if (event.type !== "put") throw new Error(`unexpected ${event.type} event`);
      latencies.push(performance.timeOrigin + performance.now() - Number(event.kv.value));
      keys.push(event.kv.key);
      if (keys.length === 150) break;
    }
    expect((await writer.line()).done).toBe(true);
    expect(keys).toEqual(Array.from({ length: 150 }, (_, i) => `${prefix}k${String(i).padStart(4, "0")}`));
    // Latency is a benchmark figure (test/bench/stores.ts), not an assertion; here only correctness.
    expect(latencies.every((ms) => Number.isFinite(ms))).toBe(true);
  }, 60_000);

  test("sqlite - the TTL key of a SIGKILLed process expires and a watcher here sees delete/expired", async () => {
    const db = freshDb();
    const store = open(db);
    const key = "/leases/10.5.1.0-24";
    const watch = probe(store, "/leases/", (await store.list("/leases/")).revision);
    try {
      const holder = spawnChild("lease", db, key, "1");
      const ready = await holder.line(20_000);
      const created = Date.now();
      holder.proc.kill("SIGKILL");
      await holder.proc.exited;
      await watch.until("the expiry", (es) => es.some((e) => e.type === "delete"), 10_000);
      const elapsed = Date.now() - created;
      const gone = watch.events.find((e) => e.type === "delete");
      expect(gone).toEqual({
        type: "delete",
        key,
        revision: BigInt(String(ready.revision)) + 1n,
        reason: "expired",
      });
      // TTL 1 s and a sweep at least every second: a generous bound that only a missing sweep breaks.
      expect(elapsed).toBeLessThan(5_000);
      expect(await store.get(key)).toBeUndefined();
    } finally {
      await watch.stop();
    }
  }, 30_000);

  test("sqlite - a write waits for another process's lock instead of failing, up to the time limit", async () => {
    const db = freshDb();
    const store = open(db);
    await store.create("/lock/first", "1");
    const locker = spawnChild("lock", db, "400");
    expect((await locker.line()).locked).toBe(true);
    const kv = await store.create("/lock/second", "2");
    const doneAt = Date.now();
    expect(kv.revision).toBe(2n);
    expect(doneAt).toBeGreaterThanOrEqual(Number((await locker.line()).released));

    const impatient = new SqliteStore({ endpoints: [db], requestTimeoutMs: 300 });
    opened.push(impatient);
    await impatient.get("/lock/first");
    const long = spawnChild("lock", db, "2000");
    expect((await long.line()).locked).toBe(true);
    const err = await rejection(impatient.create("/lock/third", "3"));
    expect(isStoreError(err, StoreErrorCode.Unavailable)).toBe(true);
    expect((err as Error).message).toContain(db);
    expect((err as Error).message).toContain("locked");
    expect((await impatient.get("/lock/first"))?.value).toBe("1");
  }, 30_000);
});

describe("sqlite - expiry on a fake clock", () => {
  test("sqlite - a key past its deadline is never read, listed or renewed, and its expiry is logged once", async () => {
    let now = 1_700_000_000_000;
    const db = freshDb();
    const a = open(db, () => now);
    const b = open(db, () => now);
    const start = (await a.list("/e/")).revision;
    const leased = await a.create("/e/leased", "v", { ttlSeconds: 10 });
    await a.create("/e/kept", "v");
    expect(leased.ttlSeconds).toBe(10);
    now += 4_000;
    expect((await b.get("/e/leased"))?.ttlSeconds).toBe(6);
    now += 6_000;
    expect(await b.get("/e/leased")).toBeUndefined();
    expect((await b.list("/e/")).entries.map((e) => e.key)).toEqual(["/e/kept"]);
    expect(isStoreError(await rejection(a.renew("/e/leased")), StoreErrorCode.KeyNotFound)).toBe(true);
    expect(await a.delete("/e/leased")).toBe(false);
    const watch = probe(b, "/e/", start);
    try {
      await watch.until("three events", (es) => es.length >= 3);
      await Bun.sleep(50);
      expect(watch.events.map((e) => (e.type === "delete" ? `delete ${e.key} ${e.reason}` : e.type))).toEqual(
        ["put", "put", "delete /e/leased expired"],
      );
    } finally {
      await watch.stop();
    }
    expect(
      isStoreError(
        await rejection(a.create("/e/leased", "again", { ttlSeconds: 0 })),
        StoreErrorCode.Invalid,
      ),
    ).toBe(true);
    expect((await a.create("/e/leased", "again", { ttlSeconds: 0.2 })).ttlSeconds).toBe(1);
  });

  test("sqlite - renew restarts the TTL without a new revision and without waking watchers", async () => {
    let now = 1_700_000_000_000;
    const store = open(freshDb(), () => now);
    const created = await store.create("/r/k", "v", { ttlSeconds: 10 });
    const watch = probe(store, "/r/", created.revision);
    try {
      now += 9_000;
      const renewed = await store.renew("/r/k");
      expect(renewed).toEqual({
        key: "/r/k",
        value: "v",
        revision: created.revision,
        expires: true,
        ttlSeconds: 10,
      });
      now += 9_000;
      expect((await store.get("/r/k"))?.ttlSeconds).toBe(1);
      await Bun.sleep(100);
      expect(watch.events).toEqual([]);
      const reservation = await store.create("/r/reserved", "x");
      expect(await store.renew("/r/reserved")).toEqual(reservation);
    } finally {
      await watch.stop();
    }
  });

  test("sqlite - update sets the expiry exactly as create does", async () => {
    let now = 1_700_000_000_000;
    const store = open(freshDb(), () => now);
    const leased = await store.create("/u/k", "v1", { ttlSeconds: 5 });
    const reserved = await store.update("/u/k", "v2", { expectRevision: leased.revision });
    expect(reserved.expires).toBe(false);
    now += 3_600_000;
    expect((await store.get("/u/k"))?.value).toBe("v2");
    const again = await store.update("/u/k", "v3", { expectRevision: reserved.revision, ttlSeconds: 5 });
    now += 5_000;
    expect(await store.get("/u/k")).toBeUndefined();
    const err = await rejection(store.update("/u/k", "v4", { expectRevision: again.revision }));
    expect(isStoreError(err, StoreErrorCode.Conflict)).toBe(true);
  });
});

describe("sqlite - files, history and lifecycle", () => {
  test("sqlite - a missing last directory is created; a deeper missing tree or a directory path is UnavailableError", async () => {
    const created = join(root, `made-${++unique}`, "weft.db");
    await open(created).create("/k", "v");
    expect((await open(created).get("/k"))?.value).toBe("v");

    const deep = join(root, `no-${++unique}`, "such", "weft.db");
    const err = await rejection(open(deep).get("/k"));
    expect(isStoreError(err, StoreErrorCode.Unavailable)).toBe(true);
    expect((err as Error).message).toContain(deep);
    expect((err as Error).message).toContain("create the directory or fix the path");
    const watch = probe(open(deep), "/", 0n);
    for (let i = 0; i < 100 && !watch.finished; i++) await Bun.sleep(10);
    expect(isStoreError(watch.error, StoreErrorCode.Unavailable)).toBe(true);

    const dirPath = join(root, `dir-${++unique}`);
    mkdirSync(dirPath);
    const asDir = await rejection(open(dirPath).list("/"));
    expect(isStoreError(asDir, StoreErrorCode.Unavailable)).toBe(true);
    expect((asDir as Error).message).toContain(dirPath);
  });

  test("sqlite - a read-only directory is UnavailableError naming the path (as an unprivileged user)", async () => {
    // Root writes through directory modes, so the store is opened by a child running as nobody
    // (setpriv) when the suite runs as root; the directories on the way must be traversable for it.
    const parent = mkdtempSync(join(tmpdir(), "weft-sqlite-ro-"));
    try {
      chmodSync(parent, 0o755);
      const dir = join(parent, "ro");
      mkdirSync(dir);
      chmodSync(dir, 0o555);
      const path = join(dir, "weft.db");
      const asRoot = process.getuid?.() === 0;
      const command = [process.execPath, READONLY, path];
      const child = Bun.spawn(
        asRoot ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ...command] : command,
        { stdout: "pipe", stderr: "pipe", env: { ...process.env, HOME: parent } },
      );
      const [out, errText, code] = await Promise.all([
        new Response(child.stdout).text(),
        new Response(child.stderr).text(),
        child.exited,
      ]);
      expect({ code, errText }).toEqual({ code: 0, errText: "" });
      const result = JSON.parse(out.trim()) as { error?: { code?: string; message?: string } };
      expect(result.error?.code).toBe(StoreErrorCode.Unavailable);
      expect(result.error?.message).toContain(path);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });

  test("sqlite - keys with % and _ list exactly; values round-trip byte-exact", async () => {
    const store = open(freshDb());
    const value = '{"note":"héllo ✓ 雪 🚀 \u0000 \uffff \u{10ffff}"}';
    for (const key of ["/a%/1", "/a%/2", "/ab/1", "/a_/1", "/aX/1", "/a%", "/a%0"])
      await store.create(key, value);
    expect((await store.list("/a%/")).entries.map((e) => e.key)).toEqual(["/a%/1", "/a%/2"]);
    expect((await store.list("/a_")).entries.map((e) => e.key)).toEqual(["/a_/1"]);
    expect((await store.list("/a%/1")).entries.every((e) => e.value === value)).toBe(true);
    expect((await store.list("")).entries.length).toBe(7);
  });

  test("sqlite - prefixRange bounds exactly the strings with the prefix", () => {
    expect(prefixRange("/a/")).toEqual({ start: "/a/", end: "/a0" });
    expect(prefixRange("")).toEqual({ start: "", end: undefined });
    expect(prefixRange("x\u{10ffff}")).toEqual({ start: "x\u{10ffff}", end: "y" });
    expect(prefixRange("\u{10ffff}")).toEqual({ start: "\u{10ffff}", end: undefined });
    expect(prefixRange("a\ud7ff")).toEqual({ start: "a\ud7ff", end: "a\ue000" });
    expect(prefixRange("a😀")).toEqual({ start: "a😀", end: "a😁" });
  });

  test("sqlite - compactHistory: a watch from before the cut resyncs, one from after it does not", async () => {
    const db = freshDb();
    const store = open(db);
    const other = open(db);
    await store.create("/h/a", "1");
    const old = (await store.list("/h/")).revision;
    await store.create("/h/b", "2", { ttlSeconds: 60 });
    await store.delete("/h/a");
    const current = (await store.list("/h/")).revision;
    expect(store.compactHistory(1)).toBe(current - 1n);
    const stale = probe(other, "/h/", old);
    const fresh = probe(other, "/h/", current - 1n);
    try {
      await stale.until("a resync", (es) => es.length >= 1);
      await fresh.until("the delete", (es) => es.length >= 1);
      const resync = stale.events[0] as Extract<WatchEvent, { type: "resync" }>;
      expect(resync.type).toBe("resync");
      expect(resync.cause).toBe("compacted");
      expect(resync.revision).toBe(current);
      expect(resync.entries.map((e) => [e.key, e.value, e.expires])).toEqual([["/h/b", "2", true]]);
      expect(fresh.events.map((e) => e.type)).toEqual(["delete"]);
      await store.create("/h/c", "3");
      await stale.until("the put after the resync", (es) => es.length >= 2);
      expect(stale.events[1]?.type).toBe("put");
    } finally {
      await stale.stop();
      await fresh.stop();
    }
  });

  test("sqlite - the log keeps the newest 10,000 revisions and a watch that keeps up never resyncs", async () => {
    const store = open(freshDb());
    const watch = probe(store, "/busy/", 0n);
    try {
      for (let i = 0; i < 10_600; i++) await store.create(`/noise/${i}`, "x");
      await store.create("/busy/k", "v");
      await watch.until("the put", (es) => es.length >= 1);
      expect(watch.events.map((e) => e.type)).toEqual(["put"]);
      const late = probe(store, "/noise/", 0n);
      await late.until("a resync", (es) => es.length >= 1);
      expect(late.events[0]?.type).toBe("resync");
      await late.stop();
      const edge = probe(store, "/noise/", 10_601n - 10_000n);
      await edge.until("the newest rows", (es) => es.length >= 1);
      expect(edge.events[0]?.type).toBe("put");
      await edge.stop();
    } finally {
      await watch.stop();
    }
  }, 60_000);

  test("sqlite - after close every method rejects with ClosedError and watches end", async () => {
    const store = new SqliteStore({ endpoints: [freshDb()] });
    await store.create("/c/k", "v");
    const watch = probe(store, "/c/", 0n);
    await watch.until("the put", (es) => es.length >= 1);
    await store.close();
    await store.close();
    const deadline = Date.now() + 2_000;
    while (!watch.finished && Date.now() < deadline) await Bun.sleep(5);
    expect(watch.finished).toBe(true);
    expect(watch.error).toBeUndefined();
    const calls = [
      store.get("/c/k"),
      store.list("/c/"),
      store.create("/c/x", "v"),
      store.update("/c/k", "v", { expectRevision: 1n }),
      store.renew("/c/k"),
      store.delete("/c/k"),
    ];
    for (const call of calls) expect(isStoreError(await rejection(call), StoreErrorCode.Closed)).toBe(true);
    const after = probe(store, "/c/", 0n);
    await after.stop();
    expect(isStoreError(after.error, StoreErrorCode.Closed)).toBe(true);
    expect(() => store.compactHistory(0)).toThrow("closed");
  });
});
