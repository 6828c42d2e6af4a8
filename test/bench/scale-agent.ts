/**
 * The agent as test/bench/scale-inside.ts runs it: spawned directly (its pid is the agent's, recorded
 * in the pid file the outer script kills from), stdout and stderr to a log file per start, stopped
 * with SIGTERM and SIGKILL after 3 s; plus its CPU time from /proc/<pid>/stat and a /readyz poll.
 */
import { appendFileSync, closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";

// flanneld v0.28.9 often hangs in "Waiting for all goroutines to exit" after SIGTERM; nothing after the stop
// is measured, so it gets 3 s before SIGKILL.
const STOP_TIMEOUT_MS = 3_000;

/** Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`; 100 on Linux when that fails). */
const CLK_TCK = (() => {
  const out = Bun.spawnSync(["getconf", "CLK_TCK"], { stdout: "pipe", stderr: "ignore" });
  const n = Number(out.stdout.toString().trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** utime + stime of process `pid` (all its threads) in ms, from /proc/<pid>/stat. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the comm, which may itself hold spaces and parentheses: state is field 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`cannot parse /proc/${pid}/stat`);
  return ((utime + stime) * 1_000) / CLK_TCK;
}

export class AgentProcess {
  readonly #command: readonly string[];
  readonly #env: Record<string, string>;
  readonly #logDir: string;
  readonly #logName: string;
  readonly #pidFile: string;
  #proc: Subprocess | undefined;
  #log = "";
  /** `performance.now()` just before the current agent was spawned. */
  spawnedAt = Number.NaN;

  constructor(options: {
    command: readonly string[];
    env: Record<string, string>;
    logDir: string;
    logName: string;
    pidFile: string;
  }) {
    this.#command = options.command;
    this.#env = options.env;
    this.#logDir = options.logDir;
    this.#logName = options.logName;
    this.#pidFile = options.pidFile;
  }

  /** The running agent, if any. */
  get proc(): Subprocess | undefined {
    return this.#proc;
  }

  /** Starts the agent (stopping none: the caller stops the previous one first); logs to `<name>-<label>.log`. */
  spawn(label: string): Subprocess {
    const path = join(this.#logDir, `${this.#logName}-${label}.log`);
    this.#log = path;
    appendFileSync(path, `# bench: spawned at ${new Date().toISOString()}\n`);
    const fd = openSync(path, "a");
    try {
      this.spawnedAt = performance.now();
      const proc = Bun.spawn([...this.#command], {
        stdin: "ignore",
        stdout: fd,
        stderr: fd,
        env: { ...process.env, ...this.#env },
      });
      appendFileSync(this.#pidFile, `${proc.pid}\n`);
      this.#proc = proc;
      return proc;
    } finally {
      closeSync(fd);
    }
  }

  /** SIGTERM, then SIGKILL after 3 s. */
  async stop(): Promise<void> {
    const proc = this.#proc;
    if (proc === undefined) return;
    this.#proc = undefined;
    proc.kill("SIGTERM");
    const stopped = await Promise.race([
      proc.exited.then(() => true),
      Bun.sleep(STOP_TIMEOUT_MS).then(() => false),
    ]);
    if (!stopped) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  }

  /** SIGKILL without waiting (signal handlers). */
  kill(): void {
    this.#proc?.kill("SIGKILL");
  }

  /** `work`, or a rejection saying the agent exited before it was done. */
  untilExit<T>(work: Promise<T>): Promise<T> {
    const proc = this.#proc;
    if (proc === undefined) return Promise.reject(new Error("no agent is running"));
    const died = proc.exited.then((code) => {
      throw new Error(`the agent exited with ${code} during the run; its log ends:\n${this.logTail()}`);
    });
    died.catch(() => undefined);
    return Promise.race([work, died]);
  }

  logTail(): string {
    try {
      return readFileSync(this.#log, "utf8").trim().split("\n").slice(-15).join("\n");
    } catch {
      return "(no log)";
    }
  }
}

/** Polls `url` every 1 ms until it answers 200; resolves with that `performance.now()`. */
export async function pollReadyz(url: string, deadline: number): Promise<number> {
  let next = performance.now();
  while (performance.now() < deadline) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(1_000) }).then(
      async (res) => {
        await res.arrayBuffer();
        return res.status === 200;
      },
      () => false,
    );
    if (ok) return performance.now();
    next += 1;
    const wait = next - performance.now();
    if (wait > 0) await Bun.sleep(wait);
    else next = performance.now();
  }
  throw new Error(`${url} did not answer 200 before the deadline`);
}
