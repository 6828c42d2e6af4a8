/**
 * The streaming prefix watch of the etcd driver: one `POST /v3/watch` at a time, resumed from the last
 * revision seen whenever the stream ends or breaks (server restarts included), re-listed into a
 * `resync` when etcd compacted the history it needed. Events are delivered in revision order, each
 * exactly once: a message's lease lookups all finish before any of its events is queued, and a
 * message that fails half way is received again after the reconnect.
 */

import { ClosedError, StoreError, StoreErrorCode, UnavailableError } from "../errors.ts";
import { type EventQueue, produceEvents, runWatchLoop } from "../event-queue.ts";
import type { HttpStream } from "../http.ts";
import { Backoff, type StoreClock } from "../runtime.ts";
import type { ListOptions, ListResult, Revision, StoreLogger, WatchEvent, WatchOptions } from "../store.ts";
import { boundValue } from "../values.ts";
import {
  decodeGatewayError,
  gatewayFailure,
  isInvalidToken,
  readerFailure,
  toKeyValue,
  watchCreateRequest,
} from "./codec.ts";
import { decodeWatchMessage, type EtcdEvent, type WatchMessage, watchReader } from "./watch-codec.ts";

/** What a watch needs from its store; injected so the store keeps transport, auth and lease caches. */
export interface WatchDeps {
  /** Aborted when the store closes. */
  readonly storeSignal: AbortSignal;
  /** The store's clock, which retries wait on (default: the system clock). */
  readonly clock?: StoreClock | undefined;
  readonly logger: StoreLogger | undefined;
  /**
   * A stream silent this long is presumed dead (a half-open connection ends no read) and reopened.
   * etcd sends a progress notification on an idle watch every 10 minutes by default.
   */
  readonly idleTimeoutMs: number;
  /** The store's list; a resync passes the watch's `maxValueBytes`. */
  list(prefix: string, options: ListOptions, signal: AbortSignal): Promise<ListResult>;
  /** Opens `POST /v3/watch` with `body`; `token` is the auth token it was sent with. */
  open(body: string, signal: AbortSignal): Promise<{ stream: HttpStream; token: string | undefined }>;
  /** The server called `token` invalid: authenticate again before the next request. */
  dropToken(token: string): void;
  /** Seconds left on a lease this client granted or renewed, when it knows without asking. */
  cachedTtl(lease: bigint): number | undefined;
  /** Seconds left on a lease, asked from the server; -1 when the lease no longer exists. */
  timeToLive(lease: bigint, signal: AbortSignal): Promise<number>;
  /** Lets the store wait for the watch's producer on close. */
  track(producer: Promise<void>): void;
}

/** Why one stream ended without an error. */
type StreamEnd = "compacted" | "ended" | "token";

export async function* watchPrefix(
  deps: WatchDeps,
  prefix: string,
  options: WatchOptions,
): AsyncGenerator<WatchEvent, void, undefined> {
  if (deps.storeSignal.aborted) throw new ClosedError("etcd");
  yield* produceEvents<WatchEvent>([options.signal, deps.storeSignal], deps.track, (queue, stop) =>
    new PrefixWatch(deps, prefix, options, queue, stop).run(),
  );
}

class PrefixWatch {
  readonly #deps: WatchDeps;
  readonly #prefix: string;
  readonly #queue: EventQueue<WatchEvent>;
  readonly #signal: AbortSignal;
  readonly #backoff: Backoff;
  /** Every change up to this revision has been delivered (or is known not to exist). */
  #last: Revision;
  #mustResync = false;
  /** Look leases up for a put's TTL and a delete's reason (WatchOptions.details). */
  readonly #details: boolean;
  /** Values longer than this are left out of puts and resyncs (WatchOptions.maxValueBytes). */
  readonly #maxValueBytes: number | undefined;

