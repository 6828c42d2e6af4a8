import { describe, expect, test } from "bun:test";
import { createLogger } from "../../src/log.ts";
import { Notifier, StatusThrottle } from "../../src/systemd/notify.ts";
import {
  encodeSockaddrUn,
  extendIntervalMs,
  parseNotifyEnv,
  statusMessage,
  statusText,
} from "../../src/systemd/protocol.ts";

const log = createLogger({ format: "text", level: "error" });

/** Waits for `check`, failing after a bound generous enough for a loaded machine. */
async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(5);
  }
}

describe("systemd notify", () => {
  test("systemd - env without NOTIFY_SOCKET disables notification", () => {
    expect(parseNotifyEnv({}, 7)).toEqual({ socket: undefined, watchdogMs: undefined });
    expect(parseNotifyEnv({ NOTIFY_SOCKET: "" }, 7).socket).toBeUndefined();
  });

  test("systemd - watchdog interval is half of WATCHDOG_USEC, only for our pid", () => {
    expect(parseNotifyEnv({ NOTIFY_SOCKET: "/run/n", WATCHDOG_USEC: "400000" }, 7)).toEqual({
      socket: "/run/n",
      watchdogMs: 200,
    });
    expect(parseNotifyEnv({ WATCHDOG_USEC: "400000", WATCHDOG_PID: "7" }, 7).watchdogMs).toBe(200);
    expect(parseNotifyEnv({ WATCHDOG_USEC: "400000", WATCHDOG_PID: "8" }, 7).watchdogMs).toBeUndefined();
    expect(parseNotifyEnv({ WATCHDOG_USEC: "0" }, 7).watchdogMs).toBeUndefined();
    expect(parseNotifyEnv({ WATCHDOG_USEC: "abc" }, 7).watchdogMs).toBeUndefined();
  });

  test("systemd - message text", () => {
    expect(statusText("10.5.1.0/24", 2, 2)).toBe("subnet 10.5.1.0/24, 2 peers, 2 routes");
    expect(statusText("10.5.1.0/24", 1, 1)).toBe("subnet 10.5.1.0/24, 1 peer, 1 route");
    expect(statusText(undefined, 0, 0)).toBe("no subnet lease, 0 peers, 0 routes");
    expect(statusMessage("a\nb")).toBe("STATUS=a b");
  });

  test("systemd - sockaddr_un for a path includes the terminating NUL", () => {
    const { bytes, length } = encodeSockaddrUn("/run/x");
    expect(length).toBe(2 + 6 + 1);
    expect(bytes.length).toBe(110);
    expect([...bytes.subarray(0, 9)]).toEqual([1, 0, 47, 114, 117, 110, 47, 120, 0]);
  });

  test("systemd - sockaddr_un for an abstract name starts with NUL and has no trailing NUL", () => {
    const { bytes, length } = encodeSockaddrUn("@ab");
    expect(length).toBe(2 + 1 + 2);
    expect([...bytes.subarray(0, 5)]).toEqual([1, 0, 0, 97, 98]);
  });

  test("systemd - sockaddr_un rejects empty and too long paths", () => {
    expect(() => encodeSockaddrUn("@")).toThrow();
    expect(() => encodeSockaddrUn(`/${"x".repeat(107)}`)).toThrow();
    expect(encodeSockaddrUn(`/${"x".repeat(106)}`).length).toBe(110);
  });

  test("systemd - notifier sends READY=1 once and nothing without a socket", () => {
    const sent: string[] = [];
    const send = (socket: string, message: string) => sent.push(`${socket} ${message}`);
    const n = new Notifier({ env: { NOTIFY_SOCKET: "@s" }, pid: 1, log, send });
    n.ready();
    n.ready();
    n.status("x");
    n.stopping();
    expect(sent).toEqual(["@s READY=1", "@s STATUS=x", "@s STOPPING=1"]);
    const none: string[] = [];
    const off = new Notifier({ env: {}, pid: 1, log, send: (_s, m) => none.push(m) });
    off.ready();
    off.startWatchdog();
    expect(none).toEqual([]);
    expect(off.enabled).toBe(false);
  });

  test("systemd - watchdog withholds WATCHDOG=1 while unhealthy", async () => {
    const sent: string[] = [];
    let healthy = false;
    let checks = 0;
    const n = new Notifier({
      env: { NOTIFY_SOCKET: "@s", WATCHDOG_USEC: "20000" },
      pid: 1,
      log,
      healthy: () => {
        checks++;
        return healthy;
      },
      send: (_s, m) => sent.push(m),
    });
    try {
      n.startWatchdog();
      // Three ticks asked and were told "unhealthy": none of them sent anything.
      await until("three watchdog ticks", () => checks >= 3);
      expect(sent).toEqual([]);
      healthy = true;
      await until("two WATCHDOG=1", () => sent.filter((m) => m === "WATCHDOG=1").length >= 2);
      expect(new Set(sent)).toEqual(new Set(["WATCHDOG=1"]));
    } finally {
      n.close();
    }
  });

  test("systemd - status throttle sends changes at most once per interval", async () => {
    const sent: { text: string; at: number }[] = [];
    const t = new StatusThrottle((text) => sent.push({ text, at: Date.now() }), 100);
    try {
      // The calls carry their own clock, so a slow machine cannot spread them over the window.
      const start = Date.now();
      t.update("a", start);
      t.update("a", start);
      t.update("b", start + 1);
      t.update("c", start + 2);
      expect(sent.map((s) => s.text)).toEqual(["a"]);
      // The last change inside the window goes out when the window ends, never before.
      await until("the pending status", () => sent.length >= 2);
      expect(sent.map((s) => s.text)).toEqual(["a", "c"]);
      expect(sent[1]?.at ?? 0).toBeGreaterThanOrEqual(start + 95);
    } finally {
      t.close();
    }
  });

  test("systemd - unix datagram socket delivers to a bound abstract address", async () => {
    const { UnixDatagramSocket } = await import("../../src/systemd/unix-dgram.ts");
    const name = `@weft-test-${process.pid}`;
    const rx = UnixDatagramSocket.open();
    rx.bind(name);
    const n = new Notifier({ env: { NOTIFY_SOCKET: name }, pid: 1, log });
    n.ready();
    n.close();
    expect(new TextDecoder().decode(rx.tryRecv())).toBe("READY=1");
    expect(rx.tryRecv()).toBeUndefined();
    rx.close();
  });

  test("systemd - a listener that never reads makes sendto fail, never block the agent", async () => {
    const { UnixDatagramSocket } = await import("../../src/systemd/unix-dgram.ts");
    const name = `@weft-test-full-${process.pid}`;
    const rx = UnixDatagramSocket.open();
    rx.bind(name);
    const tx = UnixDatagramSocket.open();
    const data = new TextEncoder().encode("WATCHDOG=1");
    let sent = 0;
    let error: unknown;
    try {
      // The queue holds net.unix.max_dgram_qlen datagrams (the kernel default is 10, systemd sets 512);
      // a blocking send would hang here.
      for (; sent < 100_000; sent++) tx.sendTo(name, data);
    } catch (err) {
      error = err;
    }
    expect(sent).toBeLessThan(100_000);
    expect(String(error)).toContain("sendto failed with errno 11");
    tx.close();
    rx.close();
  });
});

