// `weft config set` and `weft config get` as commands (a child process, the way operators run them).
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const MAIN = join(import.meta.dir, "..", "..", "..", "src", "main.ts");
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function weft(args: string[], stdin?: string) {
  const proc = Bun.spawnSync([process.execPath, MAIN, ...args], {
    ...(stdin === undefined ? {} : { stdin: new Blob([stdin]) }),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

test("config command - get prints what set stored, byte for byte; get before set exits 1 naming the key", () => {
  const dir = mkdtempSync(join(tmpdir(), "weft-config-"));
  dirs.push(dir);
  const store = [
    "--store=sqlite",
    `--store-endpoints=${join(dir, "weft.db")}`,
    "--etcd-prefix=/docker/network/",
  ];
  const missing = weft(["config", "get", ...store]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toBe("no network config at /docker/network/config\n");
  const json = '{"Network": "10.2.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan", "VNI": 100}}';
  expect(weft(["config", "set", ...store], json).code).toBe(0);
  const got = weft(["config", "get", ...store]);
  expect(got.code).toBe(0);
  expect(got.stdout).toBe(`${json}\n`);
  const bad = weft(["config", "set", ...store], json.replace('"vxlan"', '"udp"'));
  expect(bad.code).toBe(1);
  expect(bad.stderr).toContain('Backend.Type "udp" is invalid');
  expect(weft(["config", "get", ...store]).stdout).toBe(`${json}\n`);
});
