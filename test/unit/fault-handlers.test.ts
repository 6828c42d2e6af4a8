// main's last-resort handlers: a stray rejection is logged as one structured line and the agent
// keeps running (it still answers SIGTERM with its normal shutdown); an uncaught exception is logged
// and the process exits 70 for systemd to restart it. The real `weft` entry point, in a child process.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { faultFields, installFaultHandlers, UNCAUGHT_EXIT_CODE } from "../../src/fault-handlers.ts";
import { createLogger } from "../../src/log.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");
const TRIGGER = join(import.meta.dir, "fixtures/fault-trigger.ts");
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-faults-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the agent (sqlite store without a network config: it waits for one) with a fault preloaded. */
function agent(fault: "rejection" | "exception") {
  const proc = Bun.spawn(
    [
      process.execPath,
      "--preload",
      TRIGGER,
      MAIN,
      "--store=sqlite",
      `--store-endpoints=${join(dir, "weft.db")}`,
      `--control-socket=${join(dir, "weft.sock")}`,
      `--subnet-file=${join(dir, "subnet.env")}`,
      "--log-format=json",
    ],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, WEFT_TEST_FAULT: fault, NOTIFY_SOCKET: "" } },
  );
  let stderr = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) stderr += decoder.decode(chunk, { stream: true });
  })();
  const lines = () =>
    stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const waitFor = async (what: string, match: (line: Record<string, unknown>) => boolean) => {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const found = lines().find(match);
      if (found !== undefined) return found;
      if (proc.exitCode !== null) break;
      await Bun.sleep(25);
    }
    throw new Error(`no log line for ${what} (exit ${proc.exitCode}); stderr:\n${stderr}`);
  };
  return { proc, lines, waitFor, reading };
}

test("faults - an unhandled rejection is logged as one line and the agent keeps running", async () => {
  const a = agent("rejection");
  try {
    const line = await a.waitFor("the rejection", (l) => String(l.msg).startsWith("unhandled rejection"));
    expect(line.level).toBe("error");
    expect(line.error).toBe("canary rejection");
    expect(String(line.at)).toContain("fault-trigger.ts");
    // Still the running agent: it answers SIGTERM with its own shutdown and exit 0.
    expect(a.proc.exitCode).toBeNull();
    a.proc.kill("SIGTERM");
    expect(await a.proc.exited).toBe(0);
    await a.reading;
    expect(a.lines().some((l) => String(l.msg).startsWith("shutting down"))).toBe(true);
    expect(a.lines().filter((l) => String(l.msg).startsWith("unhandled rejection")).length).toBe(1);
  } finally {
    a.proc.kill("SIGKILL");
  }
}, 30_000);

test("faults - an uncaught exception is logged as one line and the process exits 70", async () => {
  const a = agent("exception");
  try {
    expect(await a.proc.exited).toBe(UNCAUGHT_EXIT_CODE);
    await a.reading;
    const line = a.lines().find((l) => String(l.msg).startsWith("uncaught exception"));
    expect(line?.level).toBe("error");
    expect(line?.error).toBe("canary exception");
    expect(line?.exitCode).toBe(UNCAUGHT_EXIT_CODE);
  } finally {
    a.proc.kill("SIGKILL");
  }
}, 30_000);

test("faults - handlers log through the logger handed over later and can be removed", () => {
  const listeners = new Map<string, (arg: never) => void>();
  const target = {
    on: (event: string, fn: (arg: never) => void) => listeners.set(event, fn),
    off: (event: string) => listeners.delete(event),
  };
  const lines: string[] = [];
  const exits: number[] = [];
  const handlers = installFaultHandlers({
    target,
    log: createLogger({ write: () => {} }),
    exit: (c) => exits.push(c),
  });
  handlers.useLogger(createLogger({ format: "json", write: (l) => lines.push(l) }));
  listeners.get("unhandledRejection")?.("plain reason" as never);
  listeners.get("uncaughtException")?.(new TypeError("boom") as never);
  expect(lines.map((l) => JSON.parse(l).msg)).toEqual([
    "unhandled rejection; still running",
    "uncaught exception; exiting",
  ]);
  expect(JSON.parse(lines[0] ?? "{}").error).toBe("plain reason");
  expect(JSON.parse(lines[1] ?? "{}").type).toBe("TypeError");
  expect(exits).toEqual([UNCAUGHT_EXIT_CODE]);
  handlers.uninstall();
  expect(listeners.size).toBe(0);
  expect(faultFields(new Error("x")).error).toBe("x");
});
