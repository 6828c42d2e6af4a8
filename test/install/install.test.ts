/**
 * install.sh end to end: the x64 binary is built once, a Bun.serve on 127.0.0.1 serves install.sh and
 * the release files (/latest/… genuine, /tampered/… with a binary that does not match SHA256SUMS),
 * and the installer runs as `curl … | sh` into temporary roots (WEFT_ROOT) — never into /.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const repo = resolve(import.meta.dir, "..", "..");
const installer = join(repo, "install.sh");
let tmp = "";
let dist = "";
let base = "";
let server: ReturnType<typeof Bun.serve> | undefined;

const BIN = "usr/local/bin/weft";
const UNIT = "etc/systemd/system/weft.service";
const ENV = "etc/weft/weft.env";
const STORE_FLAGS = "--store=consul --store-endpoints=http://127.0.0.1:8500";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string[], env: Record<string, string> = {}): Promise<Run> {
  // Async spawn: the HTTP server lives in this process and must keep answering meanwhile.
  const p = Bun.spawn(cmd, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout, stderr };
}

/**
 * `curl -fsSL <base>/install.sh | WEFT_BASE_URL=<base> WEFT_ALLOW_HTTP=1 WEFT_ROOT=<root> [WEFT_VERSION=v] sh -s -- args`
 * (the test server is plain http on 127.0.0.1, which the installer refuses without WEFT_ALLOW_HTTP=1).
 */
function curlPipe(root: string, args: string, version?: string): Promise<Run> {
  const vars = `WEFT_BASE_URL=${base} WEFT_ALLOW_HTTP=1 WEFT_ROOT=${root}${version === undefined ? "" : ` WEFT_VERSION=${version}`}`;
  return run(["sh", "-c", `curl -fsSL ${base}/install.sh | ${vars} sh -s -- ${args}`]);
}

/**
 * A root of its own with weft installed (`curl | sh` with STORE_FLAGS), so a case that needs an
 * installed system does not depend on an earlier case having installed or uninstalled it.
 */
async function installedRoot(name: string): Promise<string> {
  const root = join(tmp, name);
  const r = await curlPipe(root, STORE_FLAGS);
  if (r.code !== 0) throw new Error(`install into ${root} failed (${r.code}):\n${r.stderr}`);
  return root;
}

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => !d.isDirectory())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1))
    .sort();
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "weft-install-test-"));
  dist = join(tmp, "dist");
  const built = await run([
    process.execPath,
    join(repo, "build", "compile.ts"),
    "--out",
    dist,
    "--only",
    "x64",
  ]);
  if (built.code !== 0) throw new Error(`build failed:\n${built.stderr}${built.stdout}`);
  const tampered = join(tmp, "tampered");
  cpSync(dist, tampered, { recursive: true });
  writeFileSync(join(tampered, "weft-linux-x64"), "#!/bin/sh\necho not weft\n");
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/install.sh") return new Response(Bun.file(installer));
      const m = /^\/(latest|tampered)\/(weft-linux-x64|weft-linux-arm64|SHA256SUMS)$/.exec(path);
      if (m?.[1] !== undefined && m[2] !== undefined) {
        const file = join(m[1] === "latest" ? dist : tampered, m[2]);
        if (existsSync(file)) return new Response(Bun.file(file));
      }
      return new Response("not found\n", { status: 404 });
    },
  });
  base = `http://127.0.0.1:${server.port}`;
}, 120_000);

afterAll(() => {
  server?.stop(true);
  if (tmp !== "") rmSync(tmp, { recursive: true, force: true });
});

