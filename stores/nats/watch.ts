/**
 * The prefix watch of the NATS driver. One consumer feed over the whole bucket stream, from the
 * stream sequence after the last one handled, filtered here by prefix. Because it reads every message
 * of the stream, consecutive sequences prove that nothing was missed; every other case is decided:
 * - a sequence seen before (a reopened feed repeats itself): skipped, so each event comes once;
 * - the first message of a fresh feed skips sequences, or the stream already starts beyond them: the
 *   history the watch needed is gone (a superseded or purged message, an aged-out marker) → `resync`
 *   "compacted" (a re-list), then on from the snapshot's revision;
 * - a hole in the middle of a feed (a delivery lost on the way, or a message removed before it was
 *   delivered): the feed is reopened after the last sequence handled; if the hole is still there, →
 *   `resync` "gap";
 * - the stream ends before the watch's position (the bucket was recreated) → `resync` "gap".
 * The feed is reopened on every reconnect, when a heartbeat reports a delivery this watch never got,
 * and when it has been silent for three heartbeat intervals (1 s each) while the stream answers: its
 * consumer died with its server, though the client's own connection lives on. While the stream does
 * not answer either (a leader election), a silent feed is kept: its consumer may resume, and a new one
 * could not be made meanwhile. Failures retry with backoff; only refused credentials end the watch
 * (with the error). Every timer waits on the store's clock.
 *
 * Every 30 s (and once at the start) the watch also re-lists its prefix and compares the snapshot with
 * the keys and revisions its own events produced, at exactly the snapshot's revision (the feed is
 * paused meanwhile): a difference, which would mean lost events, is replaced by a `resync` "gap".
 */

import { ClosedError, isStoreError, StoreErrorCode, UnavailableError } from "../errors.ts";
import { EventQueue, produceEvents, runWatchLoop } from "../event-queue.ts";
import { Backoff, repeat, type StoreClock, systemStoreClock } from "../runtime.ts";
import type { KeyValue, ResyncCause, Revision, StoreLogger, WatchEvent, WatchOptions } from "../store.ts";
import { boundValue } from "../values.ts";
import type { NatsClient } from "./client.ts";
import { boundRecord, type Entry, isExpired, type RawRecord, toEntry, toKeyValue } from "./codec.ts";
import type { Feed, FeedItem } from "./feed.ts";

/** What a watch needs from its store. */
export interface WatchDeps {
  readonly client: NatsClient;
  /** Aborted when the store closes. */
  readonly storeSignal: AbortSignal;
  /** The store's clock, which retries wait on (default: the system clock). */
  readonly clock?: StoreClock | undefined;
  readonly logger: StoreLogger | undefined;
  readonly relistMs: number;
  now(): number;
  /** The prefix's live keys at `revision`, when each expires, and the time expiry was judged at. */
  list(prefix: string, signal: AbortSignal): Promise<Listing>;
  /** Lets the store wait for the watch's producer on close. */
  track(producer: Promise<void>): void;
}

/** Resyncs closer together than this wait, so a store that keeps losing history is not hammered. */
const MIN_RESYNC_INTERVAL_MS = 1_000;

type Item = FeedItem | { readonly type: "reconnect" | "silent" | "relist" };

/**
 * Idle heartbeat of a watch's consumer. A consumer lives on one server; when that server dies without
 * the client's own connection breaking, only the missing heartbeats tell.
 */
export const WATCH_HEARTBEAT_MS = 1_000;
/** Heartbeats a watch may miss before it reopens its feed. */
const SILENT_HEARTBEATS = 3;

/** What the watch's own events say a key is. */
interface Seen {
  readonly revision: Revision;
  readonly expiresAtMs: number | undefined;
}

/** A snapshot of the prefix as the store's `#list` returns it. */
export interface Listing {
  readonly entries: KeyValue[];
  readonly revision: Revision;
  /** Expiry (ms since the epoch) of the entries that expire. */
  readonly expiries: ReadonlyMap<string, number>;
  readonly nowMs: number;
}

export async function* watchPrefix(
  deps: WatchDeps,
  prefix: string,
  options: WatchOptions,
): AsyncGenerator<WatchEvent, void, undefined> {
  if (deps.storeSignal.aborted) throw new ClosedError("nats");
  yield* produceEvents<WatchEvent>([options.signal, deps.storeSignal], deps.track, (queue, stop) =>
    new PrefixWatch(deps, prefix, options, queue, stop).run(),
  );
}

class PrefixWatch {
  readonly #deps: WatchDeps;
  readonly #prefix: string;
  readonly #maxValueBytes: number | undefined;
  readonly #queue: EventQueue<WatchEvent>;
  readonly #signal: AbortSignal;
  readonly #backoff: Backoff;
  readonly #clock: StoreClock;
  /** Every stream message up to this sequence has been handled. */
  #position: Revision;
  #resyncCause: ResyncCause | undefined;
  /** The feed was reopened because of a hole in the middle of it. */
  #reopenedForHole = false;
  #lastResyncAt = Number.NEGATIVE_INFINITY;
  /** Keys under the prefix as this watch's events left them; undefined until the first re-list. */
  #view: Map<string, Seen> | undefined;
  #check: Listing | undefined;

