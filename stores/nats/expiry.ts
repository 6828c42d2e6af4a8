/**
 * Expiry for servers that cannot expire keys themselves (nats-server older than 2.11.2; Debian
 * bookworm ships 2.9.10, where a bucket TTL ages keys out without telling any watcher and per-message
 * TTL headers are silently ignored).
 *
 * A key written with a TTL carries `Weft-TTL: <seconds>`; it expires at the server's timestamp of that
 * write plus the TTL. Reads hide a key past its expiry at once. Removing it, so that every watcher
 * sees a `delete` with reason "expired", is the job of one agent at a time:
 * - Every connected store runs a `Sweeper` that ticks every second on the store's clock. The lock is
 *   the message on the driver's own subject `$KV.<bucket>.==.sweeper` holding the holder's id; it is
 *   taken or renewed with a compare-and-swap on that subject and counts as abandoned 10 s after its
 *   last write.
 * - The holder reads the headers of the last message of every subject (one snapshot) and writes a
 *   deletion marker (`KV-Operation: DEL`, `Weft-Reason: expired`, `Weft-Swept-By: <id>`) for each
 *   expired key, as a compare-and-swap on the key's revision: a key renewed or rewritten meanwhile is
 *   left alone, and two sweepers (a lock taken over from a paused holder) can never both mark it.
 * Clocks: expiry and lock age compare the server's timestamps with the agent's clock, so agents need
 * clocks within about a second of the server's (NTP), as flannel's own lease times assume.
 */
import { isStoreError, StoreErrorCode } from "../errors.ts";
import { repeat, type StoreClock, systemStoreClock } from "../runtime.ts";
import type { StoreLogger } from "../store.ts";
import type { NatsClient } from "./client.ts";
import {
  deleteHeaders,
  type Entry,
  isExpired,
  lockHolder,
  lockValue,
  subjectPrefix,
  sweeperLockSubject,
  toEntry,
} from "./codec.ts";

export const SWEEP_INTERVAL_MS = 1_000;
export const LOCK_TTL_MS = 10_000;

const utf8 = new TextEncoder();
/** The body of a delete marker. */
const EMPTY = new Uint8Array(0);

export interface SweeperOptions {
  readonly client: NatsClient;
  /** This store's id, written into the lock and the markers. */
  readonly id: string;
  readonly logger: StoreLogger | undefined;
  readonly now: () => number;
  /** The store's clock, which the rounds wait on (default: the system clock). */
  readonly clock?: StoreClock | undefined;
  /** The store's signal: the rounds end when it aborts (the store closes). */
  readonly signal?: AbortSignal | undefined;
  readonly intervalMs?: number | undefined;
}

/** Marks `entry` (an expired put on `subject`) deleted as expired; the marker's revision, or "conflict". */
export function markExpired(
  client: NatsClient,
  subject: string,
  entry: Extract<Entry, { kind: "put" }>,
  sweeper: string,
): Promise<bigint | "conflict"> {
  return client.publish(subject, EMPTY, deleteHeaders(sweeper), entry.revision);
}

export class Sweeper {
  readonly #client: NatsClient;
  readonly #id: string;
  readonly #logger: StoreLogger | undefined;
  readonly #now: () => number;
  readonly #intervalMs: number;
  readonly #clock: StoreClock;
  /** Ends the rounds' loop. */
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;
  /** Local time until which this sweeper may assume it holds the lock without writing it again. */
  #heldUntil = 0;
  #failures = 0;

  constructor(options: SweeperOptions) {
    this.#client = options.client;
    this.#id = options.id;
    this.#logger = options.logger;
    this.#now = options.now;
    this.#intervalMs = options.intervalMs ?? SWEEP_INTERVAL_MS;
    this.#clock = options.clock ?? systemStoreClock;
    options.signal?.addEventListener("abort", () => this.#stop.abort(), { once: true });
  }

  /**
   * Starts a round every interval, each waiting for the previous one to finish. Housekeeping: the
   * waits do not keep a process alive (the connection and open watches do that).
   */
  start(): void {
    if (this.#stop.signal.aborted || this.#loop !== undefined) return;
    this.#loop = repeat(this.#clock, this.#intervalMs, this.#stop.signal, () => this.#round(), {
      unref: true,
    });
  }

  /** Ends the loop, waiting for a round under way. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  /** True while this sweeper holds the lock (as far as it knows). */
  get holding(): boolean {
    return this.#now() < this.#heldUntil;
  }

  /** One round: take or keep the lock, then mark every expired key. Resolves how many it marked. */
  async tick(): Promise<number> {
    if (!(await this.#holdLock())) return 0;
    const snapshot = await this.#client.snapshot(`${subjectPrefix(this.#client.bucket)}>`, true);
    const now = this.#now();
    let marked = 0;
    for (const record of snapshot.records) {
      const entry = toEntry(this.#client.bucket, record);
      if (entry?.kind !== "put" || !isExpired(entry, now)) continue;
      const result = await markExpired(this.#client, record.subject, entry, this.#id);
      if (result === "conflict") continue;
      marked += 1;
      this.#logger?.debug("nats: swept an expired key", { key: entry.key, revision: result.toString() });
    }
    return marked;
  }

  async #round(): Promise<void> {
    try {
      await this.tick();
      this.#failures = 0;
    } catch (err) {
      if (this.#stop.signal.aborted || isStoreError(err, StoreErrorCode.Closed)) return;
      this.#failures += 1;
      // One line per streak of failures (an unreachable server fails every second).
      if (this.#failures === 1) {
        this.#logger?.warn("nats: expiry sweep failed; retrying every second", {
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }

  /** Takes the lock if free or abandoned, renews it when half its time is gone; true while held. */
  async #holdLock(): Promise<boolean> {
    const start = this.#now();
    if (start < this.#heldUntil - LOCK_TTL_MS / 2) return true;
    const subject = sweeperLockSubject(this.#client.bucket);
    const lock = await this.#client.read(subject);
    let expect = 0n;
    if (lock !== undefined) {
      const mine = lockHolder(lock.data) === this.#id;
      if (!mine && start - lock.timeMs < LOCK_TTL_MS) {
        this.#heldUntil = 0;
        return false;
      }
      expect = lock.seq;
    }
    const result = await this.#client.publish(subject, utf8.encode(lockValue(this.#id)), [], expect);
    if (result === "conflict") {
      this.#heldUntil = 0;
      return false;
    }
    if (this.#heldUntil === 0)
      this.#logger?.debug("nats: this agent now sweeps expired keys", { id: this.#id });
    // Counted from before the write, minus a second, so a new holder never starts while this one sweeps.
    this.#heldUntil = start + LOCK_TTL_MS - 1_000;
    return true;
  }
}