test("install - curl | sh installs the binary, the unit and the env file with the store flags", async () => {
  const root = join(tmp, "root");
  const r = await curlPipe(root, STORE_FLAGS);
  expect(r.stderr).toContain("weft-install: checksum verified");
  expect(r.code).toBe(0);
  expect(files(root)).toEqual([ENV, UNIT, BIN].sort());

  const version = await run([join(root, BIN), "version"]);
  expect(version.code).toBe(0);
  expect(version.stdout).toMatch(/^weft \d+\.\d+\.\d+/);
  expect(statSync(join(root, BIN)).mode & 0o777).toBe(0o755);

  const unit = readFileSync(join(root, UNIT), "utf8");
  for (const line of [
    "Type=notify",
    "NotifyAccess=main",
    "Restart=always",
    "Before=docker.service",
    "After=network-online.target",
    "Wants=network-online.target",
    "EnvironmentFile=-/etc/weft/weft.env",
    "ExecStart=/usr/local/bin/weft $WEFT_ARGS",
    "ExecStartPost=/usr/local/bin/weft mk-docker-opts -d /run/docker_opts.env",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
  ]) {
    expect(unit.split("\n")).toContain(line);
  }
  expect(unit).toMatch(/^CapabilityBoundingSet=.*CAP_NET_ADMIN.*$/m);
  expect(unit).toMatch(/^CapabilityBoundingSet=.*CAP_NET_RAW.*$/m);
  expect(unit).not.toMatch(/^MemoryDenyWriteExecute=/m); // Bun's JIT needs W+X memory

  const env = readFileSync(join(root, ENV), "utf8");
  expect(env.split("\n")).toContain(`WEFT_ARGS="${STORE_FLAGS}"`);
}, 60_000);

test("install - a second run changes nothing", async () => {
  const root = await installedRoot("root-second");
  const before = [BIN, UNIT, ENV].map((f) => statSync(join(root, f)).mtimeMs);
  const env = readFileSync(join(root, ENV), "utf8");
  // Different flags on the second run: the existing env file must still not be overwritten.
  const r = await curlPipe(root, "--store=etcd --etcd-endpoints=http://127.0.0.1:2379");
  expect(r.code).toBe(0);
  expect(r.stderr).toContain(`weft-install: unchanged: ${join(root, BIN)}`);
  expect(r.stderr).toContain(`weft-install: unchanged: ${join(root, UNIT)}`);
  expect(r.stderr).toContain(`kept existing ${join(root, ENV)} (not overwritten)`);
  expect(r.stderr).toContain("nothing changed");
  expect([BIN, UNIT, ENV].map((f) => statSync(join(root, f)).mtimeMs)).toEqual(before);
  expect(readFileSync(join(root, ENV), "utf8")).toBe(env);
  expect(files(root)).toEqual([ENV, UNIT, BIN].sort());
}, 60_000);

test("install - a tampered binary is refused and nothing is installed", async () => {
  const root = join(tmp, "root-tampered");
  const r = await curlPipe(root, STORE_FLAGS, "tampered");
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain("weft-install: error: checksum mismatch for weft-linux-x64");
  expect(r.stderr).toContain("nothing installed");
  expect(files(root)).toEqual([]);
}, 60_000);

test("install - an unknown WEFT_VERSION (HTTP 404) stops with a clear message and installs nothing", async () => {
  const root = join(tmp, "root-404");
  const r = await curlPipe(root, STORE_FLAGS, "v0.0.0-missing");
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain(`weft-install: error: download of ${base}/v0.0.0-missing/SHA256SUMS failed`);
  expect(files(root)).toEqual([]);
}, 60_000);

test("install - an argument that is not a --flag is refused before anything is downloaded", async () => {
  const root = join(tmp, "root-badarg");
  const r = await curlPipe(root, "consul");
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain("weft-install: error: unknown argument 'consul'");
  expect(r.stderr).not.toContain("downloading");
  expect(files(root)).toEqual([]);
}, 60_000);

test("install - an unknown architecture stops with a clear message and installs nothing", async () => {
  const root = join(tmp, "root-arch");
  const shim = join(tmp, "shim");
  mkdirSync(shim, { recursive: true });
  writeFileSync(
    join(shim, "uname"),
    '#!/bin/sh\nif [ "$1" = -m ]; then echo riscv64; else exec /usr/bin/uname "$@"; fi\n',
    { mode: 0o755 },
  );
  const r = await run(["sh", installer, "--store=consul"], {
    PATH: `${shim}:${process.env.PATH ?? "/usr/bin:/bin"}`,
    WEFT_BASE_URL: base,
    WEFT_ALLOW_HTTP: "1",
    WEFT_ROOT: root,
  });
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain("weft-install: error: unsupported architecture 'riscv64'");
  expect(files(root)).toEqual([]);
}, 60_000);

test("install - systemd-analyze verify accepts the unit", async () => {
  const root = await installedRoot("root-verify");
  // verify checks that ExecStart's binary exists: point it at the installed copy under the root.
  const unit = readFileSync(join(root, UNIT), "utf8").replaceAll("/usr/local/bin/weft", join(root, BIN));
  const copy = join(tmp, "verify", "weft.service");
  cpSync(join(root, UNIT), copy);
  writeFileSync(copy, unit);
  const r = await run(["systemd-analyze", "verify", copy]);
  expect(`${r.stdout}${r.stderr}`.trim()).toBe("");
  expect(r.code).toBe(0);
}, 60_000);

