/**
 * Per-event cost of every store at the store-driver + lease-watcher level: what one peer's lease
 * change costs each agent, with 1,000 / 5,000 / 20,000 leases in the store.
 *
 * For each store (etcd, etcd2, consul, nats, sqlite; servers from test/harness on 127.0.0.1, random
 * ports) and each N, the leases are written here (flanneld-shaped, 24 h TTL, store-leases.ts); then
 * a separate process (store-events-agent.ts) opens the driver and runs the agent's `LeaseWatcher`
 * (list, then watch), and this process rewrites EVENTS random leases one after another (a new
 * PublicIP, `update` with the 24 h TTL, through its own driver), each after the previous one reached
 * the watcher's consumer. Measured per event:
 *   - latency: the writer's `update` call starting → the watcher's `onChange` seeing the new PublicIP
 *     for that key (wall clocks of both processes); `write` is the `update` call alone;
 *   - CPU: the agent process's `process.cpuUsage()` (user + system) over all EVENTS, divided by EVENTS
 *     (whatever else the process does meanwhile, timers included, is in it);
 *   - bytes: everything the server sent to the agent process during those events, counted by a TCP
 *     relay in this process that the agent's driver connects through (so HTTP headers, gzip, NATS
 *     protocol lines are all in it), divided by EVENTS. SQLite has no server: "-";
 *   - RSS of the agent process once the first list is folded in, and how long that took (`sync`);
 *     the JS heap in use after the events and a full garbage collection (what the agent keeps).
 * Figures are printed (markdown rows for the README), never asserted.
 *
 *   bun test/bench/store-events.bench.ts       (STORES=etcd,consul SIZES=1000,5000 EVENTS=200 to narrow)
 */
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "../../stores/index.ts";
import { type Store, type StoreName, storeNames } from "../../stores/store.ts";
import { startConsul } from "../harness/consul.ts";
import { startNats } from "../harness/nats.ts";
import { startEtcd } from "../harness/servers.ts";
import { markdownTable, percentile } from "./stats.ts";
import { LEASE_TTL_SECONDS, leaseKey, leaseValue, loadavg, seedLeases } from "./store-leases.ts";

const EVENTS = Number(process.env.EVENTS ?? 200);
const WARMUP = 10;
const SIZES = (process.env.SIZES ?? "1000,5000,20000").split(",").map(Number);
const STORES = (process.env.STORES ?? storeNames.join(","))
  .split(",")
  .filter((s): s is StoreName => (storeNames as readonly string[]).includes(s));
const EVENT_TIMEOUT_MS = 20_000;
const SYNC_TIMEOUT_MS = 180_000;

const wall = () => performance.timeOrigin + performance.now();

