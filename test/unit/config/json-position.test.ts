import { describe, expect, test } from "bun:test";
import { locateJsonError } from "../../../src/config/json-position.ts";

describe("json position", () => {
  test.each([
    "{}",
    "[]",
    '{"a": [1, -2.5e+3, true, false, null, "x\\n\\u00e9"], "b": {"c": {}}}',
    " \t\r\n42 ",
    '"\\/"',
  ])("json position - valid JSON %p has no error", (text) => {
    expect(() => JSON.parse(text)).not.toThrow();
    expect(locateJsonError(text)).toBeUndefined();
  });

  test.each([
    ["", 1, 1, "end of input"],
    ['{"a": 1,}', 1, 9, "expected a quoted field name"],
    ['{"a" 1}', 1, 6, 'expected ":"'],
    ['{"a": 1 "b": 2}', 1, 9, 'expected "," or "}"'],
    ["[1, 2", 1, 6, 'expected "," or "]"'],
    ['{"a": tru}', 1, 7, "expected a value"],
    ['{"a": 01}', 1, 8, 'expected "," or "}"'],
    ['{"a": "x', 1, 9, "unterminated string"],
    ['{"a": "\\q"}', 1, 9, "invalid escape"],
    ['{"a": "\\u12"}', 1, 9, "invalid \\u escape"],
    ["{'a': 1}", 1, 2, "expected a quoted field name"],
    ["{}\n{}", 2, 1, "after the JSON value"],
    ['{\n  "Network": "10.5.0.0/16"\n  "Backend": {}\n}', 3, 3, 'expected "," or "}"'],
  ])("json position - %p fails at line %p column %p", (text, line, column, reason) => {
    expect(() => JSON.parse(text)).toThrow();
    const error = locateJsonError(text);
    expect(error).toBeDefined();
    expect(error?.line).toBe(line);
    expect(error?.column).toBe(column);
    expect(error?.reason).toContain(reason);
  });
});