  constructor(
    deps: WatchDeps,
    prefix: string,
    options: WatchOptions,
    queue: EventQueue<WatchEvent>,
    signal: AbortSignal,
  ) {
    this.#deps = deps;
    this.#clock = deps.clock ?? systemStoreClock;
    this.#backoff = new Backoff(100, 5_000, this.#clock);
    this.#prefix = prefix;
    this.#maxValueBytes = options.maxValueBytes;
    this.#position = options.afterRevision;
    this.#queue = queue;
    this.#signal = signal;
  }

  /** Follows the stream until aborted; never rejects. Ends the queue, or fails it on refused credentials. */
  run(): Promise<void> {
    return runWatchLoop(
      this.#queue,
      this.#signal,
      this.#backoff,
      async () => {
        if (this.#resyncCause !== undefined) await this.#resync(this.#resyncCause);
        else await this.#follow();
        return "again";
      },
      (err) =>
        this.#warn(
          this.#resyncCause === undefined ? "the watch failed; reopening" : "re-listing failed; retrying",
          err,
        ),
    );
  }

  #warn(message: string, err: unknown): void {
    this.#deps.logger?.warn(`nats: ${message}`, {
      prefix: this.#prefix,
      revision: this.#position.toString(),
      ...(err === undefined ? {} : { error: err instanceof Error ? err.message : String(err) }),
    });
  }

  /** Replaces the caller's view with the prefix's current contents. */
  async #resync(cause: ResyncCause): Promise<void> {
    const wait = this.#lastResyncAt + MIN_RESYNC_INTERVAL_MS - this.#clock.now();
    if (wait > 0) await this.#clock.sleep(wait, this.#signal);
    const snapshot = await this.#deps.list(this.#prefix, this.#signal);
    if (this.#signal.aborted) return;
    this.#lastResyncAt = this.#clock.now();
    this.#queue.push({ type: "resync", entries: snapshot.entries, revision: snapshot.revision, cause });
    this.#deps.logger?.info("nats: watch resynced", {
      prefix: this.#prefix,
      cause,
      from: this.#position.toString(),
      revision: snapshot.revision.toString(),
      keys: snapshot.entries.length,
    });
    this.#position = snapshot.revision;
    this.#adopt(snapshot);
    this.#resyncCause = undefined;
    this.#reopenedForHole = false;
  }

  /** One feed from `#position + 1` until it must be reopened (returns) or fails (throws). */
  async #follow(): Promise<void> {
    const client = this.#deps.client;
    // Quick: after a reconnect or a silent feed the stream may be electing a leader; this read is
    // then repeated (with backoff) until it answers, and only then is the consumer created.
    const { first, last } = await client.streamBounds({ quick: true });
    if (last < this.#position) {
      this.#resyncCause = "gap";
      return;
    }
    if (first > this.#position + 1n && last > this.#position) {
      this.#resyncCause = this.#reopenedForHole ? "gap" : "compacted";
      return;
    }
    const clock = this.#clock;
    const items = new EventQueue<Item>(this.#signal);
    // Listening before the feed opens, so that a reconnect meanwhile is not missed.
    const unsubscribe = client.onConnection((event) => {
      if (event === "reconnect") items.push({ type: "reconnect" });
    });
    const timers = new AbortController();
    let feed: Feed | undefined;
    try {
      let heard = clock.now();
      feed = await client.feed(
        { stream: client.stream, start: { seq: this.#position + 1n }, heartbeatMs: WATCH_HEARTBEAT_MS },
        (item) => {
          if (item.type !== "error") heard = clock.now();
          items.push(item);
        },
      );
      const ticking = AbortSignal.any([this.#signal, timers.signal]);
      /** A "silent" item is queued and not handled yet: the watchdog does not queue another. */
      let suspecting = false;
      void repeat(clock, WATCH_HEARTBEAT_MS, ticking, () => {
        if (suspecting || clock.now() - heard <= SILENT_HEARTBEATS * WATCH_HEARTBEAT_MS) return;
        suspecting = true;
        items.push({ type: "silent" });
      });
      void repeat(clock, this.#deps.relistMs, ticking, () => items.push({ type: "relist" }));
      if (this.#view === undefined) items.push({ type: "relist" });
      let fresh = true;
      for await (const item of items) {
        switch (item.type) {
          case "record":
            // A reopened feed may repeat what was handled already.
            if (item.record.seq <= this.#position) break;
            if (!this.#handle(item.record, fresh)) return;
            fresh = false;
            this.#backoff.reset();
            break;
          case "heartbeat":
            // The consumer moved past sequences this watch never received.
            if (item.lastStreamSeq > this.#position) {
              this.#hole(fresh, item.lastStreamSeq);
              return;
            }
            break;
          case "reconnect":
            return;
          case "relist":
            await this.#relist();
            if (this.#resyncCause !== undefined) return;
            break;
          case "silent":
            // The consumer died with its server, or the stream is electing a leader and the consumer
            // pauses. The stream tells: answering, it would have let the consumer speak, so a new one
            // is due (and can be made now); silent too, the feed may yet resume, and a new consumer
            // could not be made meanwhile anyway: keep it, and ask again at the next tick.
            if (await this.#streamAnswers()) {
              throw new UnavailableError(
                client.endpoint,
                `the watch feed sent nothing for ${(SILENT_HEARTBEATS * WATCH_HEARTBEAT_MS) / 1_000} s`,
              );
            }
            suspecting = false;
            break;
          case "error":
            throw new UnavailableError(client.endpoint, `the watch feed failed: ${item.reason}`);
        }
      }
    } finally {
      timers.abort();
      unsubscribe();
      items.end();
      feed?.stop();
    }
  }

  /** Whether the stream answers a quick read now (rejects only for faults that end the watch). */
  async #streamAnswers(): Promise<boolean> {
    try {
      await this.#deps.client.streamBounds({ quick: true });
      return true;
    } catch (err) {
      if (isStoreError(err, StoreErrorCode.Auth) || isStoreError(err, StoreErrorCode.Closed)) throw err;
      return false;
    }
  }

  /**
   * Sequences after `#position` up to `next` never arrived. On a fresh feed they are gone from the
   * stream: resync. Otherwise they may have been lost on the way: reopen the feed and look again.
   */
  #hole(fresh: boolean, next: bigint): void {
    if (fresh) {
      this.#resyncCause = this.#reopenedForHole ? "gap" : "compacted";
      return;
    }
    this.#reopenedForHole = true;
    this.#deps.logger?.info("nats: a hole in the watch feed; reopening it", {
      prefix: this.#prefix,
      revision: this.#position.toString(),
      next: next.toString(),
    });
  }

  /** Handles the next message; false when the feed must be reopened (or the watch resync). */
  #handle(record: RawRecord, fresh: boolean): boolean {
    if (record.seq !== this.#position + 1n) {
      this.#hole(fresh, record.seq);
      return false;
    }
    this.#reopenedForHole = false;
    this.#position = record.seq;
    const entry = toEntry(this.#deps.client.bucket, boundRecord(record, this.#maxValueBytes));
    if (entry?.key.startsWith(this.#prefix)) this.#deliver(entry);
    if (this.#check?.revision === record.seq) this.#compare();
    return true;
  }

  #deliver(entry: Entry): void {
    if (entry.kind === "put") {
      const kv = boundValue(toKeyValue(entry, this.#deps.now()), this.#maxValueBytes);
      this.#queue.push({ type: "put", kv });
      this.#view?.set(entry.key, { revision: entry.revision, expiresAtMs: entry.expiresAtMs });
    } else {
      this.#queue.push({ type: "delete", key: entry.key, revision: entry.revision, reason: entry.reason });
      this.#view?.delete(entry.key);
    }
  }

  /** Re-lists the prefix while the feed waits; compared once the feed reaches the snapshot's revision. */
  async #relist(): Promise<void> {
    let snapshot: Listing;
    try {
      snapshot = await this.#deps.list(this.#prefix, this.#signal);
    } catch (err) {
      if (isStoreError(err, StoreErrorCode.Auth) || isStoreError(err, StoreErrorCode.Closed)) throw err;
      this.#warn("re-listing to check the watch failed; trying again later", err);
      return;
    }
    if (snapshot.revision < this.#position) return;
    this.#check = snapshot;
    if (snapshot.revision === this.#position) this.#compare();
  }

  /** Compares the view with the pending snapshot (both at its revision); a difference resyncs. */
  #compare(): void {
    const check = this.#check;
    this.#check = undefined;
    if (check === undefined) return;
    const view = this.#view;
    if (view === undefined) {
      this.#adopt(check);
      return;
    }
    const live = [...view].filter(([, seen]) => !isExpired(asPut(seen), check.nowMs));
    const same =
      live.length === check.entries.length &&
      check.entries.every((kv) => view.get(kv.key)?.revision === kv.revision);
    if (same) return;
    this.#deps.logger?.warn("nats: the watch's view differs from the store; resyncing", {
      prefix: this.#prefix,
      revision: check.revision.toString(),
      viewKeys: live.length,
      storeKeys: check.entries.length,
    });
    this.#queue.push({ type: "resync", entries: check.entries, revision: check.revision, cause: "gap" });
    this.#adopt(check);
  }

  /** Takes a snapshot as the view; a comparison still pending is moot. */
  #adopt(listing: Listing): void {
    this.#check = undefined;
    this.#view = new Map(
      listing.entries.map((kv) => [
        kv.key,
        { revision: kv.revision, expiresAtMs: listing.expiries.get(kv.key) },
      ]),
    );
  }
}

/** A seen key as a put entry, for the expiry test. */
function asPut(seen: Seen): Entry {
  return {
    kind: "put",
    key: "",
    value: "",
    revision: seen.revision,
    ttlSeconds: undefined,
    expiresAtMs: seen.expiresAtMs,
  };
}