/** A TCP relay to `target` that counts the bytes the server sends back. */
async function countingRelay(target: URL): Promise<{ port: number; received(): number; close(): void }> {
  let received = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    upstream.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    port,
    received: () => received,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

interface Target {
  readonly endpoint: string;
  readonly stop: () => Promise<void>;
}

async function startTarget(name: StoreName): Promise<Target> {
  if (name === "sqlite") {
    const dir = mkdtempSync(join(tmpdir(), "weft-bench-events-"));
    return {
      endpoint: join(dir, "weft.db"),
      stop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const server =
    name === "consul"
      ? await startConsul()
      : name === "nats"
        ? await startNats({ flavour: "2.15" })
        : await startEtcd({ enableV2: name === "etcd2" });
  return { endpoint: server.endpoint, stop: () => server.stop() };
}

type AgentMessage =
  | { type: "synced"; leases: number; syncMs: number; rss: number }
  | { type: "change"; key: string; publicIP: string | null; at: number }
  | { type: "usage"; cpuMicros: number; rss: number; heapUsed?: number }
  | { type: "resync"; leases: number };

/** The agent process and the messages it sends. */
class Agent {
  readonly #proc: ReturnType<typeof Bun.spawn>;
  readonly #waiting = new Map<string, { publicIP: string; resolve: (at: number) => void }>();
  #onSynced: ((m: Extract<AgentMessage, { type: "synced" }>) => void) | undefined;
  #onUsage: ((m: Extract<AgentMessage, { type: "usage" }>) => void) | undefined;
  resyncs = 0;

  constructor(store: StoreName, endpoint: string) {
    this.#proc = Bun.spawn([process.execPath, join(import.meta.dir, "store-events-agent.ts")], {
      env: { ...process.env, STORE: store, ENDPOINT: endpoint },
      stdout: "inherit",
      stderr: "inherit",
      ipc: (message: AgentMessage) => this.#receive(message),
    });
  }

  #receive(m: AgentMessage): void {
    if (m.type === "synced") this.#onSynced?.(m);
    else if (m.type === "usage") this.#onUsage?.(m);
    else if (m.type === "resync") this.resyncs++;
    else {
      const waiter = this.#waiting.get(m.key);
      if (waiter !== undefined && waiter.publicIP === m.publicIP) {
        this.#waiting.delete(m.key);
        waiter.resolve(m.at);
      }
    }
  }

  synced(): Promise<Extract<AgentMessage, { type: "synced" }>> {
    return withTimeout(
      new Promise((resolve) => {
        this.#onSynced = resolve;
      }),
      SYNC_TIMEOUT_MS,
      "the agent's first list",
    );
  }

  /** CPU time and RSS; with `gc`, RSS after a full collection (and no CPU figure). */
  usage(gc = false): Promise<Extract<AgentMessage, { type: "usage" }>> {
    const answer = new Promise<Extract<AgentMessage, { type: "usage" }>>((resolve) => {
      this.#onUsage = resolve;
    });
    this.#proc.send({ type: gc ? "gc" : "usage" });
    return withTimeout(answer, 10_000, "a usage report");
  }

  /** Resolves with the wall-clock time the watcher's consumer saw `key` with `publicIP`. */
  expect(key: string, publicIP: string): Promise<number> {
    return withTimeout(
      new Promise((resolve) => this.#waiting.set(key, { publicIP, resolve })),
      EVENT_TIMEOUT_MS,
      `the event of ${key}`,
    );
  }

  async stop(): Promise<void> {
    if (this.#proc.exitCode !== null || this.#proc.signalCode !== null) return;
    this.#proc.send({ type: "stop" });
    const done = await Promise.race([
      this.#proc.exited.then(() => true),
      Bun.sleep(10_000).then(() => false),
    ]);
    if (!done) this.#proc.kill("SIGKILL");
    await this.#proc.exited;
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Rewrites lease `i` with a new PublicIP; resolves with [latency, write] in ms. */
async function oneEvent(
  writer: Store,
  agent: Agent,
  i: number,
  generation: number,
): Promise<[number, number]> {
  const key = leaseKey(i);
  const current = await writer.get(key);
  if (current === undefined) throw new Error(`${key} is gone`);
  const value = leaseValue(i, generation);
  const publicIP = (JSON.parse(value) as { PublicIP: string }).PublicIP;
  const seen = agent.expect(key, publicIP);
  const t0 = wall();
  await writer.update(key, value, { expectRevision: current.revision, ttlSeconds: LEASE_TTL_SECONDS });
  const written = wall();
  const at = await seen;
  return [at - t0, written - t0];
}

const rows: string[][] = [];
const loadBefore = await loadavg();
let generation = 1;

for (const name of STORES) {
  const target = await startTarget(name);
  const relay = name === "sqlite" ? undefined : await countingRelay(new URL(target.endpoint));
  const agentEndpoint =
    relay === undefined ? target.endpoint : target.endpoint.replace(/:\d+$/, `:${relay.port}`);
  const writer = openStore(name, { endpoints: [target.endpoint] });
  let seeded = 0;
  try {
    for (const n of SIZES) {
      const seedStart = performance.now();
      await seedLeases(writer, seeded, n);
      seeded = n;
      const seedS = (performance.now() - seedStart) / 1_000;
      const agent = new Agent(name, agentEndpoint);
      try {
        const synced = await agent.synced();
        if (synced.leases !== n)
          throw new Error(`${name}: the watcher holds ${synced.leases} of ${n} leases`);
        const pick = () => Math.floor(Math.random() * n);
        for (let w = 0; w < WARMUP; w++) await oneEvent(writer, agent, pick(), generation++);
        const before = await agent.usage();
        const bytesBefore = relay?.received() ?? 0;
        const latency: number[] = [];
        const write: number[] = [];
        for (let e = 0; e < EVENTS; e++) {
          const [l, w] = await oneEvent(writer, agent, pick(), generation++);
          latency.push(l);
          write.push(w);
        }
        const after = await agent.usage();
        const bytes = (relay?.received() ?? 0) - bytesBefore;
        const live = await agent.usage(true);
        rows.push([
          name,
          n.toLocaleString("en-US"),
          `${percentile(latency, 50).toFixed(1)} / ${percentile(latency, 99).toFixed(1)}`,
          percentile(write, 50).toFixed(1),
          ((after.cpuMicros - before.cpuMicros) / 1_000 / EVENTS).toFixed(2),
          relay === undefined ? "-" : (bytes / 1024 / EVENTS).toFixed(1),
          (synced.rss / 1024 / 1024).toFixed(0),
          ((live.heapUsed ?? 0) / 1024 / 1024).toFixed(0),
          synced.syncMs.toFixed(0),
        ]);
        console.error(
          `${name} N=${n}: seeded in ${seedS.toFixed(1)} s, ${agent.resyncs} resyncs, ${rows.at(-1)?.join(" | ")}`,
        );
      } finally {
        await agent.stop();
      }
    }
  } finally {
    await writer.close();
    relay?.close();
    await target.stop();
  }
}

console.log(
  `store events: ${EVENTS} lease rewrites per store and N (after ${WARMUP} warm-up), load before ${loadBefore}, after ${await loadavg()}`,
);
console.log(
  markdownTable(
    [
      "store",
      "leases",
      "put → watcher p50 / p99 ms",
      "write ms",
      "agent CPU ms/event",
      "KiB from server/event",
      "RSS after sync MB",
      "JS heap in use after GC MB",
      "sync ms",
    ],
    rows,
  ),
);
