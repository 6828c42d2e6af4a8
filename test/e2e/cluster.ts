/**
 * An end-to-end cluster for tests: hosts in network namespaces on one L2 segment, a store every host
 * can reach (etcd inside the segment's bridge namespace on 172.17.42.1, or a SQLite file), and weft
 * agents started from source in the host namespaces. `stop()` ends every agent and server and removes
 * every namespace, also when a test fails.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { SEED_000_CONFIG } from "../../src/demo/demo.ts";
import { createSegment, type Segment } from "../../src/netns/netns.ts";
import { openStore } from "../../stores/index.ts";

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");
export const STORE_IP = "172.17.42.1";

export type ClusterStore = "sqlite" | "etcd" | "etcd2";

export interface Agent {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Everything the agent wrote to stderr so far. */
  log(): string;
}

export class Cluster {
  readonly agents = new Map<number, Agent>();
  #etcd: Subprocess | undefined;

  private constructor(
    readonly segment: Segment,
    readonly store: ClusterStore,
    readonly dir: string,
    readonly endpoint: string,
    readonly prefix: string,
  ) {}

  static async start(options: { store: ClusterStore; hosts: number; prefix?: string }): Promise<Cluster> {
    const addresses = Array.from({ length: options.hosts }, (_, i) => `172.17.42.${41 + i}`);
    const segment = await createSegment("we", addresses, 16);
    const dir = mkdtempSync(join(tmpdir(), "weft-e2e-"));
    const prefix = options.prefix ?? "/cluster.hostgw/network";
    const endpoint = options.store === "sqlite" ? join(dir, "weft.db") : `http://${STORE_IP}:2379`;
    const cluster = new Cluster(segment, options.store, dir, endpoint, prefix);
    try {
      if (options.store !== "sqlite") await cluster.#startEtcd(options.store === "etcd2");
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  async #startEtcd(v2: boolean): Promise<void> {
    const lan = this.segment.lan;
    await lan.ip("addr", "add", `${STORE_IP}/16`, "dev", "br0");
    this.#etcd = lan.spawn([
      "etcd",
      "--name=e2e",
      `--data-dir=${join(this.dir, "etcd")}`,
      `--listen-client-urls=${this.endpoint}`,
      `--advertise-client-urls=${this.endpoint}`,
      `--listen-peer-urls=http://${STORE_IP}:2380`,
      `--initial-advertise-peer-urls=http://${STORE_IP}:2380`,
      `--initial-cluster=e2e=http://${STORE_IP}:2380`,
      `--enable-v2=${v2}`,
      "--log-level=warn",
    ]);
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const r = await lan.exec(["etcdctl", `--endpoints=${this.endpoint}`, "endpoint", "health"], {
        allowFailure: true,
      });
      if (r.code === 0) return;
      await Bun.sleep(100);
    }
    throw new Error("etcd did not start inside the test segment");
  }

  /** `etcdctl` inside the segment: v3 API, or v2 (`ETCDCTL_API=2`) for the etcd2 store. */
  async etcdctl(...args: string[]): Promise<string> {
    const api = this.store === "etcd2" ? "2" : "3";
    const r = await this.segment.lan.exec([
      "env",
      `ETCDCTL_API=${api}`,
      "etcdctl",
      `--endpoints=${this.endpoint}`,
      ...args,
    ]);
    return r.stdout;
  }

  /** Writes the network config the way each store's users do (`etcdctl set|put`, `weft config set`). */
  async writeConfig(json: string): Promise<void> {
    if (this.store !== "sqlite") await this.put(`${this.prefix}/config`, json);
    else {
      const proc = Bun.spawn(
        [
          process.execPath,
          MAIN,
          "config",
          "set",
          "--store=sqlite",
          `--store-endpoints=${this.endpoint}`,
          `--etcd-prefix=${this.prefix}`,
        ],
        {
          stdin: new Blob([json]),
          stdout: "pipe",
          stderr: "pipe",
        },
      );
      if ((await proc.exited) !== 0)
        throw new Error(`weft config set failed: ${await new Response(proc.stderr).text()}`);
    }
  }

  /** Writes a key as an operator would (`etcdctl set|put`; the SQLite file directly). */
  async put(key: string, value: string): Promise<void> {
    if (this.store === "etcd2") await this.etcdctl("set", key, value);
    else if (this.store === "etcd") await this.etcdctl("put", key, value);
    else {
      const store = openStore("sqlite", { endpoints: [this.endpoint] });
      try {
        const current = await store.get(key);
        if (current === undefined) await store.create(key, value);
        else await store.update(key, value, { expectRevision: current.revision });
      } finally {
        await store.close();
      }
    }
  }

  /** Deletes a key as an operator would (`etcdctl rm|del`). */
  async del(key: string): Promise<void> {
    if (this.store === "etcd2") await this.etcdctl("rm", key);
    else if (this.store === "etcd") await this.etcdctl("del", key);
    else {
      const store = openStore("sqlite", { endpoints: [this.endpoint] });
      await store.delete(key).finally(() => store.close());
    }
  }

  host(i: number) {
    const host = this.segment.hosts[i];
    if (host === undefined) throw new Error(`no host ${i}`);
    return host;
  }

  subnetFile(i: number): string {
    return join(this.dir, `host${i}`, "subnet.env");
  }

  /** Starts weft on host i (0-based). */
  startAgent(i: number, extra: readonly string[] = []): Agent {
    const storeFlags =
      this.store === "sqlite"
        ? ["--store=sqlite", `--store-endpoints=${this.endpoint}`]
        : [`--store=${this.store}`, `--etcd-endpoints=${this.endpoint}`];
    const proc = this.host(i).ns.spawn([
      process.execPath,
      MAIN,
      ...storeFlags,
      `--etcd-prefix=${this.prefix}`,
      "--iface=eth0",
      `--subnet-file=${this.subnetFile(i)}`,
      ...extra,
    ]);
    let text = "";
    void (async () => {
      for await (const chunk of proc.stderr) text += new TextDecoder().decode(chunk);
    })();
    const agent = { proc, log: () => text };
    this.agents.set(i, agent);
    return agent;
  }

  async stopAgent(i: number, signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<number> {
    const agent = this.agents.get(i);
    if (agent === undefined) return 0;
    agent.proc.kill(signal);
    const code = await agent.proc.exited;
    this.agents.delete(i);
    return code;
  }

  /** weft's routes on host i: the lines of `ip route show` that carry weft's marker `proto 77`. */
  async routes(i: number): Promise<string[]> {
    const r = await this.host(i).ns.ip("route", "show");
    return r.stdout
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => / proto 77( |$)/.test(l))
      .sort();
  }

  subnetEnv(i: number): Record<string, string> {
    const out: Record<string, string> = {};
    for (const line of readFileSync(this.subnetFile(i), "utf8").split("\n")) {
      const eq = line.indexOf("=");
      if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
    }
    return out;
  }

  async stop(): Promise<void> {
    for (const i of [...this.agents.keys()]) await this.stopAgent(i, "SIGKILL");
    this.#etcd?.kill("SIGKILL");
    await this.#etcd?.exited;
    await this.segment.remove();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls `check` until it returns true; fails naming `what` after `timeoutMs`. */
export async function eventually(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await Bun.sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export { SEED_000_CONFIG };

/** Seed 000 with an agent on every host, returned once every host routes to every peer. */
export async function startMesh(store: ClusterStore, hosts: number): Promise<Cluster> {
  const cluster = await Cluster.start({ store, hosts });
  try {
    await cluster.writeConfig(SEED_000_CONFIG);
    for (let i = 0; i < hosts; i++) cluster.startAgent(i);
    await eventually("every host to route to every peer", async () => {
      for (let i = 0; i < hosts; i++) if ((await cluster.routes(i)).length !== hosts - 1) return false;
      return true;
    });
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}
