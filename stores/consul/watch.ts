/**
 * The prefix watch of the consul driver: a chain of blocking queries (`?recurse&index=…&wait=…`), each
 * answering the whole prefix, diffed against the answer before. Puts carry their ModifyIndex; a delete
 * (seen only as absence) the index of its tombstone, looked up per deleted key. Consul's index rules:
 * an index that goes backwards restarts from 0 with a resync, the index stays ≥ 1, and the loop is
 * paced by a token bucket. Network failures back off and retry until the watch is aborted or the store
 * closes; only faults retrying cannot fix (Auth, Protocol) end it, by throwing.
 *
 * Reconnecting: attempts that fail start at most once a second (`RETRY_MAX_MS`), and one that already
 * took that long is followed at once, instead of a backoff of seconds being slept out after the
 * server is back. A Consul that runs but has no leader yet (restarting, electing) holds reads, and
 * answers them up to seconds after it leads, while a read sent once it leads is answered at once; so
 * while reconnecting, a fresh read goes out every `HEDGE_MS` that no read has answered, and the first
 * answer wins (`reconnectRead`). One log line when the server is lost, one every 30 s while it stays
 * away, one when it answers again.
 */

import { ClosedError, UnavailableError } from "../errors.ts";
import { EventQueue } from "../event-queue.ts";
import { Backoff, type StoreClock, systemStoreClock } from "../runtime.ts";
import type { KeyValue, ResyncCause, Revision, StoreLogger, WatchEvent, WatchOptions } from "../store.ts";
import {
  type ConsulEntry,
  consulPrefix,
  diffSnapshots,
  orderedEvents,
  type PlacedDelete,
  type Snapshot,
  type SnapshotDiff,
  sameContents,
  sortedEntries,
  startOutcome,
  TokenBucket,
  tombstoneIndex,
} from "./codec.ts";

/**
 * Pacing (Consul's blocking-query rules): a query that returned without progress (timed out, or
 * answered at once with the same index) may repeat at most 10 times a second, burst 2 — that is the
 * hot loop to prevent. A query that brought changes is followed at once, so events do not queue
 * behind the pace; a generous overall cap (200/s, burst 50) still bounds the loop.
 */
const STALL_RATE = 10;
const STALL_BURST = 2;
const CAP_RATE = 200;
const CAP_BURST = 50;
/** Deleted keys whose tombstone index is looked up at once. */
const LOOKUPS_AT_ONCE = 8;
/**
 * Reconnect pacing: from 100 ms, doubling to at most 1 s between the starts of two attempts. One
 * attempt against a server that is down costs a refused connect (the agent's store probe makes one a
 * second too); a longer cap only delays the watch after the server is back.
 */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 1_000;
/** While the server stays away, one log line per this long. */
const RETRY_LOG_EVERY_MS = 30_000;
/**
 * While reconnecting, a fresh read this long after the last one that has not answered yet; at most
 * `HEDGE_MAX` in flight (the oldest is dropped), so each may run for the whole request timeout (5 s).
 */
const HEDGE_MS = 500;
const HEDGE_MAX = 10;

/** What a watch needs from its store, which keeps the transport, the sessions and the listings. */
export interface WatchDeps {
  /** Aborted when the store closes. */
  readonly storeSignal: AbortSignal;
  /** The store's clock, which pacing and retries wait on (default: the system clock). */
  readonly clock?: StoreClock | undefined;
  readonly logger: StoreLogger | undefined;
  /**
   * A recursive read of a Consul prefix, blocking until the index passes `index` when it is > 0; values
   * over `maxValueBytes` are left out as the answer streams in.
   */
  read(prefix: string, index: Revision, signal: AbortSignal, maxValueBytes?: number): Promise<Snapshot>;
  /** Whether the session still exists (a key that vanished with its session expired). */
  sessionLives(id: string, signal: AbortSignal): Promise<boolean>;
  /** The newest snapshot the store listed of the prefix at or before `after`. */
  baseline(prefix: string, after: Revision): Snapshot | undefined;
  toKeyValue(entry: ConsulEntry): KeyValue;
  /** Lets the store wait for the watch's producer on close. */
  track(producer: Promise<void>): void;
}

