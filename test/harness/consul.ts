/**
 * A Consul server for tests: one server agent on 127.0.0.1 with free random ports (HTTP, serf LAN and
 * WAN, server RPC; DNS and gRPC off) and a temporary data directory. It runs as a real single-server
 * cluster (`-server -bootstrap-expect=1`), not `-dev`: dev mode keeps raft in memory, so KV and
 * sessions would not survive `kill()` + `start()`. The binary is built once by
 * `build/test-bin.sh consul` into ~/.cache/weft-test-bin; a failed build fails the caller with the
 * build's output, nothing is skipped. Ready = a leader, a KV read answered, and the agent's node in
 * the catalog (sessions need it).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, managedServer, type TestServer } from "./servers.ts";

export interface ConsulServer extends TestServer {
  /** The consul binary that runs. */
  readonly binary: string;
  /** The ACL management token when started with `acl: true` (send it as `X-Consul-Token`). */
  readonly managementToken: string | undefined;
}

export interface ConsulOptions {
  /** Enables ACLs with default policy deny and a management token. */
  readonly acl?: boolean;
}

const NODE = "weft-test";
let built: Promise<string> | undefined;

/** Path of the cached consul build, building it on first use (minutes, once per machine). */
export function consulBinary(): Promise<string> {
  built ??= (async () => {
    const script = join(import.meta.dir, "..", "..", "build", "test-bin.sh");
    const proc = Bun.spawn(["bash", script, "consul"], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) throw new Error(`build/test-bin.sh consul failed (exit ${code}):\n${err}`);
    return out.trim().split("\n").pop() ?? "";
  })();
  return built;
}

export async function startConsul(options: ConsulOptions = {}): Promise<ConsulServer> {
  const binary = await consulBinary();
  const httpPort = freePort();
  const endpoint = `http://127.0.0.1:${httpPort}`;
  const dataDir = mkdtempSync(join(tmpdir(), "weft-consul-"));
  const managementToken = options.acl === true ? crypto.randomUUID() : undefined;
  const config = [
    "disable_update_check = true",
    // One raft timing unit instead of five: a restarted single server elects itself in about a second.
    "performance { raft_multiplier = 1 }",
    ...(managementToken === undefined
      ? []
      : [
          `acl { enabled = true, default_policy = "deny", tokens { initial_management = "${managementToken}" } }`,
        ]),
  ];
  const headers: Record<string, string> =
    managementToken === undefined ? {} : { "x-consul-token": managementToken };
  const server = managedServer({
    name: "consul",
    endpoint,
    dataDir,
    command: [
      binary,
      "agent",
      "-server",
      "-bootstrap-expect=1",
      `-node=${NODE}`,
      "-bind=127.0.0.1",
      "-advertise=127.0.0.1",
      "-client=127.0.0.1",
      `-data-dir=${dataDir}`,
      `-http-port=${httpPort}`,
      "-dns-port=-1",
      "-grpc-port=-1",
      "-grpc-tls-port=-1",
      `-serf-lan-port=${freePort()}`,
      `-serf-wan-port=${freePort()}`,
      `-server-port=${freePort()}`,
      "-log-level=warn",
      ...config.flatMap((hcl) => ["-hcl", hcl]),
    ],
    async ready() {
      const signal = AbortSignal.timeout(1_000);
      const leader = await fetch(`${endpoint}/v1/status/leader`, { signal });
      if (!leader.ok || ((await leader.json()) as string) === "") return false;
      const kv = await fetch(`${endpoint}/v1/kv/weft-ready-probe`, { headers, signal });
      await kv.arrayBuffer();
      if (kv.status !== 404 && kv.status !== 200) return false;
      // Sessions need the agent's own node in the catalog, which comes shortly after the leader.
      const node = await fetch(`${endpoint}/v1/catalog/node/${NODE}`, { headers, signal });
      return node.ok && (await node.json()) !== null;
    },
  });
  await server.start();
  return { ...server, binary, managementToken };
}
