import { isStoreError, StoreErrorCode } from "./errors.ts";
import type { Backoff } from "./runtime.ts";

/**
 * A push-to-pull bridge: producers (a stream reader, a poll loop) push watch events, the consumer
 * iterates them. The iteration ends when the queue is closed or the signal aborts, and rethrows the
 * error the producer failed with, so a watch can never end silently.
 */
export class EventQueue<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #waiter: (() => void) | undefined;
  #ended = false;
  #error: unknown;
  #failed = false;

  constructor(signal?: AbortSignal) {
    if (signal?.aborted) this.end();
    signal?.addEventListener("abort", () => this.end(), { once: true });
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Number of events pushed but not yet consumed. */
  get size(): number {
    return this.#items.length;
  }

  push(item: T): void {
    if (this.#ended) return;
    this.#items.push(item);
    this.#wake();
  }

  /** Ends the iteration after the queued items, normally. */
  end(): void {
    this.#ended = true;
    this.#wake();
  }

  /** Ends the iteration after the queued items by throwing `error` to the consumer. */
  fail(error: unknown): void {
    if (this.#ended) return;
    this.#failed = true;
    this.#error = error;
    this.end();
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const item = this.#items.shift();
      if (item !== undefined) {
        yield item;
        continue;
      }
      if (this.#ended) {
        if (this.#failed) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
      });
    }
  }
}

/**
 * A watch's iteration: `produce` fills a queue until `stop` aborts — when any of `signals` aborts
 * (the caller's, the store's close) or the consumer leaves the loop — and the consumer gets the events.
 * On exit the producer is stopped and awaited, so no producer outlives its watch. `track` lets the store
 * wait for the producer on close().
 */
export async function* produceEvents<T>(
  signals: readonly (AbortSignal | undefined)[],
  track: (producer: Promise<void>) => void,
  produce: (queue: EventQueue<T>, stop: AbortSignal) => Promise<void>,
): AsyncGenerator<T, void, undefined> {
  const stop = new AbortController();
  const abort = () => stop.abort();
  for (const signal of signals) signal?.addEventListener("abort", abort, { once: true });
  if (signals.some((signal) => signal?.aborted === true)) stop.abort();
  const queue = new EventQueue<T>(stop.signal);
  const producer = produce(queue, stop.signal);
  track(producer);
  try {
    yield* queue;
  } finally {
    stop.abort();
    for (const signal of signals) signal?.removeEventListener("abort", abort);
    await producer;
  }
}

/** What a watch producer's step asks for next: run again at once, or after a backoff pause. */
export type StepOutcome = "again" | "pause";

/**
 * The loop of a watch producer (etcd v3, NATS): runs `step` until `signal` aborts, pausing with
 * `backoff` after a step that asks for it or fails. A failure is reported to `warn` and retried,
 * except a closed store (ends the watch) and refused credentials (fail the queue: retrying cannot fix
 * them). Never rejects; always ends the queue.
 */
export async function runWatchLoop<T>(
  queue: EventQueue<T>,
  signal: AbortSignal,
  backoff: Backoff,
  step: () => Promise<StepOutcome>,
  warn: (err: unknown) => void,
): Promise<void> {
  try {
    while (!signal.aborted) {
      try {
        if ((await step()) === "again") continue;
      } catch (err) {
        if (signal.aborted || isStoreError(err, StoreErrorCode.Closed)) break;
        if (isStoreError(err, StoreErrorCode.Auth)) {
          queue.fail(err);
          break;
        }
        warn(err);
      }
      await backoff.wait(signal);
    }
  } finally {
    queue.end();
  }
}