export function watchPrefix(
  deps: WatchDeps,
  prefix: string,
  options: WatchOptions,
): AsyncIterable<WatchEvent> {
  const queue = new EventQueue<WatchEvent>(options.signal);
  if (deps.storeSignal.aborted) {
    queue.fail(new ClosedError("consul"));
    return queue;
  }
  const stop = new AbortController();
  const signal = AbortSignal.any([deps.storeSignal, stop.signal, options.signal ?? stop.signal]);
  // Every read of the watch (blocking queries, reconnects, tombstone lookups) leaves long values out:
  // each answers a whole prefix, as a list does.
  const { maxValueBytes } = options;
  const bounded: WatchDeps = { ...deps, read: (p, index, s) => deps.read(p, index, s, maxValueBytes) };
  const producer = watchLoop(bounded, prefix, options.afterRevision, queue, signal)
    .catch((err: unknown) => queue.fail(err))
    .finally(() => queue.end());
  deps.track(producer);
  // A consumer that leaves its loop early (break, return) also stops the blocking queries.
  const iterator = (): AsyncIterator<WatchEvent> => {
    const inner = queue[Symbol.asyncIterator]();
    const leave = () => {
      stop.abort();
      return inner.return?.() ?? Promise.resolve({ done: true as const, value: undefined });
    };
    return { next: () => inner.next(), return: leave };
  };
  return { [Symbol.asyncIterator]: iterator };
}

async function watchLoop(
  deps: WatchDeps,
  prefix: string,
  after: Revision,
  queue: EventQueue<WatchEvent>,
  signal: AbortSignal,
): Promise<void> {
  const consul = consulPrefix(prefix);
  const clock = deps.clock ?? systemStoreClock;
  const retry = new Backoff(RETRY_MIN_MS, RETRY_MAX_MS, clock);
  /** The current run of failed attempts: when it began, how many, when it was last logged. */
  let outage: { since: number; attempts: number; loggedAt: number } | undefined;
  const stallPace = new TokenBucket(STALL_RATE, STALL_BURST, performance.now());
  const cap = new TokenBucket(CAP_RATE, CAP_BURST, performance.now());
  let progressed = true;
  let state: Snapshot | undefined;
  let index = 0n; // 0: read at once (first read, after a reconnect or a stall, after going backwards)
  const resync = (snapshot: Snapshot, cause: ResyncCause) => {
    deps.logger?.info("consul watch delivers a full snapshot", {
      prefix,
      cause,
      index: String(snapshot.index),
    });
    const entries = sortedEntries(snapshot).map((e) => deps.toKeyValue(e));
    queue.push({ type: "resync", entries, revision: snapshot.index, cause });
  };
  while (!signal.aborted) {
    let attemptAt = clock.now();
    try {
      const now = performance.now();
      const wait = Math.max(cap.take(now), progressed ? 0 : stallPace.take(now));
      if (wait > 0) await clock.sleep(wait, signal);
      if (signal.aborted) return;
      attemptAt = clock.now();
      const snapshot =
        outage === undefined || index > 0n
          ? await deps.read(consul, index, signal)
          : await reconnectRead(deps, consul, signal, clock);
      retry.reset();
      if (outage !== undefined) {
        deps.logger?.info("consul watch reached its server again", {
          prefix,
          attempts: outage.attempts,
          downMs: Math.round(clock.now() - outage.since),
        });
        outage = undefined;
      }
      if (state === undefined) {
        const start = startOutcome(after, deps.baseline(consul, after), snapshot);
        if (start.kind === "resync") resync(snapshot, start.cause);
        else for (const e of start.puts) queue.push({ type: "put", kv: deps.toKeyValue(e) });
      } else {
        const diff = diffSnapshots(state, snapshot);
        if (diff.kind === "backwards") {
          // A restore or tombstone reaping: reset the index to 0, and resync unless nothing changed.
          if (!sameContents(state, snapshot)) resync(snapshot, "reconnect");
          state = snapshot;
          index = 0n;
          progressed = false;
          continue;
        }
        const events = await changes(deps, state, snapshot, diff, signal);
        if (events === undefined) resync(snapshot, "gap");
        else for (const event of events) queue.push(event);
      }
      // A blocking query that ends without progress timed out, or the server swapped its state under
      // it (snapshot restore, answered with the old index): read at once to see the index as it is.
      const stalled = index > 0n && snapshot.index <= index;
      progressed = snapshot.index > index;
      state = snapshot;
      index = stalled ? 0n : snapshot.index > 0n ? snapshot.index : 1n;
    } catch (err) {
      if (signal.aborted) return;
      if (!(err instanceof UnavailableError)) throw err;
      const failedAt = clock.now();
      // The pace is between attempts' starts: time the failed one took counts as waited.
      const delay = Math.max(0, retry.delay() - (failedAt - attemptAt));
      const fields = { prefix, index: String(index), retryInMs: Math.round(delay), error: err.message };
      if (outage === undefined) {
        outage = { since: attemptAt, attempts: 1, loggedAt: failedAt };
        deps.logger?.warn("consul watch lost its server; retrying", fields);
      } else {
        outage.attempts++;
        if (failedAt - outage.loggedAt >= RETRY_LOG_EVERY_MS) {
          outage.loggedAt = failedAt;
          deps.logger?.warn("consul watch still cannot reach its server; retrying", {
            ...fields,
            attempts: outage.attempts,
            downMs: Math.round(failedAt - outage.since),
          });
        }
      }
      if (delay > 0) await clock.sleep(delay, signal);
      index = 0n;
      progressed = false;
    }
  }
}

