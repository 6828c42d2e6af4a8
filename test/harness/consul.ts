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
import { clientTls, freePort, managedServer, type ServerTls, type TestServer } from "./servers.ts";

export interface ConsulServer extends TestServer {
  /** The consul binary that runs. */
  readonly binary: string;
  /** The ACL management token when started with `acl` (send it as `X-Consul-Token`). */
  readonly managementToken: string | undefined;
}

export interface ConsulOptions {
  /**
   * Enables ACLs with default policy deny: `true` with a management token set in the config,
   * `"bootstrap"` with none, the ACL system then bootstrapped over the API (`PUT /v1/acl/bootstrap`)
   * once the server leads, as an operator does it.
   */
  readonly acl?: boolean | "bootstrap";
  /** Serves the API over HTTPS only and requires a client certificate signed by the CA. */
  readonly tls?: ServerTls;
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
  const tls = options.tls;
  const endpoint = `${tls === undefined ? "http" : "https"}://127.0.0.1:${httpPort}`;
  const dataDir = mkdtempSync(join(tmpdir(), "weft-consul-"));
  const bootstrap = options.acl === "bootstrap";
  let managementToken: string | undefined = options.acl === true ? crypto.randomUUID() : undefined;
  const config = [
    "disable_update_check = true",
    // One raft timing unit instead of five: a restarted single server elects itself in about a second.
    "performance { raft_multiplier = 1 }",
    ...(managementToken === undefined
      ? []
      : [
          `acl { enabled = true, default_policy = "deny", tokens { initial_management = "${managementToken}" } }`,
        ]),
    ...(bootstrap ? ['acl { enabled = true, default_policy = "deny" }'] : []),
    ...(tls === undefined
      ? []
      : [
          `tls { defaults { ca_file = "${tls.caFile}", cert_file = "${tls.serverCert}", key_file = "${tls.serverKey}" }, https { verify_incoming = true } }`,
        ]),
  ];
  const fetchTls = tls === undefined ? {} : clientTls(tls);
  const headers = (): Record<string, string> =>
    managementToken === undefined ? {} : { "x-consul-token": managementToken };
  /** Sessions need the agent's own node in the catalog, which comes shortly after the leader. */
  const nodeKnown = async (signal: AbortSignal) => {
    const node = await fetch(`${endpoint}/v1/catalog/node/${NODE}`, {
      headers: headers(),
      signal,
      ...fetchTls,
    });
    return node.ok && (await node.json()) !== null;
  };
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
      ...(tls === undefined ? [`-http-port=${httpPort}`] : ["-http-port=-1", `-https-port=${httpPort}`]),
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
      const leader = await fetch(`${endpoint}/v1/status/leader`, { signal, ...fetchTls });
      if (!leader.ok || ((await leader.json()) as string) === "") return false;
      // Without a token yet, the anonymous token may read nothing: the leader is all there is to see.
      if (bootstrap && managementToken === undefined) return true;
      const kv = await fetch(`${endpoint}/v1/kv/weft-ready-probe`, {
        headers: headers(),
        signal,
        ...fetchTls,
      });
      await kv.arrayBuffer();
      if (kv.status !== 404 && kv.status !== 200) return false;
      return nodeKnown(signal);
    },
  });
  await server.start();
  if (bootstrap) {
    // The ACL system comes up a moment after leadership: "ACL system must be bootstrapped" until then.
    const deadline = Date.now() + 20_000;
    let said = "";
    while (
      managementToken === undefined ||
      !(await nodeKnown(AbortSignal.timeout(1_000)).catch(() => false))
    ) {
      if (Date.now() > deadline) {
        await server.stop();
        throw new Error(`consul: ACL bootstrap did not complete within 20 s: ${said}`);
      }
      if (managementToken === undefined) {
        const res = await fetch(`${endpoint}/v1/acl/bootstrap`, { method: "PUT", ...fetchTls });
        said = await res.text();
        if (res.ok) managementToken = (JSON.parse(said) as { SecretID: string }).SecretID;
      }
      await Bun.sleep(100);
    }
  }
  return { ...server, binary, managementToken };
}
