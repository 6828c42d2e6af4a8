import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, lstatSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentSource } from "../../../src/agent/status.ts";
import { agentAddress, takeControlSocket } from "../../../src/cli/agent-client.ts";
import { parseFlags } from "../../../src/config/flags.ts";
import { WeftErrorCode } from "../../../src/errors.ts";
import { type ControlServer, DEFAULT_CONTROL_SOCKET, startControl } from "../../../src/http/control.ts";
import { type Readiness, type StatusSource, startHttp } from "../../../src/http/server.ts";
import { Metrics } from "../../../src/metrics.ts";

const MAIN = join(import.meta.dir, "..", "..", "..", "src", "main.ts");

/** A fake agent: ready or not as the test says, with a small /status document. */
class FakeAgent implements StatusSource {
  ready: Readiness = { ready: true, reason: "" };
  readiness(): Readiness {
    return this.ready;
  }
  status(): unknown {
    return {
      store: "sqlite",
      prefix: "/p",
      backend: "host-gw",
      network: "192.168.0.0/16",
      externalInterface: "eth0",
      publicIP: "172.17.42.41",
      lease: {
        subnet: "192.168.1.0/26",
        key: "/p/subnets/192.168.1.0-26",
        reservation: false,
        expiresAt: null,
      },
      peers: [],
      routes: 0,
      lastApply: null,
      ready: this.ready,
    };
  }
}

