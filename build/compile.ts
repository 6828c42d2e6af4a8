/**
 * `npm run build`: compiles weft into one self-contained binary per architecture with
 * `bun build --compile`, and writes dist/SHA256SUMS.
 *
 *   dist/weft-linux-x64     dist/weft-linux-arm64     dist/SHA256SUMS
 *
 * - Minified, with JavaScriptCore bytecode precompiled (`--bytecode`): `weft version` starts in about
 *   20 ms instead of 75 ms, for 4 MB more binary. The version is package.json's plus the git commit
 *   (WEFT_COMMIT, read by src/cli/version.ts).
 * - The binary ignores a stray .env or bunfig.toml in its working directory (a root daemon must not
 *   pick up configuration from wherever systemd starts it).
 * - linux-arm64 is cross-compiled offline from the Bun runtime that npm ships as
 *   @oven/bun-linux-aarch64 (same version as the bun building it), fetched once with `npm pack` into
 *   ~/.cache/weft-build; if that fails the x64 binary is still built and the reason is printed.
 *
 * Usage: bun build/compile.ts [--out dist] [--only x64|arm64]
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pkg from "../package.json" with { type: "json" };

const root = resolve(import.meta.dir, "..");
const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const out = resolve(flag("--out") ?? join(root, "dist"));
const only = flag("--only");

function run(cmd: string[], cwd = root): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

function commit(): string {
  const r = run(["git", "rev-parse", "--short=12", "HEAD"]);
  if (r.code !== 0) return "unknown";
  const dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.trim() !== "";
  return `${r.stdout.trim()}${dirty ? "-dirty" : ""}`;
}

/** The aarch64 Bun runtime of the same version, from npm, cached. */
function arm64Runtime(): string {
  const version = Bun.version;
  const cache = join(
    process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"),
    "weft-build",
    `bun-linux-aarch64-${version}`,
  );
  const bin = join(cache, "package", "bin", "bun");
  if (existsSync(bin)) return bin;
  mkdirSync(cache, { recursive: true });
  const packed = run(["npm", "pack", "--silent", `@oven/bun-linux-aarch64@${version}`], cache);
  const tarball = readdirSync(cache).find((f) => f.endsWith(".tgz"));
  if (packed.code !== 0 || tarball === undefined) {
    throw new Error(`npm pack @oven/bun-linux-aarch64@${version} failed: ${packed.stderr.trim()}`);
  }
  const untar = run(["tar", "xzf", tarball], cache);
  if (untar.code !== 0 || !existsSync(bin))
    throw new Error(`could not unpack ${tarball}: ${untar.stderr.trim()}`);
  return bin;
}

function compile(arch: "x64" | "arm64", version: string): string {
  const outfile = join(out, `weft-linux-${arch}`);
  const cmd = [
    process.execPath,
    "build",
    "--compile",
    `--target=bun-linux-${arch}`,
    "--minify",
    "--bytecode",
    "--format=esm",
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    `--define=WEFT_COMMIT=${JSON.stringify(version)}`,
    `--outfile=${outfile}`,
    join(root, "src", "main.ts"),
  ];
  if (arch === "arm64") cmd.splice(2, 0, `--compile-executable-path=${arm64Runtime()}`);
  // Built from a scratch directory so nothing of the source tree's cwd leaks into the binary.
  const scratch = join(tmpdir(), `weft-build-${process.pid}`);
  mkdirSync(scratch, { recursive: true });
  try {
    const r = run(cmd, scratch);
    if (r.code !== 0) throw new Error(`bun build for linux-${arch} failed:\n${r.stderr}${r.stdout}`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return outfile;
}

mkdirSync(out, { recursive: true });
const version = commit();
const built: string[] = [];
for (const arch of ["x64", "arm64"] as const) {
  if (only !== undefined && only !== arch) continue;
  try {
    const file = compile(arch, version);
    built.push(file);
    const size = Bun.file(file).size;
    console.log(`built ${file} (${(size / 1024 / 1024).toFixed(1)} MiB, weft ${pkg.version} ${version})`);
  } catch (err) {
    if (arch === "x64") throw err;
    console.error(`skipped linux-arm64: ${err instanceof Error ? err.message : String(err)}`);
  }
}
const sums = built
  .map(
    (file) =>
      `${createHash("sha256").update(readFileSync(file)).digest("hex")}  ${file.slice(out.length + 1)}`,
  )
  .join("\n");
writeFileSync(join(out, "SHA256SUMS"), `${sums}\n`);
console.log(`wrote ${join(out, "SHA256SUMS")}`);