/**
 * A read of `prefix` (index 0) while reconnecting: the first answer of a read sent now and another one
 * every `HEDGE_MS` while none has answered; the others are aborted. Rejects with the last failure
 * once every read sent has failed (the caller backs off), or when `signal` aborts.
 */
async function reconnectRead(
  deps: WatchDeps,
  prefix: string,
  signal: AbortSignal,
  clock: StoreClock,
): Promise<Snapshot> {
  const inFlight: AbortController[] = [];
  let answer: Snapshot | undefined;
  let failure: unknown;
  /** Aborted when a read settles, to end the wait for the next one early. */
  let settled = new AbortController();
  let sentAt = 0;
  const send = () => {
    const own = new AbortController();
    inFlight.push(own);
    sentAt = clock.now();
    deps
      .read(prefix, 0n, AbortSignal.any([signal, own.signal]))
      .then(
        (snapshot) => {
          answer ??= snapshot;
        },
        (err: unknown) => {
          if (!own.signal.aborted) failure = err;
        },
      )
      .finally(() => {
        const at = inFlight.indexOf(own);
        if (at >= 0) inFlight.splice(at, 1);
        settled.abort();
      });
  };
  try {
    send();
    for (;;) {
      await clock.sleep(Math.max(0, sentAt + HEDGE_MS - clock.now()), settled.signal);
      // Cut short by a read that settled, or HEDGE_MS after the last one was sent.
      const early = settled.signal.aborted;
      settled = new AbortController();
      if (signal.aborted) throw signal.reason;
      if (answer !== undefined) return answer;
      if (inFlight.length === 0) throw failure;
      if (early) continue;
      if (inFlight.length >= HEDGE_MAX) inFlight[0]?.abort();
      send();
    }
  } finally {
    for (const own of inFlight) own.abort();
  }
}

/** The events between two snapshots, or undefined when a delete cannot be placed (a gap). */
async function changes(
  deps: WatchDeps,
  prev: Snapshot,
  next: Snapshot,
  diff: Extract<SnapshotDiff, { kind: "changes" }>,
  signal: AbortSignal,
): Promise<WatchEvent[] | undefined> {
  if (diff.recreated.length > 0) return undefined;
  const keys = diff.deleted.map((e) => e.key);
  const window = { after: prev.index, upTo: next.index };
  const placed: PlacedDelete[] = [];
  let unplaced = false;
  for (let i = 0; i < diff.deleted.length; i += LOOKUPS_AT_ONCE) {
    const batch = diff.deleted.slice(i, i + LOOKUPS_AT_ONCE).map(async (gone) => {
      const revision = tombstoneIndex(gone.key, await deps.read(gone.key.slice(1), 0n, signal), window, keys);
      if (revision === undefined) {
        unplaced = true;
        return;
      }
      const expired = gone.session !== undefined && !(await deps.sessionLives(gone.session, signal));
      placed.push({ key: gone.key, revision, reason: expired ? "expired" : "deleted" });
    });
    await Promise.all(batch);
  }
  return unplaced ? undefined : orderedEvents(diff.puts, placed, deps.toKeyValue);
}
