// The compiled binary stands alone: built with build/compile.ts, copied away from the source tree and
// run from another directory, it reports its version, prints help, and runs the whole demo (agents on
// SQLite, bun:ffi netlink, iptables) in network namespaces.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testNetns } from "../harness/netns.ts";

const root = join(import.meta.dir, "..", "..");
let dir: string;
let binary: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-compile-"));
  const build = Bun.spawnSync(
    [process.execPath, join(root, "build", "compile.ts"), "--out", join(dir, "dist"), "--only", "x64"],
    {
      cwd: root,
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  if (build.exitCode !== 0) throw new Error(`build failed: ${build.stderr.toString()}`);
  // Moved away from where it was built, into a directory of its own.
  binary = join(dir, "bin", "weft");
  Bun.spawnSync(["mkdir", "-p", join(dir, "bin"), join(dir, "cwd")]);
  copyFileSync(join(dir, "dist", "weft-linux-x64"), binary);
  Bun.spawnSync(["chmod", "+x", binary]);
}, 120_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function run(args: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync([binary, ...args], {
    cwd: join(dir, "cwd"),
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "" },
  });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

test("build - the compiled binary reports package.json's version and the commit", () => {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  const r = run(["version"]);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(
    new RegExp(`^weft ${pkg.version.replaceAll(".", "\\.")} \\((?:[0-9a-f]{12}(?:-dirty)?|unknown)\\)\\n$`),
  );
});

test("build - SHA256SUMS lists the binary with its real checksum", async () => {
  const sums = readFileSync(join(dir, "dist", "SHA256SUMS"), "utf8");
  const hash = new Bun.CryptoHasher("sha256")
    .update(await Bun.file(join(dir, "dist", "weft-linux-x64")).arrayBuffer())
    .digest("hex");
  expect(sums).toBe(`${hash}  weft-linux-x64\n`);
});

test("build - the compiled binary prints help and refuses an unknown flag by name", () => {
  expect(run(["--help"]).out).toContain("--etcd-endpoints");
  const bad = run(["--no-such-flag=1"]);
  expect(bad.code).toBe(1);
  expect(bad.err).toContain("no-such-flag");
});

testNetns(
  "build - the compiled binary runs the seed 000 demo from another directory",
  () => {
    const r = run(["demo"]);
    if (r.code !== 0) console.error(r.out, r.err);
    expect(r.code).toBe(0);
    expect(r.out.match(/2 received, 0% packet loss/g)?.length).toBe(6);
  },
  120_000,
);
