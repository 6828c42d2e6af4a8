// `weft status` prints values that come from the store (issue 12, item 5): none of their control
// characters may reach the terminal.
import { expect, test } from "bun:test";
import { printable, printableJson } from "../../../src/cli/printable.ts";
import { renderStatus } from "../../../src/cli/status.ts";

const ESC = "\x1b";
/** The first character a terminal acts on or that reorders text (C0, DEL, C1, bidi, zero-width), if any. */
function control(text: string): string | undefined {
  for (const c of text) {
    const code = c.charCodeAt(0);
    if (code <= 0x1f || (code >= 0x7f && code <= 0x9f) || (code >= 0x200b && code <= 0x200f)) return c;
    if ((code >= 0x2028 && code <= 0x202e) || (code >= 0x2060 && code <= 0x2069) || code === 0xfeff) return c;
  }
  return undefined;
}

function status(overrides: { publicIP?: string; backend?: string; detail?: string; error?: string }) {
  return {
    store: "etcd",
    prefix: "/coreos.com/network",
    backend: "host-gw",
    network: "10.5.0.0/16",
    externalInterface: "eth0",
    publicIP: "172.17.42.41",
    lease: {
      subnet: "10.5.1.0/24",
      key: "/coreos.com/network/subnets/10.5.1.0-24",
      reservation: false,
      expiresAt: null,
    },
    peers: [
      {
        subnet: "10.5.2.0/24",
        publicIP: overrides.publicIP ?? "172.17.42.42",
        backend: overrides.backend ?? "host-gw",
        route: false,
        via: null,
        skipped: overrides.detail ?? null,
      },
    ],
    routes: 0,
    lastApply: {
      at: "2026-01-01T00:00:00.000Z",
      ok: false,
      replaced: 0,
      deleted: 0,
      durationMs: 1,
      errors: [overrides.error ?? "replace route 10.5.2.0/24: Invalid argument"],
      refused: [`replace route 10.5.3.0/24: ${overrides.error ?? "Invalid argument"}`],
    },
    ready: { ready: true, reason: "" },
  };
}

test("weft status - control characters in store values are printed as escapes", () => {
  const hostile = {
    // Clears the screen and homes the cursor, then writes a fake line.
    backend: `${ESC}[2J${ESC}[Hhost-gw`,
    // The 8-bit CSI, a carriage return that would overwrite the line, a right-to-left override.
    detail: `backend type "\u009b31mvxlan\r\u202eevil" is not host-gw`,
    error: `bad\n${ESC}]0;title\u0007`,
    publicIP: "172.17.42.42\u200b\u0008",
  };
  const out = renderStatus(status(hostile));
  for (const line of out.split("\n")) expect(control(line)).toBeUndefined();
  expect(out).toContain("\\x1b[2J\\x1b[Hhost-gw");
  expect(out).toContain("\\x9b31mvxlan\\r\\u202eevil");
  expect(out).toContain("bad\\n\\x1b]0;title\\x07");
  expect(out).toContain("172.17.42.42\\u200b\\x08");
  // One status line per row: an embedded newline does not add a line.
  expect(out.split("\n").filter((l) => l.startsWith("error: "))).toHaveLength(1);
  expect(out).toContain("refused by the kernel (retried every 10 s): replace route 10.5.3.0/24: bad\\n");
});

test("weft status - a starting agent's reason is escaped too", () => {
  const out = renderStatus({ ready: { ready: false, reason: `waiting ${ESC}[31mfor config` } });
  expect(control(out.trimEnd())).toBeUndefined();
  expect(out).toContain("\\x1b[31mfor config");
});

test("weft status - plain values are printed unchanged", () => {
  const out = renderStatus(status({}));
  expect(out).toContain("10.5.2.0/24  172.17.42.42  host-gw");
  expect(printable("a\\b é ü 10.5.0.0/16")).toBe("a\\b é ü 10.5.0.0/16");
});

test("weft status --json - C1 and bidi controls that JSON.stringify leaves raw are escaped, JSON stays valid", () => {
  const doc = { backend: "\u009b2J\u202e", note: "tab\there", esc: ESC };
  const text = printableJson(JSON.stringify(doc, null, 2));
  expect(control(text.replace(/\n/g, ""))).toBeUndefined();
  expect(JSON.parse(text)).toEqual(doc);
});
