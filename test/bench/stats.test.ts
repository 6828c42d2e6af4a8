import { expect, test } from "bun:test";
import { markdownTable, percentile, table } from "./stats.ts";

test("bench stats - percentile uses the nearest rank", () => {
  const samples = Array.from({ length: 100 }, (_, i) => 100 - i);
  expect(percentile(samples, 50)).toBe(50);
  expect(percentile(samples, 99)).toBe(99);
  expect(percentile(samples, 100)).toBe(100);
  expect(percentile([], 50)).toBeNaN();
});

test("bench stats - table aligns columns under the header", () => {
  expect(table(["a", "bb"], [["xyz", "1"]])).toBe("a    bb\n---  --\nxyz  1");
});

test("bench stats - markdownTable pads cells and escapes pipes", () => {
  expect(markdownTable(["a", "bb"], [["x|y", "1"]])).toBe("| a    | bb  |\n|------|-----|\n| x\\|y | 1   |");
});
