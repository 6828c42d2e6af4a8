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

export type ClusterStore = "sqlite" | "etcd" | "etcd2" | "consul" | "nats";

export interface Agent {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Everything the agent wrote to stderr so far. */
  log(): string;
}

export class Cluster {
  readonly agents = new Map<number, Agent>();
  #server: Subprocess | undefined;

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
    const endpoint = {
      sqlite: join(dir, "weft.db"),
      etcd: `http://${STORE_IP}:2379`,
      etcd2: `http://${STORE_IP}:2379`,
      consul: `http://${STORE_IP}:8500`,
      nats: `nats://${STORE_IP}:4222`,
    }[options.store];
    const cluster = new Cluster(segment, options.store, dir, endpoint, prefix);
    try {
      if (options.store === "etcd" || options.store === "etcd2")
        await cluster.#startEtcd(options.store === "etcd2");
      if (options.store === "consul") await cluster.#startConsul();
      if (options.store === "nats") await cluster.#startNats();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** A test binary built once by build/test-bin.sh (it prints the cached path last). */
  static async testBin(name: string): Promise<string> {
    const proc = Bun.spawn(["bash", join(import.meta.dir, "..", "..", "build", "test-bin.sh"), name], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) throw new Error(`build/test-bin.sh ${name} failed (${code}): ${err}`);
    return out.trim().split("\n").at(-1) ?? "";
  }

  /** Waits until `url` answers inside the segment. */
  async #awaitServer(what: string, check: string[]): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const r = await this.segment.lan.exec(check, { allowFailure: true });
      if (r.code === 0 && r.stdout.trim() !== "" && r.stdout.trim() !== '""') return;
      await Bun.sleep(100);
    }
    throw new Error(`${what} did not start inside the test segment`);
  }

  async #startConsul(): Promise<void> {
    const lan = this.segment.lan;
    await lan.ip("addr", "add", `${STORE_IP}/16`, "dev", "br0");
    const consul = await Cluster.testBin("consul");
    this.#server = lan.spawn([
      consul,
      "agent",
      "-server",
      "-bootstrap-expect=1",
      "-node=e2e",
      `-bind=${STORE_IP}`,
      `-client=${STORE_IP}`,
      "-http-port=8500",
      "-dns-port=-1",
      "-grpc-port=-1",
      `-data-dir=${join(this.dir, "consul")}`,
      "-log-level=warn",
    ]);
    const leader = `const r = await fetch("${this.endpoint}/v1/status/leader").catch(() => undefined); console.log(r ? await r.text() : "");`;
    await this.#awaitServer("consul", [process.execPath, "-e", leader]);
  }

  async #startNats(): Promise<void> {
    const lan = this.segment.lan;
    await lan.ip("addr", "add", `${STORE_IP}/16`, "dev", "br0");
    const nats = await Cluster.testBin("nats-server");
    this.#server = lan.spawn([nats, "-js", "-a", STORE_IP, "-p", "4222", "-sd", join(this.dir, "nats")]);
    const probe = `const s = await Bun.connect({ hostname: "${STORE_IP}", port: 4222, socket: { data() {} } }).catch(() => undefined); console.log(s ? "up" : ""); s?.end();`;
    await this.#awaitServer("nats-server", [process.execPath, "-e", probe]);
  }

  /** One store operation run inside the segment, where the server listens. */
  async #storeOp(op: "put" | "del", key: string, value = ""): Promise<void> {
    const script = join(import.meta.dir, "fixtures", "store-op.ts");
    await this.segment.lan.exec([
      process.execPath,
      script,
      this.store,
      this.endpoint,
      op,
      key,
      Buffer.from(value).toString("base64"),
    ]);
  }

  async #startEtcd(v2: boolean): Promise<void> {
    const lan = this.segment.lan;
    await lan.ip("addr", "add", `${STORE_IP}/16`, "dev", "br0");
    this.#server = lan.spawn([
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
    else if (this.store !== "sqlite") await this.#storeOp("put", key, value);
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
    else if (this.store !== "sqlite") await this.#storeOp("del", key);
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
  startAgent(i: number, extra: readonly string[] = [], env: Record<string, string> = {}): Agent {
    const storeFlags =
      this.store === "etcd" || this.store === "etcd2"
        ? [`--store=${this.store}`, `--etcd-endpoints=${this.endpoint}`]
        : [`--store=${this.store}`, `--store-endpoints=${this.endpoint}`];
    const proc = this.host(i).ns.spawn(
      [
        process.execPath,
        MAIN,
        ...storeFlags,
        `--etcd-prefix=${this.prefix}`,
        "--iface=eth0",
        `--subnet-file=${this.subnetFile(i)}`,
        ...extra,
      ],
      { env },
    );
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
    this.#server?.kill("SIGKILL");
    await this.#server?.exited;
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
