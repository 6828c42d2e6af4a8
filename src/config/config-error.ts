/**
 * The one shape of every network config error: `network config: <Field> <value> is invalid: <rule>`,
 * so a person reading the log knows which field of `<prefix>/config` to fix, what it holds and why it
 * is refused.
 */

import type { z } from "zod/mini";
import { previewJson } from "../../stores/preview.ts";
import { WeftError, WeftErrorCode } from "../errors.ts";

/**
 * `42` → `42`, `"10.5.0.0/16"` → `"10.5.0.0/16"`, `{…}` → compact JSON, cut at 60 characters. Only
 * what is shown is serialised, so a value nested 100,000 levels deep costs no more than a small one.
 */
export function showValue(value: unknown): string {
  const text = previewJson(value, 61);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** CONFIG_INVALID for a field whose value breaks a rule. */
export function invalidField(field: string, value: unknown, rule: string, cause?: unknown): WeftError {
  return new WeftError(
    WeftErrorCode.ConfigInvalid,
    `network config: ${field} ${showValue(value)} is invalid: ${rule}`,
    { field, value, cause },
  );
}

/** CONFIG_INVALID for a required field that is absent. */
export function missingField(field: string, rule: string): WeftError {
  return new WeftError(WeftErrorCode.ConfigInvalid, `network config: ${field} is missing: ${rule}`, {
    field,
  });
}

/** CONFIG_INVALID for the first issue zod found, naming the field path and the value at it. */
export function fromZodIssue(error: z.core.$ZodError, input: unknown, prefix = ""): WeftError {
  const issue = error.issues[0];
  if (issue === undefined) return invalidField(prefix || "config", input, "is not valid");
  let value: unknown = input;
  for (const step of issue.path) {
    value =
      typeof value === "object" && value !== null ? (value as Record<PropertyKey, unknown>)[step] : undefined;
  }
  const field = [prefix, ...issue.path.map(String)].filter((part) => part !== "").join(".");
  return invalidField(field, value, issue.message, error);
}
