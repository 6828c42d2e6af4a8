/**
 * An end-to-end cluster for tests: hosts in network namespaces on one L2 segment (or on several
 * segments joined by a router, `segments: [2, 1]`), a store every host can reach (etcd, Consul or
 * NATS inside the bridge namespace on 172.17.42.1, or a SQLite file), and weft agents started from
 * source in the host namespaces — or flanneld v0.28.9 (Go-built, build/test-bin.sh) on chosen hosts.
 * `stop()` ends every agent and server and removes every namespace, also when a test fails.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { SEED_000_CONFIG } from "../../src/demo/demo.ts";
import {
  createRoutedSegments,
  createSegment,
  type RoutedSegments,
  type Segment,
} from "../../src/netns/netns.ts";
import { openStore } from "../../stores/index.ts";

const MAIN = join(import.meta.dir, "..", "..", "src", "main.ts");
export const STORE_IP = "172.17.42.1";

export type ClusterStore = "sqlite" | "etcd" | "etcd2" | "consul" | "nats";

export interface Agent {
  /** weft from source, or the Go-built flanneld (`startFlanneld`). */
  readonly kind: "weft" | "flanneld";
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Everything the agent wrote to stderr so far. */
  log(): string;
}

export interface ClusterOptions {
  readonly store: ClusterStore;
  readonly hosts: number;
  readonly prefix?: string;
  /**
   * Hosts per routed segment: `[2, 1]` puts hosts 0–1 on segment 0 (172.17.42.41, .42/24) and host 2
   * on segment 1 (172.17.43.41/24); segment n is 172.17.(42+n).0/24 with the router on .1, every host
   * routes `default via` its router. The counts must add up to `hosts`. Without it: one segment,
   * 172.17.42.(41+i)/16, no router and no default route.
   */
  readonly segments?: readonly number[];
}

/**
 * An `ip route` line without its `nhid <n>`: weft's routes go through nexthop objects where the kernel
 * has them, and look the same as inline-gateway routes apart from that (issue 13). Tests compare
 * routes by what they say; test/e2e/nexthops.test.ts and test/netns/netlink.test.ts check the nexthops.
 */
export function withoutNhid(line: string): string {
  return line.replace(/ nhid \d+/, "");
}

/** The router's address on routed segment n: 172.17.(42+n).1 (segment 0's is STORE_IP). */
export function routerAddress(segment: number): string {
  return `172.17.${42 + segment}.1`;
}

export class Cluster {
  readonly agents = new Map<number, Agent>();
  #server: Subprocess | undefined;
  /** The Network of the last config written with writeConfig (for routesAll). */
  #network: string | undefined;

  private constructor(
    readonly segment: Segment,
    /** The same topology when started with `segments`: hosts with their segment and router. */
    readonly routed: RoutedSegments | undefined,
    readonly store: ClusterStore,
    readonly dir: string,
    readonly endpoint: string,
    readonly prefix: string,
  ) {}

  static async start(options: ClusterOptions): Promise<Cluster> {
    let segment: Segment;
    let routed: RoutedSegments | undefined;
    if (options.segments === undefined) {
      const addresses = Array.from({ length: options.hosts }, (_, i) => `172.17.42.${41 + i}`);
      segment = await createSegment("we", addresses, 16);
    } else {
      const total = options.segments.reduce((a, b) => a + b, 0);
      if (total !== options.hosts)
        throw new Error(
          `Cluster.start: segments ${JSON.stringify(options.segments)} hold ${total} hosts, not ${options.hosts}`,
        );
      const specs = options.segments.map((count, n) => ({
        router: routerAddress(n),
        prefixLen: 24,
        addresses: Array.from({ length: count }, (_, j) => `172.17.${42 + n}.${41 + j}`),
      }));
      routed = await createRoutedSegments("we", specs);
      segment = routed;
    }
    const dir = mkdtempSync(join(tmpdir(), "weft-e2e-"));
    const prefix = options.prefix ?? "/cluster.hostgw/network";
    const endpoint = {
      sqlite: join(dir, "weft.db"),
      etcd: `http://${STORE_IP}:2379`,
      etcd2: `http://${STORE_IP}:2379`,
      consul: `http://${STORE_IP}:8500`,
      nats: `nats://${STORE_IP}:4222`,
    }[options.store];
    const cluster = new Cluster(segment, routed, options.store, dir, endpoint, prefix);
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

  /** Puts STORE_IP on br0 for the server; a routed topology has it there already (router on segment 0). */
  async #addStoreAddress(): Promise<void> {
    // `replace`: restartServer comes here again with the address already in place.
    if (this.routed === undefined)
      await this.segment.lan.ip("addr", "replace", `${STORE_IP}/16`, "dev", "br0");
  }

