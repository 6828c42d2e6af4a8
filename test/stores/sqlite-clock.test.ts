/**
 * The SQLite driver's timers on a fake clock: the expiry sweep and the watch hub's fallback poll, hot
 * re-checks and retries all wait on the injected clock, so nothing happens until the clock moves.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../stores/sqlite/file.ts";
import { SqliteStore } from "../../stores/sqlite/index.ts";
import { WatchHub } from "../../stores/sqlite/watch.ts";
import type { StoreLogger, WatchEvent } from "../../stores/store.ts";
import { FakeClock, until } from "./fixtures/fake-clock.ts";
import { probe } from "./watch-probe.ts";

let root: string;
let unique = 0;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "weft-sqlite-clock-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const freshDb = () => join(root, `t${++unique}.db`);
const puts = (events: readonly WatchEvent[]) => events.filter((e) => e.type === "put").length;

/** Lets whatever real I/O or timer could run do so: a store whose waits are all on the fake clock stays still. */
const idle = () => Bun.sleep(60);

test("sqlite clock - a key expires when the injected clock passes its deadline: the sweep runs on that clock", async () => {
  const clock = new FakeClock();
  const store = new SqliteStore({ endpoints: [freshDb()] }, { clock });
  try {
    const p = "/clock/";
    const watch = probe(store, p, (await store.list(p)).revision);
    await store.create(`${p}leased`, "v", { ttlSeconds: 60 });
    await watch.until("the put", (es) => puts(es) === 1);

    await clock.advance(59_000);
    await idle();
    expect(watch.events.map((e) => e.type)).toEqual(["put"]);
    expect((await store.get(`${p}leased`))?.ttlSeconds).toBe(1);

    await clock.advance(1_001);
    await watch.until("the expiry", (es) => es.some((e) => e.type === "delete"));
    expect(watch.events.at(-1)).toMatchObject({ type: "delete", key: `${p}leased`, reason: "expired" });
    // The sweep looks at least once a (fake) second: it slept on the clock, never longer than that.
    expect(clock.waits.length).toBeGreaterThan(0);
    expect(Math.max(...clock.waits)).toBeLessThanOrEqual(1_000);
    await watch.stop();
  } finally {
    await store.close();
  }
  expect(clock.pending).toBe(0);
});

/** A hub on a file, told it has no WAL file to watch, so only its own waits can wake it. */
function hubOn(path: string, clock: FakeClock) {
  const warnings: string[] = [];
  const logger: StoreLogger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (message) => void warnings.push(message),
  };
  const db = openDatabase(path, path);
  let opens = 0;
  let failNext = 0;
  const hub = new WatchHub({
    open: () => {
      opens += 1;
      if (failNext > 0) {
        failNext -= 1;
        throw new Error("disk I/O error");
      }
      return db;
    },
    walPath: undefined,
    now: () => clock.now(),
    clock,
    logger,
  });
  return {
    hub,
    warnings,
    get opens() {
      return opens;
    },
    failOpens(n: number) {
      failNext = n;
    },
    close() {
      hub.close();
      db.close(false);
    },
  };
}

/** The events of a hub's watch on `prefix`, collected in the background. */
function collect(hub: WatchHub, prefix: string) {
  const stop = new AbortController();
  const events: WatchEvent[] = [];
  const done = (async () => {
    for await (const event of hub.watch(prefix, { afterRevision: 0n, signal: stop.signal }))
      events.push(event);
  })();
  return {
    events,
    async stop() {
      stop.abort();
      await done;
    },
  };
}

test("sqlite clock - another connection's commit is found by the watch's fallback poll when the injected clock says so", async () => {
  const path = freshDb();
  const writer = new SqliteStore({ endpoints: [path] });
  await writer.list("/"); // creates the file and its schema
  const clock = new FakeClock();
  const h = hubOn(path, clock);
  const watch = collect(h.hub, "/poll/");
  try {
    await clock.advance(100); // the watch's first check and its hot re-checks
    await writer.create("/poll/a", "1");
    await idle();
    expect(watch.events).toEqual([]);
    // No WAL file to watch: the fallback poll runs every 25 ms of the injected clock.
    await clock.advance(24);
    expect(watch.events).toEqual([]);
    await clock.advance(1);
    await until("the put", () => watch.events.length === 1);
    expect(watch.events[0]).toMatchObject({ type: "put", kv: { key: "/poll/a", value: "1" } });
    expect(clock.waits.filter((ms) => ms === 25).length).toBeGreaterThan(0);
  } finally {
    await watch.stop();
    h.close();
    await writer.close();
  }
  // The last watch ended: the hub stopped waking.
  expect(clock.pending).toBe(0);
});

test("sqlite clock - after activity the hub re-checks every 1 ms of the injected clock for 20 ms; a failed poll is retried on that clock", async () => {
  const path = freshDb();
  const writer = new SqliteStore({ endpoints: [path] });
  await writer.list("/");
  const clock = new FakeClock();
  const h = hubOn(path, clock);
  const watch = collect(h.hub, "/hot/");
  try {
    await clock.advance(100);
    const before = clock.waits.length;
    h.hub.localWrite(); // as after a commit of this store
    await clock.advance(100);
    const hot = clock.waits.slice(before).filter((ms) => ms === 1);
    expect(hot.length).toBe(20);

    const opens = h.opens;
    h.failOpens(1);
    h.hub.localWrite();
    await idle();
    expect(h.opens).toBe(opens + 1);
    expect(h.warnings).toEqual(["sqlite watch poll failed; retrying"]);
    // The retry waits 2.5–5 ms on the clock (the first step of its backoff), and not in real time.
    const retry = clock.waits.at(-1) ?? 0;
    expect(retry).toBeGreaterThanOrEqual(2.5);
    expect(retry).toBeLessThanOrEqual(5);
    await idle();
    expect(h.opens).toBe(opens + 1);
    await writer.create("/hot/a", "1");
    await clock.advance(5);
    await until("the put after the retry", () => watch.events.length === 1);
    expect(h.opens).toBeGreaterThan(opens + 1);
  } finally {
    await watch.stop();
    h.close();
    await writer.close();
  }
});
