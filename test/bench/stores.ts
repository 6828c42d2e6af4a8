/**
 * Store benchmark: list of 1,000 leased keys in one call, and put → watch-event latency over 1,000
 * puts, for every driver on a real local server. For etcd v3 it also runs an emulation of flanneld's
 * listing pattern (not the flanneld binary: TypeScript requests in the same order, one range, then one
 * LeaseTimeToLive per key, sequentially) against the same server and prints the ratio. Figures are
 * printed, never asserted. `STORES=etcd,sqlite` narrows the run.
 *
 *   bun test/bench/stores.ts
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "../../stores/index.ts";
import { type Store, type StoreName, storeNames } from "../../stores/store.ts";
import { startConsul } from "../harness/consul.ts";
import { startNats } from "../harness/nats.ts";
import { startEtcd, type TestServer } from "../harness/servers.ts";
import { percentile, table } from "./stats.ts";

const KEYS = 1_000;
const LIST_ROUNDS = 30;
const PUTS = 1_000;
const PREFIX = "/coreos.com/network/subnets/";

const selected = (process.env.STORES ?? storeNames.join(","))
  .split(",")
  .filter((s): s is StoreName => (storeNames as readonly string[]).includes(s));

function lease(i: number): { key: string; value: string } {
  const subnet = `10.${5 + (i >> 8)}.${i & 255}.0`;
  return {
    key: `${PREFIX}${subnet}-24`,
    value: JSON.stringify({
      PublicIP: `172.16.${i >> 8}.${i & 255}`,
      PublicIPv6: null,
      BackendType: "host-gw",
    }),
  };
}

async function fill(store: Store): Promise<void> {
  for (let start = 0; start < KEYS; start += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, KEYS - start) }, (_, j) => {
        const { key, value } = lease(start + j);
        return store.create(key, value, { ttlSeconds: 3_600 });
      }),
    );
  }
}

async function timeList(store: Store): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < LIST_ROUNDS; i++) {
    const t0 = performance.now();
    const { entries } = await store.list(PREFIX);
    times.push(performance.now() - t0);
    if (entries.length !== KEYS) throw new Error(`listed ${entries.length} keys, wrote ${KEYS}`);
  }
  return times;
}

/**
 * An emulation of flanneld v0.28 getSubnets() (not the flanneld binary): one prefix range, then one
 * LeaseTimeToLive RPC per key, sequentially.
 */
async function flanneldListPattern(endpoint: string): Promise<number[]> {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const end = PREFIX.slice(0, -1) + String.fromCharCode(PREFIX.charCodeAt(PREFIX.length - 1) + 1);
  const times: number[] = [];
  for (let round = 0; round < 5; round++) {
    const t0 = performance.now();
    const res = await fetch(`${endpoint}/v3/kv/range`, {
      method: "POST",
      body: JSON.stringify({ key: b64(PREFIX), range_end: b64(end) }),
    });
    const { kvs = [] } = (await res.json()) as { kvs?: { lease?: string }[] };
    for (const kv of kvs) {
      const ttl = await fetch(`${endpoint}/v3/lease/timetolive`, {
        method: "POST",
        body: JSON.stringify({ ID: kv.lease ?? "0" }),
      });
      await ttl.json();
    }
    times.push(performance.now() - t0);
    if (kvs.length !== KEYS) throw new Error(`the emulation of flanneld's pattern listed ${kvs.length} keys`);
  }
  return times;
}

async function putToEvent(writer: Store, watcher: Store): Promise<number[]> {
  const prefix = `/weft-bench/latency-${Date.now()}/`;
  const { revision } = await watcher.list(prefix);
  const sent = new Map<string, number>();
  const latencies: number[] = [];
  const controller = new AbortController();
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  const loop = (async () => {
    for await (const event of watcher.watch(prefix, { afterRevision: revision, signal: controller.signal })) {
      if (event.type !== "put") continue;
      const t0 = sent.get(event.kv.key);
      if (t0 !== undefined) latencies.push(performance.now() - t0);
      if (latencies.length === PUTS) resolveDone();
    }
  })();
  for (let i = 0; i < PUTS; i++) {
    const key = `${prefix}k${i}`;
    sent.set(key, performance.now());
    await writer.create(key, `v${i}`);
    // Let the event arrive before the next put, so each figure is one put's latency, not queueing.
    const deadline = performance.now() + 1_000;
    while (latencies.length <= i && performance.now() < deadline) await Bun.sleep(0);
  }
  await Promise.race([done, Bun.sleep(10_000)]);
  controller.abort();
  await loop;
  if (latencies.length !== PUTS) throw new Error(`saw ${latencies.length} of ${PUTS} put events`);
  return latencies;
}

interface Target {
  readonly open: () => Store;
  readonly endpoint: string;
  readonly stop: () => Promise<void>;
}

async function target(name: StoreName): Promise<Target> {
  if (name === "sqlite") {
    const dir = mkdtempSync(join(tmpdir(), "weft-bench-"));
    const path = join(dir, "weft.db");
    return {
      open: () => openStore(name, { endpoints: [path] }),
      endpoint: path,
      stop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const server: TestServer =
    name === "consul"
      ? await startConsul()
      : name === "nats"
        ? await startNats({ flavour: "2.15" })
        : await startEtcd({ enableV2: name === "etcd2" });
  return {
    open: () => openStore(name, { endpoints: [server.endpoint] }),
    endpoint: server.endpoint,
    stop: () => server.stop(),
  };
}

const rows: string[][] = [];
for (const name of selected) {
  const t = await target(name);
  const writer = t.open();
  const watcher = t.open();
  try {
    await fill(writer);
    const list = await timeList(watcher);
    const latency = await putToEvent(writer, watcher);
    rows.push([
      name,
      percentile(list, 50).toFixed(2),
      percentile(list, 99).toFixed(2),
      percentile(latency, 50).toFixed(2),
      percentile(latency, 99).toFixed(2),
    ]);
    if (name === "etcd") {
      const flannel = await flanneldListPattern(t.endpoint);
      const ratio = percentile(flannel, 50) / percentile(list, 50);
      rows.push([
        "etcd, emulation of flanneld's pattern (not the flanneld binary)",
        percentile(flannel, 50).toFixed(2),
        percentile(flannel, 99).toFixed(2),
        "-",
        `-  (list ${ratio.toFixed(1)}x slower)`,
      ]);
    }
  } finally {
    await writer.close();
    await watcher.close();
    await t.stop();
  }
}

console.log(
  `store benchmark: list of ${KEYS} leased keys (${LIST_ROUNDS} rounds), put → event over ${PUTS} puts`,
);
console.log(table(["store", "list p50 ms", "list p99 ms", "put→event p50 ms", "put→event p99 ms"], rows));
