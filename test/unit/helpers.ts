// Shared test helpers: capture the WeftError a call throws, so tests can assert on code and message.
import { expect } from "bun:test";
import { WeftError } from "../../src/errors.ts";

/** The WeftError `fn` throws; fails the test when it throws nothing or something else. */
export function thrown(fn: () => unknown): WeftError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(WeftError);
  return caught as WeftError;
}