test("install - shellcheck passes on install.sh", async () => {
  const r = await run(["shellcheck", "-s", "sh", installer]);
  expect(`${r.stdout}${r.stderr}`.trim()).toBe("");
  expect(r.code).toBe(0);
}, 60_000);

test("install - --uninstall removes the binary and the unit and keeps the env file", async () => {
  const root = await installedRoot("root-uninstall");
  const r = await curlPipe(root, "--uninstall");
  expect(r.code).toBe(0);
  expect(r.stderr).toContain(`weft-install: removed ${join(root, BIN)}`);
  expect(r.stderr).toContain(`kept ${join(root, ENV)}`);
  expect(files(root)).toEqual([ENV]);
}, 60_000);

test("install - --uninstall --purge removes the env file too", async () => {
  const root = await installedRoot("root-purge");
  const r = await curlPipe(root, "--uninstall --purge");
  expect(r.code).toBe(0);
  expect(r.stderr).toContain(`weft-install: removed ${join(root, ENV)}`);
  expect(files(root)).toEqual([]);
}, 60_000);

// The path a real host takes: no WEFT_ROOT, systemd running. It runs in a private mount namespace
// whose /etc, /usr/local/bin and /run are overlays on directories of this test, so the machine's own
// files are never written; `systemctl` is a stub on PATH that records its arguments.
const canUnshare =
  process.getuid?.() === 0 &&
  Bun.which("unshare") !== null &&
  readFileSync("/proc/filesystems", "utf8").includes("overlay");

test.skipIf(!canUnshare || existsSync("/usr/local/bin/weft") || existsSync("/etc/weft"))(
  "install - with systemd running it installs into /, enables and (re)starts the unit; --uninstall disables it",
  async () => {
    const dir = join(tmp, "systemd-host");
    const stubs = join(dir, "bin");
    mkdirSync(stubs, { recursive: true });
    const calls = join(dir, "systemctl.log");
    writeFileSync(join(stubs, "systemctl"), `#!/bin/sh\necho "$*" >> '${calls}'\n`, { mode: 0o755 });
    const script = `
      set -eu
      for d in /etc /usr/local/bin /run; do
        o="${dir}/overlay$(echo "$d" | tr / _)"
        mkdir -p "$o/upper" "$o/work"
        mount -t overlay overlay -o "lowerdir=$d,upperdir=$o/upper,workdir=$o/work" "$d"
      done
      mkdir -p /run/systemd/system
      export PATH="${stubs}:$PATH" WEFT_BASE_URL="${base}" WEFT_ALLOW_HTTP=1
      echo "# first" >> "${calls}"
      curl -fsSL "${base}/install.sh" | sh -s -- ${STORE_FLAGS}
      /usr/local/bin/weft version
      echo "# again" >> "${calls}"
      curl -fsSL "${base}/install.sh" | sh -s -- ${STORE_FLAGS}
      echo "# uninstall" >> "${calls}"
      sh "${installer}" --uninstall
      if [ -e /usr/local/bin/weft ] || [ -e /etc/systemd/system/weft.service ]; then echo left; exit 1; fi
      test -f /etc/weft/weft.env
    `;
    const r = await run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script]);
    if (r.code !== 0) console.error(r.stdout, r.stderr);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^weft \d+\.\d+\.\d+ /m);
    expect(r.stderr).toContain("weft-install: weft.service enabled and (re)started");
    expect(r.stderr).toContain("weft-install: weft.service enabled and running");
    expect(readFileSync(calls, "utf8").trim().split("\n")).toEqual([
      "# first",
      "daemon-reload",
      "enable weft.service",
      "restart weft.service",
      "# again",
      "daemon-reload",
      "enable weft.service",
      "start weft.service",
      "# uninstall",
      "disable --now weft.service",
      "daemon-reload",
    ]);
    // Everything went to the overlays: the machine has no weft afterwards.
    expect(existsSync("/usr/local/bin/weft")).toBe(false);
    expect(existsSync("/etc/weft")).toBe(false);
    expect(existsSync(join(dir, "overlay_usr_local_bin", "upper"))).toBe(true);
  },
  60_000,
);
