// Renewal never stops: keep() goes on renewing whatever lease is current, including one that a
// recovery re-acquired while keep() was asleep. Real (embedded SQLite) store, real clock, short TTL.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "../../../src/clock.ts";
import { parseNetworkConfig } from "../../../src/config/network-config.ts";
import { createLogger } from "../../../src/log.ts";
import { Metrics } from "../../../src/metrics.ts";
import { type OwnLease, SubnetManager } from "../../../src/subnet/manager.ts";
import { openStore } from "../../../stores/index.ts";
import type { ListResult, Store } from "../../../stores/store.ts";

const { config } = parseNetworkConfig(
  '{"Network":"10.5.0.0/16","SubnetLen":24,"Backend":{"Type":"host-gw"}}',
);
const TTL_SECONDS = 3;
/** Renew 1 s after each acquisition or renewal: the key would expire 2 s after that. */
const MARGIN_SECONDS = 2;

let dir: string;
let stores: Store[];
const open = () => {
  const s = openStore("sqlite", { endpoints: [join(dir, "weft.db")] });
  stores.push(s);
  return s;
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-renew-"));
  stores = [];
});
afterEach(async () => {
  await Promise.all(stores.map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

/** A store whose `list` can be held back, so a re-acquisition can be kept in progress on purpose. */
function gatedStore(store: Store): { store: Store; hold(): void; release(): void } {
  let gate: Promise<void> | undefined;
  let open: () => void = () => {};
  const list = async (prefix: string): Promise<ListResult> => {
    if (gate !== undefined) await gate;
    return store.list(prefix);
  };
  const proxy = new Proxy(store, {
    get(target, prop) {
      if (prop === "list") return list;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return {
    store: proxy,
    hold: () => {
      gate = new Promise((resolve) => {
        open = resolve;
      });
    },
    release: () => {
      gate = undefined;
      open();
    },
  };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

test("subnet manager - a lease re-acquired while keep() sleeps is renewed again before it would expire", async () => {
  const gated = gatedStore(open());
  const metrics = new Metrics();
  const lines: string[] = [];
  const m = new SubnetManager({
    store: gated.store,
    prefix: "/coreos.com/network",
    config,
    attrs: { publicIP: "172.16.0.3", backendType: "host-gw" },
    ttlSeconds: TTL_SECONDS,
    renewMarginSeconds: MARGIN_SECONDS,
    log: createLogger({ write: (l) => lines.push(l) }),
    metrics,
    clock: systemClock,
  });
  const stop = new AbortController();
  const first = await m.acquire(stop.signal);
  if (first === undefined) throw new Error("no lease");
  const reacquired: OwnLease[] = [];
  const kept = m.keep(
    stop.signal,
    () => {},
    (l) => reacquired.push(l),
  );
  try {
    // The watcher sees the lease gone and starts a recovery; its list is held so that keep() wakes
    // for the renewal (1 s after the acquisition) while the re-acquisition is still in progress.
    await open().delete(first.key);
    gated.hold();
    const recovering = m.recover(
      stop.signal,
      () => {},
      (l) => reacquired.push(l),
    );
    expect(m.lease).toBeUndefined();
    await Bun.sleep((TTL_SECONDS - MARGIN_SECONDS) * 1000 + 300);
    gated.release();
    await recovering;
    expect(reacquired.length).toBe(1);
    const again = m.lease;
    if (again === undefined) throw new Error("not re-acquired");
    expect(again.key).toBe(first.key);
    const renewalsBefore = metrics.leaseRenewals.get({ result: "ok" });

    // The re-acquired lease is renewed (1 s after it was taken) and so outlives its first TTL.
    await until(
      "a renewal of the re-acquired lease",
      () => metrics.leaseRenewals.get({ result: "ok" }) > renewalsBefore,
      TTL_SECONDS * 1000,
    );
    expect(m.lease?.expiresAt ?? 0).toBeGreaterThan(again.expiresAt ?? Number.POSITIVE_INFINITY);
    await Bun.sleep(Math.max(0, (again.expiresAt ?? 0) - Date.now() + 500));
    expect((await open().get(first.key))?.value).toContain('"PublicIP":"172.16.0.3"');
    expect(m.lease).toBeDefined();
    expect(lines.filter((l) => l.includes("renewed subnet lease")).length).toBeGreaterThanOrEqual(1);
  } finally {
    stop.abort();
    gated.release();
    await kept;
  }
}, 20_000);

test("subnet manager - keep() started before any lease waits for one instead of returning", async () => {
  const store = open();
  const metrics = new Metrics();
  const m = new SubnetManager({
    store,
    prefix: "/coreos.com/network",
    config,
    attrs: { publicIP: "172.16.0.4", backendType: "host-gw" },
    ttlSeconds: TTL_SECONDS,
    renewMarginSeconds: MARGIN_SECONDS,
    log: createLogger({ write: () => {} }),
    metrics,
    clock: systemClock,
  });
  const stop = new AbortController();
  let returned = false;
  const kept = m
    .keep(
      stop.signal,
      () => {},
      () => {},
    )
    .then(() => {
      returned = true;
    });
  try {
    await Bun.sleep(50);
    expect(returned).toBe(false);
    await m.acquire(stop.signal);
    await until("a renewal", () => metrics.leaseRenewals.get({ result: "ok" }) >= 1, TTL_SECONDS * 1000);
  } finally {
    stop.abort();
    await kept;
  }
  expect(returned).toBe(true);
}, 20_000);

test("subnet manager - republish writes the new PublicIP under the same key; the old view is no loss", async () => {
  const store = open();
  let publicIP = "172.16.0.5";
  const m = new SubnetManager({
    store,
    prefix: "/coreos.com/network",
    config,
    attrs: () => ({ publicIP, backendType: "host-gw" }),
    ttlSeconds: 3600,
    renewMarginSeconds: 60,
    log: createLogger({ write: () => {} }),
    metrics: new Metrics(),
    clock: systemClock,
  });
  const lease = await m.acquire(new AbortController().signal);
  if (lease === undefined) throw new Error("no lease");
  expect(await m.republish()).toBe(false);
  publicIP = "172.16.0.55";
  // Until the new value is written, the store still shows the old PublicIP: that is not a lost lease.
  const stale = new Map([[lease.key, { publicIP: "172.16.0.5" }]]) as never;
  expect(m.lost(stale, lease.revision)).toBe(false);
  expect(await m.republish()).toBe(true);
  const kv = await store.get(lease.key);
  expect(kv?.value).toContain('"PublicIP":"172.16.0.55"');
  expect(kv?.expires).toBe(true);
  expect(m.lease?.key).toBe(lease.key);
  if (kv === undefined) throw new Error("lease gone");
  expect(m.lease?.revision).toBe(kv.revision);
  expect(m.lost(new Map([[lease.key, { publicIP: "172.16.0.55" }]]) as never, kv.revision)).toBe(false);
  // Another host's PublicIP under our key is a loss.
  expect(m.lost(new Map([[lease.key, { publicIP: "172.16.0.99" }]]) as never, kv.revision)).toBe(true);
});
