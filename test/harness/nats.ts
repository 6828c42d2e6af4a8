/**
 * NATS servers with JetStream for tests, on 127.0.0.1 with free random ports and a temporary store
 * directory that survives `kill()` + `start()` (a crash and a restart on the same data).
 *
 * - flavour "2.15": nats-server v2.15.2 built once by `build/test-bin.sh nats-server` into
 *   ~/.cache/weft-test-bin (per-message TTL and expiry markers, ADR-43). A failed build fails the
 *   caller with the build's output; nothing is skipped.
 * - flavour "2.9": Debian bookworm's `/usr/sbin/nats-server` 2.9.10 (no per-message TTL), installed
 *   by build/setup.sh.
 *
 * Readiness is the monitoring endpoint's `/healthz` (JetStream included) answering ok.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, managedServer, type ServerTls, type TestServer } from "./servers.ts";

export type NatsFlavour = "2.15" | "2.9";

export interface NatsServer extends TestServer {
  readonly flavour: NatsFlavour;
  /** The server binary that runs. */
  readonly binary: string;
  /** `http://127.0.0.1:<port>` of the monitoring endpoint (`/varz`, `/jsz`, `/healthz`). */
  readonly monitor: string;
}

export interface NatsAuth {
  readonly user?: string;
  readonly pass?: string;
  readonly token?: string;
}

const DEBIAN_BINARY = "/usr/sbin/nats-server";
let built: Promise<string> | undefined;

/** Path of the cached v2.15.2 build, building it on first use (about a minute). */
function buildNats215(): Promise<string> {
  built ??= (async () => {
    const script = join(import.meta.dir, "..", "..", "build", "test-bin.sh");
    const proc = Bun.spawn(["bash", script, "nats-server"], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) throw new Error(`build/test-bin.sh nats-server failed (exit ${code}):\n${err}`);
    return out.trim().split("\n").pop() ?? "";
  })();
  return built;
}

async function binaryFor(flavour: NatsFlavour): Promise<string> {
  if (flavour === "2.15") return buildNats215();
  if (!(await Bun.file(DEBIAN_BINARY).exists())) {
    throw new Error(`${DEBIAN_BINARY} is missing: run build/setup.sh (Debian package nats-server)`);
  }
  return DEBIAN_BINARY;
}

/**
 * Starts a JetStream-enabled nats-server of the given flavour; stop it with `stop()`. With `tls` the
 * client port requires TLS and a client certificate signed by the CA (`--tlsverify`).
 */
export async function startNats(options: {
  flavour: NatsFlavour;
  auth?: NatsAuth;
  tls?: ServerTls;
}): Promise<NatsServer> {
  const binary = await binaryFor(options.flavour);
  const port = freePort();
  const monitorPort = freePort();
  const endpoint = `nats://127.0.0.1:${port}`;
  const monitor = `http://127.0.0.1:${monitorPort}`;
  const dataDir = mkdtempSync(join(tmpdir(), `weft-nats-${options.flavour}-`));
  const auth = options.auth ?? {};
  const command = [
    binary,
    "-js",
    "-sd",
    dataDir,
    "-a",
    "127.0.0.1",
    "-p",
    String(port),
    "-m",
    String(monitorPort),
    "-n",
    `weft-test-${port}`,
    ...(auth.user === undefined ? [] : ["--user", auth.user]),
    ...(auth.pass === undefined ? [] : ["--pass", auth.pass]),
    ...(auth.token === undefined ? [] : ["--auth", auth.token]),
    ...(options.tls === undefined
      ? []
      : [
          "--tls",
          "--tlscert",
          options.tls.serverCert,
          "--tlskey",
          options.tls.serverKey,
          "--tlscacert",
          options.tls.caFile,
          "--tlsverify",
        ]),
  ];
  const server = managedServer({
    name: `nats-server ${options.flavour}`,
    endpoint,
    dataDir,
    command,
    async ready() {
      const res = await fetch(`${monitor}/healthz`, { signal: AbortSignal.timeout(1_000) });
      return res.ok && ((await res.json()) as { status?: string }).status === "ok";
    },
  });
  await server.start();
  return { ...server, flavour: options.flavour, binary, monitor };
}