describe("systemd notify - start timeout extension", () => {
  const EXTEND = "EXTEND_TIMEOUT_USEC=30000";
  /** A notifier extending every 10 ms into `sent`. */
  const extending = (sent: string[], env: Record<string, string> = {}) =>
    new Notifier({
      env: { NOTIFY_SOCKET: "@s", WEFT_NOTIFY_EXTEND_MS: "10", ...env },
      pid: 1,
      log,
      send: (_s, m) => sent.push(m),
    });
  /**
   * Waits until a second notifier, started now, has extended three times: at least two intervals
   * passed, so a timer the first one should have stopped would have fired meanwhile.
   */
  async function twoIntervalsLater(): Promise<void> {
    const witness: string[] = [];
    const n = extending(witness);
    try {
      n.startExtending();
      await until("three extensions of the witness", () => witness.length >= 3);
    } finally {
      n.close();
    }
  }

  test("systemd - the interval is 30 s, or WEFT_NOTIFY_EXTEND_MS when it is a positive integer", () => {
    expect(extendIntervalMs({})).toBe(30_000);
    expect(extendIntervalMs({ WEFT_NOTIFY_EXTEND_MS: "250" })).toBe(250);
    for (const bad of ["0", "-5", "1.5", "abc", ""])
      expect(extendIntervalMs({ WEFT_NOTIFY_EXTEND_MS: bad })).toBe(30_000);
  });

  test("systemd - startExtending asks at once for three intervals (90 s by default), only once when called twice", () => {
    const sent: string[] = [];
    const n = new Notifier({ env: { NOTIFY_SOCKET: "@s" }, pid: 1, log, send: (_s, m) => sent.push(m) });
    try {
      n.startExtending();
      n.startExtending();
      expect(sent).toEqual(["EXTEND_TIMEOUT_USEC=90000000"]);
    } finally {
      n.close();
    }
  });

  test("systemd - extensions repeat every interval until READY=1, and none follow it", async () => {
    const sent: string[] = [];
    const n = extending(sent);
    try {
      n.startExtending();
      expect(sent).toEqual([EXTEND]);
      await until("three extensions", () => sent.length >= 3);
      expect(new Set(sent)).toEqual(new Set([EXTEND]));
      n.ready();
      const atReady = sent.length;
      expect(sent.at(-1)).toBe("READY=1");
      await twoIntervalsLater();
      expect(sent.length).toBe(atReady);
      // Extending again after READY=1 would be a start that never ends for systemd.
      n.startExtending();
      expect(sent.length).toBe(atReady);
    } finally {
      n.close();
    }
  });

  test("systemd - STOPPING=1 and close() end the extensions", async () => {
    const stopped: string[] = [];
    const closed: string[] = [];
    const a = extending(stopped);
    const b = extending(closed);
    try {
      a.startExtending();
      b.startExtending();
      a.stopping();
      b.close();
      await twoIntervalsLater();
      expect(stopped).toEqual([EXTEND, "STOPPING=1"]);
      expect(closed).toEqual([EXTEND]);
    } finally {
      a.close();
      b.close();
    }
  });
});
