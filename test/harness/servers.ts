/**
 * Real store servers for tests, run as child processes on 127.0.0.1 with free random ports and a
 * temporary data directory. Every server is stopped by the test that started it; an exit hook kills
 * any that a crashed test left behind, so no server outlives the test process.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

const live = new Set<Subprocess>();
process.on("exit", () => {
  for (const proc of live) proc.kill("SIGKILL");
});

/** A port that was free a moment ago (bound to 127.0.0.1:0 and released). */
export function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

export interface TestServer {
  /** Client URL, e.g. `http://127.0.0.1:40123`. */
  readonly endpoint: string;
  readonly dataDir: string;
  /** SIGKILL, as a crash would. The data stays for `start()`. */
  kill(): Promise<void>;
  /** Starts the server again on the same ports and data. */
  start(): Promise<void>;
  /** SIGTERM (SIGKILL after 5 s) and removes the data directory. */
  stop(): Promise<void>;
}

export interface ServerSpec {
  readonly name: string;
  readonly command: string[];
  readonly env?: Record<string, string>;
  readonly endpoint: string;
  readonly dataDir: string;
  /** Resolves true once the server answers. */
  ready(): Promise<boolean>;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await Bun.sleep(50);
  }
  return false;
}

export function managedServer(spec: ServerSpec): TestServer {
  let proc: Subprocess | undefined;
  let log = "";

  const exit = async (signal: "SIGTERM" | "SIGKILL") => {
    const p = proc;
    if (p === undefined) return;
    proc = undefined;
    p.kill(signal);
    const done = await Promise.race([p.exited.then(() => true), Bun.sleep(5_000).then(() => false)]);
    if (!done) {
      p.kill("SIGKILL");
      await p.exited;
    }
    live.delete(p);
  };

  const server: TestServer = {
    endpoint: spec.endpoint,
    dataDir: spec.dataDir,
    async start() {
      const p = Bun.spawn(spec.command, {
        env: { ...process.env, ...spec.env },
        stdout: "pipe",
        stderr: "pipe",
      });
      proc = p;
      live.add(p);
      const collect = async (stream: ReadableStream<Uint8Array>) => {
        for await (const chunk of stream) log = (log + new TextDecoder().decode(chunk)).slice(-4_000);
      };
      void collect(p.stdout as ReadableStream<Uint8Array>);
      void collect(p.stderr as ReadableStream<Uint8Array>);
      const up = await waitFor(async () => p.exitCode === null && (await spec.ready()), 20_000);
      if (!up) {
        await exit("SIGKILL");
        throw new Error(`${spec.name} did not start on ${spec.endpoint}; last output:\n${log}`);
      }
    },
    kill: () => exit("SIGKILL"),
    async stop() {
      await exit("SIGTERM");
      rmSync(spec.dataDir, { recursive: true, force: true });
    },
  };
  return server;
}

export interface EtcdServer extends TestServer {
  /** `etcdctl` (v3 API) against this server; resolves with stdout. */
  etcdctl(...args: string[]): Promise<string>;
}

/** Client TLS files of a test server (see `tls.ts`): its CA, and a certificate and key it presents. */
export interface ServerTls {
  readonly caFile: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** A client certificate the server accepts, for the harness's own requests. */
  readonly clientCert: string;
  readonly clientKey: string;
}

/** Bun's fetch `tls` option that presents the client certificate and trusts the test CA. */
export function clientTls(tls: ServerTls): { tls: { ca: Blob; cert: Blob; key: Blob } } {
  return { tls: { ca: Bun.file(tls.caFile), cert: Bun.file(tls.clientCert), key: Bun.file(tls.clientKey) } };
}

/**
 * Debian's etcd-server 3.4 on loopback; `enableV2` also serves the v2 keys API. With `tls` it serves
 * https:// only and requires a client certificate signed by the CA (`--client-cert-auth`).
 */
export async function startEtcd(options: { enableV2?: boolean; tls?: ServerTls } = {}): Promise<EtcdServer> {
  const clientPort = freePort();
  const peerPort = freePort();
  const tls = options.tls;
  const endpoint = `${tls === undefined ? "http" : "https"}://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const dataDir = mkdtempSync(join(tmpdir(), "weft-etcd-"));
  const server = managedServer({
    name: "etcd",
    endpoint,
    dataDir,
    command: [
      "etcd",
      "--name=weft-test",
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=weft-test=${peer}`,
      `--enable-v2=${options.enableV2 === true}`,
      "--log-level=warn",
      ...(tls === undefined
        ? []
        : [
            "--client-cert-auth",
            `--trusted-ca-file=${tls.caFile}`,
            `--cert-file=${tls.serverCert}`,
            `--key-file=${tls.serverKey}`,
          ]),
    ],
    async ready() {
      const res = await fetch(`${endpoint}/health`, {
        signal: AbortSignal.timeout(1_000),
        ...(tls === undefined ? {} : clientTls(tls)),
      });
      return res.ok && ((await res.json()) as { health?: string }).health === "true";
    },
  });
  await server.start();
  return {
    ...server,
    async etcdctl(...args: string[]) {
      const certs =
        tls === undefined
          ? []
          : [`--cacert=${tls.caFile}`, `--cert=${tls.clientCert}`, `--key=${tls.clientKey}`];
      const p = Bun.spawn(["etcdctl", `--endpoints=${endpoint}`, ...certs, ...args], {
        env: { ...process.env, ETCDCTL_API: "3" },
        stdout: "pipe",
        stderr: "pipe",
      });
      const [out, err, code] = await Promise.all([
        new Response(p.stdout).text(),
        new Response(p.stderr).text(),
        p.exited,
      ]);
      if (code !== 0) throw new Error(`etcdctl ${args.join(" ")} exited ${code}: ${err}`);
      return out;
    },
  };
}
