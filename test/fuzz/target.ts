/**
 * What a fuzz target is, and the checks targets share. A target generates one input from the PRNG and
 * runs it through the functions under test; the only exceptions it may let through are the typed
 * errors those functions document (`allowed`). Anything else — a TypeError, a RangeError from deep
 * recursion, a broken invariant — is a finding.
 */
import type { Rng } from "./prng.ts";

export interface FuzzTarget<I = unknown> {
  readonly name: string;
  /** The functions this target feeds, for the report. */
  readonly covers: readonly string[];
  /** What the functions may throw, for the report (`WeftError`, `StoreError`, nothing). */
  readonly allowed: string;
  generate(rng: Rng): I;
  /** Runs one input; throws only on a finding (allowed errors are caught inside). */
  run(input: I): void;
}

/** A broken invariant: the function returned, but what it returned is wrong. */
export class InvariantError extends Error {
  override readonly name = "InvariantError";
}

export function check(condition: boolean, what: string): void {
  if (!condition) throw new InvariantError(what);
}

/** Calls `fn`; an error that `allowed` accepts is swallowed, any other is rethrown (a finding). */
export function tolerate<T>(fn: () => T, allowed: (err: unknown) => boolean): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (err instanceof InvariantError || !allowed(err)) throw err;
    return undefined;
  }
}

/** Error messages are for people: they must stay short whatever the input was. */
export function checkMessage(err: unknown, max = 4_000): void {
  if (err instanceof Error) check(err.message.length <= max, `message of ${err.message.length} characters`);
}
