/**
 * What test/bench/agent-inside.ts reads from an agent besides routes and /readyz: its sd_notify
 * datagrams (a NOTIFY_SOCKET it binds) and its memory from /proc/<pid>/status.
 */
import { readFileSync, rmSync } from "node:fs";
import { UnixDatagramSocket } from "../../src/systemd/unix-dgram.ts";

/** Poll interval while a READY=1 is awaited, ms. */
const FAST_POLL_MS = 1;
/**
 * Poll interval otherwise: the queue is still drained, so that no notification of the agent under
 * test is dropped (weft's sends fail when the queue is full; a blocking sender would stall).
 */
const IDLE_POLL_MS = 50;

/** A bound NOTIFY_SOCKET: timestamps READY=1 as it is read, keeps the last STATUS= text. */
export class NotifyListener {
  readonly #socket: UnixDatagramSocket;
  readonly #path: string;
  #waiter: ((at: number) => void) | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastStatus = "";

  private constructor(socket: UnixDatagramSocket, path: string) {
    this.#socket = socket;
    this.#path = path;
    this.#schedule();
  }

  /** Binds a datagram socket at `path` (a stale file there is removed first). */
  static bind(path: string): NotifyListener {
    rmSync(path, { force: true });
    const socket = UnixDatagramSocket.open();
    try {
      socket.bind(path);
    } catch (err) {
      socket.close();
      throw err;
    }
    return new NotifyListener(socket, path);
  }

  /** The most recent STATUS= text received ("" when none came). */
  get lastStatus(): string {
    return this.#lastStatus;
  }

  /** Drops what is queued (a stopped agent's STOPPING=1) and any pending wait. */
  discard(): void {
    while (this.#socket.tryRecv() !== undefined) {}
    this.#waiter = undefined;
  }

  /** Resolves with the `performance.now()` at which the next READY=1 was read. */
  nextReady(): Promise<number> {
    return new Promise((resolve) => {
      this.#waiter = resolve;
      this.#schedule();
    });
  }

  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#socket.close();
    rmSync(this.#path, { force: true });
  }

  #schedule(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#poll(), this.#waiter === undefined ? IDLE_POLL_MS : FAST_POLL_MS);
  }

  #poll(): void {
    for (let data = this.#socket.tryRecv(); data !== undefined; data = this.#socket.tryRecv()) {
      this.#take(new TextDecoder().decode(data), performance.now());
    }
    this.#schedule();
  }

  #take(message: string, at: number): void {
    const lines = message.split("\n");
    const status = lines.findLast((line) => line.startsWith("STATUS="));
    if (status !== undefined) this.#lastStatus = status.slice("STATUS=".length);
    if (!lines.includes("READY=1") || this.#waiter === undefined) return;
    const resolve = this.#waiter;
    this.#waiter = undefined;
    resolve(at);
  }
}

/** The /proc/<pid>/status fields the memory phase reports, in kB as the kernel prints them. */
export interface ProcMemory {
  readonly vmRssKiB: number;
  readonly anonKiB: number;
  readonly fileKiB: number;
  readonly shmemKiB: number;
  readonly hwmKiB: number;
}

/** Reads `VmRSS`, `RssAnon`, `RssFile`, `RssShmem` and `VmHWM` from a /proc/<pid>/status text. */
export function parseProcStatus(text: string): ProcMemory {
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(text);
    if (match?.[1] === undefined) throw new Error(`/proc/<pid>/status has no ${name} line`);
    return Number(match[1]);
  };
  return {
    vmRssKiB: field("VmRSS"),
    anonKiB: field("RssAnon"),
    fileKiB: field("RssFile"),
    shmemKiB: field("RssShmem"),
    hwmKiB: field("VmHWM"),
  };
}

/**
 * The memory of process `pid` with its comm, after checking that its argv[0] is `argv0`: the pid
 * must be the agent itself, not a wrapper around it.
 */
export function readProcMemory(pid: number, argv0: string): ProcMemory & { comm: string } {
  const first = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0];
  if (first !== argv0) throw new Error(`pid ${pid} runs ${JSON.stringify(first)}, not the agent ${argv0}`);
  const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  return { ...parseProcStatus(readFileSync(`/proc/${pid}/status`, "utf8")), comm };
}