  /** SIGKILLs the store server (etcd, Consul or NATS) and waits until it is gone. */
  async killServer(): Promise<void> {
    this.#server?.kill("SIGKILL");
    await this.#server?.exited;
    this.#server = undefined;
  }

  /**
   * Starts the store server again at the same address, on the same data directory, or on an empty
   * one with `wipe` (a server that lost its data). Resolves once it answers.
   */
  async restartServer(options: { wipe?: boolean } = {}): Promise<void> {
    await this.killServer();
    if (options.wipe === true)
      rmSync(join(this.dir, this.store === "etcd2" ? "etcd" : this.store), { recursive: true, force: true });
    if (this.store === "etcd" || this.store === "etcd2") await this.#startEtcd(this.store === "etcd2");
    if (this.store === "consul") await this.#startConsul();
    if (this.store === "nats") await this.#startNats();
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
    await this.#addStoreAddress();
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
    await this.#addStoreAddress();
    const nats = await Cluster.testBin("nats-server");
    this.#server = lan.spawn([nats, "-js", "-a", STORE_IP, "-p", "4222", "-sd", join(this.dir, "nats")]);
    const probe = `const s = await Bun.connect({ hostname: "${STORE_IP}", port: 4222, socket: { data() {} } }).catch(() => undefined); console.log(s ? "up" : ""); s?.end();`;
    await this.#awaitServer("nats-server", [process.execPath, "-e", probe]);
  }

