import { expect, test } from "bun:test";
import type { KeyValue } from "../../stores/store.ts";
import { base64Bytes, base64Chars, base64Padding, boundValue, overLimit } from "../../stores/values.ts";

const kv = (value: string, ttlSeconds?: number): KeyValue =>
  ttlSeconds === undefined
    ? { key: "/p/k", value, revision: 3n, expires: false }
    : { key: "/p/k", value, revision: 3n, expires: true, ttlSeconds };

test("values - the limit counts UTF-8 bytes, not characters", () => {
  expect(overLimit("x".repeat(4096), 4096)).toBe(false);
  expect(overLimit("x".repeat(4097), 4096)).toBe(true);
  expect(overLimit("é".repeat(2048), 4096)).toBe(false);
  expect(overLimit("é".repeat(2049), 4096)).toBe(true);
  expect(overLimit("🚀".repeat(1024), 4096)).toBe(false);
  expect(overLimit("🚀".repeat(1025), 4096)).toBe(true);
  expect(overLimit("", 0)).toBe(false);
});

test("values - boundValue keeps what fits, and leaves the rest out with its length and expiry", () => {
  const small = kv("fits", 30);
  expect(boundValue(small, 4)).toBe(small);
  expect(boundValue(kv("x".repeat(10)), undefined).value).toBe("x".repeat(10));
  expect(boundValue(kv("雪".repeat(5), 30), 4)).toEqual({
    key: "/p/k",
    value: "",
    revision: 3n,
    expires: true,
    ttlSeconds: 30,
    omittedBytes: 15,
  });
  // Left out by the decoder already: its length as the decoder counted it, whatever the limit.
  expect(boundValue(kv("", 30), undefined, 99)).toEqual({
    key: "/p/k",
    value: "",
    revision: 3n,
    expires: true,
    ttlSeconds: 30,
    omittedBytes: 99,
  });
  expect(boundValue(kv("abcde"), 4)).toEqual({
    key: "/p/k",
    value: "",
    revision: 3n,
    expires: false,
    omittedBytes: 5,
  });
});

test("values - base64 lengths match what Buffer decodes", () => {
  for (let n = 0; n < 40; n++) {
    const text = Buffer.alloc(n, 7).toString("base64");
    const padding = text.length - text.replace(/=+$/, "").length;
    expect(base64Padding(text)).toBe(padding);
    expect(base64Bytes(text.length, padding)).toBe(n);
    expect(text.length <= base64Chars(n)).toBe(true);
  }
  expect(base64Chars(4096)).toBe(5464);
});
