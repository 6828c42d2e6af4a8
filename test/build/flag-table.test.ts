import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { flagTable } from "../../build/flag-table.ts";
import { FLAGS, UNSUPPORTED_FLAGS } from "../../src/config/flag-table.ts";

test("build - the README's flanneld flag table is the one generated from the flag definitions", () => {
  const readme = readFileSync(join(import.meta.dir, "..", "..", "README.md"), "utf8");
  const start = readme.indexOf("<!-- flag-table:start -->\n");
  const end = readme.indexOf("<!-- flag-table:end -->");
  expect(start).toBeGreaterThan(0);
  expect(readme.slice(start + "<!-- flag-table:start -->\n".length, end).trim()).toBe(flagTable().trim());
  expect(
    flagTable()
      .split("\n")
      .filter((l) => l.startsWith("| `--")).length,
  ).toBe(FLAGS.length + UNSUPPORTED_FLAGS.length);
});