let dir: string;
const started: ControlServer[] = [];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-control-"));
});
afterEach(async () => {
  for (const s of started.splice(0)) await s.stop();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function control(path: string, source: StatusSource = new FakeAgent(), metrics = new Metrics()) {
  const server = await startControl({ path, metrics, source });
  started.push(server);
  return server;
}

async function get(
  path: string,
  url: string,
): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(`http://localhost${url}`, { unix: path });
  return { status: res.status, body: await res.text(), type: res.headers.get("content-type") };
}

async function weft(args: string[], uid?: number) {
  const command = [process.execPath, MAIN, ...args];
  const proc = Bun.spawn(
    uid === undefined
      ? command
      : ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", ...command],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, HOME: dir } },
  );
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { stdout, stderr, code };
}

describe("control - the local control socket", () => {
  test("control - serves exactly what the HTTP port serves", async () => {
    const source = new FakeAgent();
    const metrics = new Metrics();
    metrics.ready.set(1);
    const path = join(dir, "same", "weft.sock");
    await control(path, source, metrics);
    const http = startHttp({ hostname: "127.0.0.1", port: 0, metrics, source });
    try {
      for (const url of ["/healthz", "/readyz", "/metrics", "/status", "/nothing"]) {
        const viaTcp = await fetch(`http://127.0.0.1:${http.port}${url}`);
        const expected = {
          status: viaTcp.status,
          body: await viaTcp.text(),
          type: viaTcp.headers.get("content-type"),
        };
        expect(await get(path, url)).toEqual(expected);
      }
      expect((await get(path, "/metrics")).body).toMatch(/^weft_ready 1$/m);
      source.ready = { ready: false, reason: "first apply pending" };
      expect(await get(path, "/readyz")).toMatchObject({
        status: 503,
        body: "weft is not ready: first apply pending\n",
      });
    } finally {
      await http.stop(true);
    }
  });

  test("control - the socket is 0600 in a directory created 0700", async () => {
    const path = join(dir, "fresh", "run", "weft.sock");
    await control(path);
    expect(lstatSync(path).isSocket()).toBe(true);
    expect(lstatSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "fresh", "run")).mode & 0o777).toBe(0o700);
  });

  test("control - a stale socket is replaced at start and the socket is removed on stop", async () => {
    const path = join(dir, "stale.sock");
    // An agent killed with SIGKILL leaves its socket file behind, with nobody listening.
    const killed = Bun.spawn(
      [
        process.execPath,
        "-e",
        `Bun.serve({ unix: ${JSON.stringify(path)}, fetch: () => new Response("") }); console.log("up");`,
      ],
      { stdout: "pipe" },
    );
    const reader = killed.stdout.getReader();
    await reader.read();
    killed.kill("SIGKILL");
    await killed.exited;
    expect(lstatSync(path).isSocket()).toBe(true);
    // Without removing the stale file first, binding fails with EADDRINUSE.
    const server = await control(path);
    expect((await get(path, "/healthz")).body).toBe("weft is running\n");
    await server.stop();
    expect(() => lstatSync(path)).toThrow();
  });

  test("control - a socket another agent still answers on is not taken over", async () => {
    const path = join(dir, "busy.sock");
    await control(path);
    const err = await startControl({ path, metrics: new Metrics(), source: new FakeAgent() }).catch((e) => e);
    expect(err.code).toBe(WeftErrorCode.Io);
    expect(err.message).toContain(`another weft agent answers on ${path}`);
    expect((await get(path, "/healthz")).status).toBe(200);
  });

  test("control - a path that is not a socket is refused and left alone", async () => {
    const path = join(dir, "file.sock");
    writeFileSync(path, "mine");
    const err = await startControl({ path, metrics: new Metrics(), source: new FakeAgent() }).catch((e) => e);
    expect(err.message).toContain("is not a socket");
    expect(await Bun.file(path).text()).toBe("mine");
  });

  test("control - before the agent exists it answers not ready with the start-up step", async () => {
    const starting = new AgentSource();
    starting.waiting("waiting for the network config at /coreos.com/network/config");
    const path = join(dir, "starting.sock");
    await control(path, starting);
    expect(await get(path, "/readyz")).toMatchObject({
      status: 503,
      body: "weft is not ready: waiting for the network config at /coreos.com/network/config\n",
    });
    const r = await weft(["status", `--control-socket=${path}`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("ready  no: waiting for the network config at /coreos.com/network/config\n");
    starting.attach(new FakeAgent());
    expect((await get(path, "/readyz")).status).toBe(200);
    expect(JSON.parse((await get(path, "/status")).body)).toMatchObject({ publicIP: "172.17.42.41" });
  });
});

describe("status - reaching the agent", () => {
  test("status - --control-socket is taken out of the agent flags, the last one wins", () => {
    expect(
      takeControlSocket(["--store=sqlite", "--control-socket=/a", "-control-socket", "/b", "--json"]),
    ).toEqual({
      path: "/b",
      rest: ["--store=sqlite", "--json"],
    });
    expect(() => takeControlSocket(["--control-socket"])).toThrow("--control-socket needs a socket path");
    expect(takeControlSocket([], { WEFT_CONTROL_SOCKET: "/env.sock" }).path).toBe("/env.sock");
    expect(takeControlSocket(["--control-socket=/a"], { WEFT_CONTROL_SOCKET: "/env.sock" }).path).toBe("/a");
    expect(takeControlSocket([], { WEFT_CONTROL_SOCKET: "" }).path).toBeUndefined();
  });

  test("status - the control socket by default, the HTTP port only when --healthz-port is given", () => {
    expect(agentAddress(parseFlags([], {}), undefined)).toEqual({
      kind: "socket",
      path: DEFAULT_CONTROL_SOCKET,
    });
    expect(agentAddress(parseFlags(["--healthz-port=9471"], {}), undefined)).toEqual({
      kind: "http",
      base: "http://127.0.0.1:9471",
      port: 9471,
    });
    expect(agentAddress(parseFlags(["--healthz-port=9471"], {}), "/x.sock")).toEqual({
      kind: "socket",
      path: "/x.sock",
    });
  });

  test("status - prints the agent's state read over the control socket", async () => {
    const path = join(dir, "status.sock");
    await control(path);
    const r = await weft(["status", `--control-socket=${path}`]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^lease +192\.168\.1\.0\/26 /m);
    expect(r.stdout).toMatch(/^ready +yes$/m);
    const json = await weft(["status", "--json", `--control-socket=${path}`]);
    expect(JSON.parse(json.stdout).publicIP).toBe("172.17.42.41");
  });

  test("status - an absent socket asks whether weft is running", async () => {
    const path = join(dir, "absent.sock");
    const r = await weft(["status", `--control-socket=${path}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`is weft running? the socket ${path} does not exist`);
  });

  test.skipIf(process.getuid?.() !== 0)(
    "status - a root-only socket tells other users to run as root",
    async () => {
      const open = join(dir, "open");
      const path = join(open, "weft.sock");
      await control(path);
      chmodSync(dir, 0o755);
      chmodSync(open, 0o755);
      const r = await weft(["status", `--control-socket=${path}`], 65534);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`permission denied on ${path}: the control socket is root-only`);
      const hidden = join(dir, "hidden", "weft.sock");
      await control(hidden);
      const r2 = await weft(["status", `--control-socket=${hidden}`], 65534);
      expect(r2.stderr).toContain("permission denied");
      expect(r2.stderr).toContain("root-only");
      chmodSync(dir, 0o700);
    },
  );
});