  constructor(
    deps: WatchDeps,
    prefix: string,
    options: WatchOptions,
    queue: EventQueue<WatchEvent>,
    signal: AbortSignal,
  ) {
    this.#deps = deps;
    this.#backoff = new Backoff(100, 5_000, deps.clock);
    this.#prefix = prefix;
    this.#last = options.afterRevision;
    this.#details = options.details ?? true;
    this.#maxValueBytes = options.maxValueBytes;
    this.#queue = queue;
    this.#signal = signal;
  }

  /** Streams until aborted; never rejects. Ends the queue, or fails it with a fault retrying cannot fix. */
  run(): Promise<void> {
    return runWatchLoop(
      this.#queue,
      this.#signal,
      this.#backoff,
      async () => {
        if (this.#mustResync) {
          await this.#resync();
          return "again";
        }
        const end = await this.#stream();
        if (end === "ended" && !this.#signal.aborted) {
          this.#warn("the watch stream ended; reconnecting", undefined);
        }
        return "pause";
      },
      (err) =>
        this.#warn(this.#mustResync ? "re-listing failed; retrying" : "the watch failed; reconnecting", err),
    );
  }

  #warn(message: string, err: unknown): void {
    this.#deps.logger?.warn(`etcd: ${message}`, {
      prefix: this.#prefix,
      revision: this.#last.toString(),
      ...(err === undefined ? {} : { error: err instanceof Error ? err.message : String(err) }),
    });
  }

  /** Replaces the caller's view with the current contents after the history it needed was compacted. */
  async #resync(): Promise<void> {
    const snapshot = await this.#deps.list(
      this.#prefix,
      { maxValueBytes: this.#maxValueBytes },
      this.#signal,
    );
    if (this.#signal.aborted) return;
    this.#queue.push({
      type: "resync",
      entries: snapshot.entries,
      revision: snapshot.revision,
      cause: "compacted",
    });
    this.#last = snapshot.revision;
    this.#mustResync = false;
    this.#deps.logger?.info("etcd: watch resynced after compaction", {
      prefix: this.#prefix,
      revision: snapshot.revision.toString(),
      keys: snapshot.entries.length,
    });
  }

  /** One stream from `#last + 1` until it ends, breaks, or is canceled. */
  async #stream(): Promise<StreamEnd> {
    const body = JSON.stringify(watchCreateRequest(this.#prefix, this.#last + 1n));
    const { stream, token } = await this.#deps.open(body, this.#signal);
    const { response, endpoint } = stream;
    const where = `${endpoint}/v3/watch`;
    if (!response.ok || response.body === null) {
      const text = await response.text().catch(() => "");
      const failure = decodeGatewayError(safeJson(text));
      if (failure !== undefined && isInvalidToken(failure) && token !== undefined)
        return this.#tokenRejected(token);
      throw gatewayFailure(failure, response.status, endpoint, "/v3/watch", text);
    }
    const reader = response.body.getReader();
    const cancel = () => {
      reader.cancel().catch(() => undefined);
    };
    this.#signal.addEventListener("abort", cancel, { once: true });
    try {
      const messages: unknown[] = [];
      const decode = watchReader(this.#maxValueBytes, (json) => messages.push(json));
      let silent = false;
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        const watchdog = setTimeout(() => {
          silent = true;
          cancel();
        }, this.#deps.idleTimeoutMs);
        try {
          chunk = await reader.read();
        } catch (err) {
          throw new UnavailableError(endpoint, `the watch stream broke: ${describe(err)}`, { cause: err });
        } finally {
          clearTimeout(watchdog);
        }
        if (silent) {
          const seconds = this.#deps.idleTimeoutMs / 1_000;
          throw new UnavailableError(
            endpoint,
            `the watch stream sent nothing for ${seconds} s, not even progress`,
          );
        }
        if (chunk.done || this.#signal.aborted) return "ended";
        try {
          decode.push(chunk.value);
        } catch (err) {
          throw readerFailure(err, where);
        }
        for (const json of messages.splice(0)) {
          const message = decodeWatchMessage(json, where, this.#maxValueBytes);
          const end = await this.#handle(message, token, endpoint);
          if (end !== undefined) return end;
          if (this.#signal.aborted) return "ended";
        }
      }
    } finally {
      this.#signal.removeEventListener("abort", cancel);
      cancel();
    }
  }

  async #handle(
    message: WatchMessage,
    token: string | undefined,
    endpoint: string,
  ): Promise<StreamEnd | undefined> {
    switch (message.kind) {
      case "created":
        return undefined;
      case "progress":
        // Progress is only sent once the watcher is in sync, so nothing at or below it is still due.
        if (message.revision > this.#last) this.#last = message.revision;
        this.#backoff.reset();
        return undefined;
      case "events":
        await this.#deliver(message.events);
        this.#backoff.reset();
        return undefined;
      case "canceled":
        if (message.compactRevision > 0n) {
          this.#deps.logger?.info("etcd: watch history was compacted; re-listing", {
            prefix: this.#prefix,
            revision: this.#last.toString(),
            compactRevision: message.compactRevision.toString(),
          });
          this.#mustResync = true;
          return "compacted";
        }
        if (isInvalidToken(message.reason) && token !== undefined) return this.#tokenRejected(token);
        if (
          /PermissionDenied|Unauthenticated|permission denied|user name is empty|authentication/i.test(
            message.reason,
          )
        ) {
          throw new StoreError(
            StoreErrorCode.Auth,
            `etcd at ${endpoint} refused to watch ${this.#prefix}: ${message.reason} (check the etcd username, password and the user's role)`,
            { endpoint },
          );
        }
        throw new StoreError(
          StoreErrorCode.Protocol,
          `etcd at ${endpoint}/v3/watch canceled the watch of ${this.#prefix}: ${message.reason || "no reason given"}`,
          { endpoint },
        );
      case "error":
        if (isInvalidToken(message.error) && token !== undefined) return this.#tokenRejected(token);
        throw gatewayFailure(message.error, 200, endpoint, "/v3/watch", message.error.message);
    }
  }

  #tokenRejected(token: string): StreamEnd {
    this.#deps.dropToken(token);
    return "token";
  }

  /**
   * Queues the events newer than `#last`, after looking up what they need: the TTL left on a put's
   * lease, and for a delete whether its lease is gone (then the key expired). Without details only
   * TTLs known without a round trip are filled in, and a delete with a lease has reason "unknown".
   */
  async #deliver(events: readonly EtcdEvent[]): Promise<void> {
    const fresh = events.filter((e) => e.kv.modRevision > this.#last);
    if (fresh.length === 0) return;
    const asked = new Map<bigint, Promise<number>>();
    const ask = (lease: bigint) => {
      let answer = asked.get(lease);
      if (answer === undefined) {
        answer = this.#deps.timeToLive(lease, this.#signal);
        asked.set(lease, answer);
      }
      return answer;
    };
    const details = this.#details;
    const lookups = fresh.map((e): number | Promise<number> | undefined => {
      if (e.type === "put") {
        if (e.kv.lease === 0n) return undefined;
        const cached = this.#deps.cachedTtl(e.kv.lease);
        return cached !== undefined || !details ? cached : ask(e.kv.lease);
      }
      const lease = e.prevKv?.lease ?? 0n;
      return lease === 0n || !details ? undefined : ask(lease);
    });
    const ttls = await Promise.all(lookups);
    if (this.#signal.aborted) return;
    fresh.forEach((e, i) => {
      const ttl = ttls[i];
      if (e.type === "put") {
        const kv = toKeyValue(e.kv, ttl !== undefined && ttl > 0 ? ttl : undefined);
        this.#queue.push({ type: "put", kv: boundValue(kv, this.#maxValueBytes, e.omittedBytes) });
      } else {
        const leased = (e.prevKv?.lease ?? 0n) !== 0n;
        const reason = ttl !== undefined && ttl < 0 ? "expired" : leased && !details ? "unknown" : "deleted";
        this.#queue.push({ type: "delete", key: e.kv.key, revision: e.kv.modRevision, reason });
      }
    });
    const newest = fresh[fresh.length - 1]?.kv.modRevision ?? this.#last;
    if (newest > this.#last) this.#last = newest;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
