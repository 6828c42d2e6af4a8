/**
 * The outer script's handle on one in-namespace driver of the scale benchmark (test/bench/
 * scale-inside.ts): spawned with `ip netns exec <ns> bun scale-inside.ts '<args>'`, one command a line
 * on its stdin, one reply a line on its stdout, each request with a timeout after which the driver is
 * killed (its agent is killed by the outer script from the pid file).
 */
import type { Subprocess } from "bun";
import type { Command, DriverArgs, Reply } from "./scale-fixtures.ts";

async function* linesOf(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of stream) {
    buffered += decoder.decode(chunk, { stream: true });
    for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
      yield buffered.slice(0, i);
      buffered = buffered.slice(i + 1);
    }
  }
  if (buffered !== "") yield buffered;
}

export class Driver {
  readonly #proc: Subprocess<"pipe", "pipe", "inherit">;
  readonly #lines: AsyncGenerator<string>;
  /** Why the driver can take no more commands (it died or timed out), once that happened. */
  dead: string | undefined;

  private constructor(
    readonly side: DriverArgs["side"],
    proc: Subprocess<"pipe", "pipe", "inherit">,
  ) {
    this.#proc = proc;
    this.#lines = linesOf(proc.stdout);
  }

  static start(script: string, args: DriverArgs): Driver {
    const proc = Bun.spawn(["ip", "netns", "exec", args.ns, process.execPath, script, JSON.stringify(args)], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "inherit",
    });
    return new Driver(args.side, proc);
  }

  /** Sends one command and waits for its reply; rejects with the driver's error text or on timeout. */
  async request<T>(cmd: Command, timeoutMs: number): Promise<T> {
    if (this.dead !== undefined) throw new Error(`the ${this.side} driver is gone: ${this.dead}`);
    this.#proc.stdin.write(`${JSON.stringify(cmd)}\n`);
    await this.#proc.stdin.flush();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const next = await Promise.race([this.#lines.next(), expired]).finally(() => clearTimeout(timer));
    if (next === "timeout") {
      this.dead = `no answer to ${cmd.op} within ${(timeoutMs / 1000).toFixed(0)} s`;
      this.kill();
      throw new Error(`the ${this.side} driver: ${this.dead}`);
    }
    if (next.done === true) {
      this.dead = `exited (${await this.#proc.exited}) during ${cmd.op}`;
      throw new Error(`the ${this.side} driver ${this.dead}`);
    }
    const reply = JSON.parse(next.value) as Reply<T>;
    if (!reply.ok) throw new Error(reply.error);
    return reply.result;
  }

  /** Closes its stdin (it stops its agent and exits); SIGKILL after `graceMs`. */
  async close(graceMs = 15_000): Promise<void> {
    try {
      this.#proc.stdin.end();
    } catch {
      // already closed
    }
    const exited = await Promise.race([
      this.#proc.exited.then(() => true),
      Bun.sleep(graceMs).then(() => false),
    ]);
    if (!exited) this.kill();
    await this.#proc.exited;
  }

  kill(): void {
    this.#proc.kill("SIGKILL");
  }
}
