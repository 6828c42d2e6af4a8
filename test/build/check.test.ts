// The static checks run as tests, so the suite's one summary line covers them too.
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..", "..");

async function run(cmd: string[]): Promise<{ code: number; output: string }> {
  const proc = Bun.spawn(cmd, {
    cwd: root,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, NO_COLOR: "1" },
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, output: `${out}${err}`.trim() };
}

test("build - tsc --noEmit finds no type errors", async () => {
  const { code, output } = await run([
    join(root, "node_modules/.bin/tsc"),
    "--noEmit",
    "-p",
    "tsconfig.json",
  ]);
  expect(output).toBe("");
  expect(code).toBe(0);
}, 120_000);

test("build - biome ci finds no lint or format problems", async () => {
  const { code, output } = await run([join(root, "node_modules/.bin/biome"), "ci", "--colors=off", "."]);
  if (code !== 0) console.error(output);
  expect(code).toBe(0);
}, 120_000);

test("build - no bare `throw new Error(` in src/ or stores/", async () => {
  const dirs = ["src", "stores"].filter((d) => existsSync(join(root, d)));
  const { output } = await run(["grep", "-rn", "--include=*.ts", "throw new Error(", ...dirs]);
  expect(output).toBe("");
});
