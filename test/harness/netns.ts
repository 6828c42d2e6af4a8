/**
 * Gates for the kernel tests. Outside CI a machine without network namespaces (not root, no
 * `ip netns`) skips them, as before. Under `CI=true` that would turn ~80 kernel tests into a green
 * run that tested nothing, so each gated block registers one failing test instead, naming what is
 * missing.
 */
import { describe, test } from "bun:test";
import { canUseNetns } from "../../src/netns/netns.ts";

/** True when this process may create network namespaces (root with `ip netns`). */
export const netnsUsable = canUseNetns();
const required = process.env.CI === "true";

type TestFn = Parameters<typeof test>[1];

function missing(name: string): void {
  test(`${name} - needs network namespaces`, () => {
    throw new Error(
      "CI=true but this process cannot create network namespaces (it must run as root with iproute2's `ip netns`): the kernel tests fail instead of being skipped",
    );
  });
}

/** `describe` when namespaces are usable; skipped without them, one failing test under CI=true. */
export function describeNetns(name: string, fn: () => void): void {
  if (netnsUsable) describe(name, fn);
  else if (required) describe(name, () => missing(name));
  else describe.skip(name, fn);
}

/** `test` when namespaces are usable; skipped without them, a failing test under CI=true. */
export function testNetns(name: string, fn: TestFn, timeoutMs?: number): void {
  if (netnsUsable) test(name, fn, timeoutMs);
  else if (required) missing(name);
  else test.skip(name, fn, timeoutMs);
}