  /** One store operation run inside the segment, where the server listens; returns what it printed. */
  async #storeOp(op: "put" | "del" | "list" | "fill", key: string, value = ""): Promise<string> {
    const script = join(import.meta.dir, "fixtures", "store-op.ts");
    const r = await this.segment.lan.exec([
      process.execPath,
      script,
      this.store,
      this.endpoint,
      op,
      key,
      op === "fill" ? value : Buffer.from(value).toString("base64"),
    ]);
    return r.stdout;
  }

  async #startEtcd(v2: boolean): Promise<void> {
    const lan = this.segment.lan;
    await this.#addStoreAddress();
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
    this.#network = networkOf(json);
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

  /**
   * The keys under `prefix` (etcd and etcd2: `etcdctl get --prefix --keys-only` / `ls`; Consul and
   * NATS: the driver's list, run inside the segment; SQLite: the file). None when the prefix is empty.
   */
  async keys(prefix: string): Promise<string[]> {
    const dir = prefix.replace(/\/$/, "");
    let out: string;
    if (this.store === "etcd") out = await this.etcdctl("get", `${dir}/`, "--prefix", "--keys-only");
    else if (this.store === "etcd2") out = await this.etcdctl("ls", dir).catch(() => "");
    else if (this.store !== "sqlite") out = await this.#storeOp("list", `${dir}/`);
    else {
      const store = openStore("sqlite", { endpoints: [this.endpoint] });
      const listed = await store.list(`${dir}/`).finally(() => store.close());
      out = listed.entries.map((kv) => kv.key).join("\n");
    }
    return out
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l.startsWith(`${dir}/`));
  }

  /**
   * Writes `count` leases of `bytes` each under `<prefix>/subnets/` (192.168.100.0/26 and on, PublicIP
   * 172.17.42.99), from inside the segment on every store: values too large for one argument.
   */
  async fill(count: number, bytes: number): Promise<void> {
    await this.#storeOp("fill", `${this.prefix}/subnets`, `${count}x${bytes}`);
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

  /**
   * Starts weft on host i (0-based); `--iface=eth0` unless `extra` names an interface itself or
   * `options.iface` is false (then weft takes the default route's interface, as flanneld does).
   */
  startAgent(
    i: number,
    extra: readonly string[] = [],
    env: Record<string, string> = {},
    options: { iface?: boolean } = {},
  ): Agent {
    const named = extra.some((a) => /^--?iface(-regex)?(=|$)/.test(a));
    const iface = named || options.iface === false ? [] : ["--iface=eth0"];
    // Each agent's control socket in the cluster's directory, never /run/weft of the machine.
    const socket = extra.some((a) => /^--?control-socket(=|$)/.test(a))
      ? []
      : [`--control-socket=${join(this.dir, `weft-host${i}.sock`)}`];
    const storeFlags =
      this.store === "etcd" || this.store === "etcd2"
        ? [`--store=${this.store}`, `--etcd-endpoints=${this.endpoint}`]
        : [`--store=${this.store}`, `--store-endpoints=${this.endpoint}`];
    return this.#spawnAgent(
      i,
      "weft",
      [
        process.execPath,
        MAIN,
        ...storeFlags,
        `--etcd-prefix=${this.prefix}`,
        ...iface,
        `--subnet-file=${this.subnetFile(i)}`,
        ...socket,
        ...extra,
      ],
      env,
    );
  }

  /**
   * Starts weft or flanneld on each host in turn, each once the one before wrote its subnet.env:
   * flanneld v0.28 exits on a lost subnet race, and a rolling migration starts hosts one by one anyway.
   * Returns how long each took, for the test's log.
   */
  async startInTurn(hosts: number, flanneld: readonly number[]): Promise<string[]> {
    const startup: string[] = [];
    for (let i = 0; i < hosts; i++) {
      const t0 = performance.now();
      const agent = flanneld.includes(i) ? await this.startFlanneld(i) : this.startAgent(i);
      await eventually(
        `host ${i} (${agent.kind}) to write its subnet.env`,
        async () => (await Bun.file(this.subnetFile(i)).exists()) && "FLANNEL_SUBNET" in this.subnetEnv(i),
        30_000,
      );
      startup.push(`host ${i} ${agent.kind} ${Math.round(performance.now() - t0)} ms`);
    }
    return startup;
  }

  /**
   * Starts flanneld v0.28.9 (Go-built by build/test-bin.sh) on host i with the flags startAgent gives
   * weft; stopped by stopAgent/stop like weft. flanneld speaks only the etcd v3 API (store "etcd").
   */
  async startFlanneld(i: number, extra: readonly string[] = []): Promise<Agent> {
    if (this.store !== "etcd")
      throw new Error(
        `startFlanneld: flanneld v0.28 supports only etcd v3 (store "etcd"), not "${this.store}"`,
      );
    const bin = await Cluster.testBin("flanneld");
    return this.#spawnAgent(i, "flanneld", [
      bin,
      `--etcd-endpoints=${this.endpoint}`,
      `--etcd-prefix=${this.prefix}`,
      "--iface=eth0",
      `--subnet-file=${this.subnetFile(i)}`,
      ...extra,
    ]);
  }

  /** Spawns an agent in host i's namespace and collects its stderr. */
  #spawnAgent(
    i: number,
    kind: Agent["kind"],
    command: readonly string[],
    env: Record<string, string> = {},
  ): Agent {
    const proc = this.host(i).ns.spawn(command, { env });
    let text = "";
    void (async () => {
      for await (const chunk of proc.stderr) text += new TextDecoder().decode(chunk);
    })();
    const agent = { kind, proc, log: () => text };
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
      .map((l) => withoutNhid(l.trim()))
      .filter((l) => / proto 77( |$)/.test(l))
      .sort();
  }

  /**
   * Every route into the Network on host i, whoever installed it (weft's `proto 77`, flanneld's
   * `proto boot`, which `ip route` does not print), without the kernel's connected routes (docker0):
   * `ip route show root <network>`. `network` defaults to the Network of the last writeConfig.
   */
  async routesAll(i: number, network = this.#network): Promise<string[]> {
    if (network === undefined) throw new Error("routesAll: no Network known; call writeConfig or pass one");
    const r = await this.host(i).ns.ip("route", "show", "root", network);
    return r.stdout
      .split("\n")
      .map((l) => withoutNhid(l.trim()))
      .filter((l) => l !== "" && !/ proto kernel( |$)/.test(l))
      .sort();
  }

  /** Waits until hosts 0..hosts-1 each hold `perHost` weft routes (default: one per peer). */
  async awaitRoutes(hosts: number, perHost = hosts - 1, timeoutMs = 15_000): Promise<void> {
    await eventually(
      `every one of ${hosts} hosts to hold ${perHost} weft routes`,
      async () => {
        for (let i = 0; i < hosts; i++) if ((await this.routes(i)).length !== perHost) return false;
        return true;
      },
      timeoutMs,
    );
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

/** The `Network` of a config JSON; undefined when the text is not such JSON (tests write broken ones). */
function networkOf(json: string): string | undefined {
  try {
    const network: unknown = (JSON.parse(json) as { Network?: unknown } | null)?.Network;
    return typeof network === "string" ? network : undefined;
  } catch {
    return undefined;
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
    await cluster.awaitRoutes(hosts);
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}
