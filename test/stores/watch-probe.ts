/**
 * Test helper: runs a store watch in the background, records every event, and lets a test wait for a
 * condition on what arrived, failing with the events seen so far when it does not come in time.
 */
import type { Revision, Store, WatchEvent, WatchOptions } from "../../stores/store.ts";

export interface WatchProbe {
  readonly events: WatchEvent[];
  /** The error the watch threw, if it did. */
  readonly error: unknown;
  /** True once the iteration has finished (normally or by throwing). */
  readonly finished: boolean;
  /** Waits until `done(events)` holds; rejects after `timeoutMs` describing `what`. */
  until(what: string, done: (events: readonly WatchEvent[]) => boolean, timeoutMs?: number): Promise<void>;
  /** Aborts the watch and waits for the iteration to end. */
  stop(): Promise<void>;
}

export function probe(
  store: Store,
  prefix: string,
  afterRevision: Revision,
  options: Omit<WatchOptions, "afterRevision" | "signal"> = {},
): WatchProbe {
  const controller = new AbortController();
  const events: WatchEvent[] = [];
  let error: unknown;
  let finished = false;
  const loop = (async () => {
    try {
      for await (const event of store.watch(prefix, {
        ...options,
        afterRevision,
        signal: controller.signal,
      })) {
        events.push(event);
      }
    } catch (err) {
      error = err;
    } finally {
      finished = true;
    }
  })();
  return {
    events,
    get error() {
      return error;
    },
    get finished() {
      return finished;
    },
    async until(what, done, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (!done(events)) {
        if (finished)
          throw new Error(`watch ended before ${what}: ${String(error)}; saw ${describe(events)}`);
        if (Date.now() > deadline)
          throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; saw ${describe(events)}`);
        await Bun.sleep(5);
      }
    },
    async stop() {
      controller.abort();
      await loop;
    },
  };
}

/** The key → value map a consumer of these events would hold. */
export function view(
  events: readonly WatchEvent[],
  initial: ReadonlyMap<string, string> = new Map(),
): Map<string, string> {
  const state = new Map(initial);
  for (const event of events) {
    if (event.type === "put") state.set(event.kv.key, event.kv.value);
    else if (event.type === "delete") state.delete(event.key);
    else {
      state.clear();
      for (const kv of event.entries) state.set(kv.key, kv.value);
    }
  }
  return state;
}

export function describe(events: readonly WatchEvent[]): string {
  const parts = events.map((e) =>
    e.type === "put"
      ? `put ${e.kv.key}@${e.kv.revision}`
      : e.type === "delete"
        ? `delete(${e.reason}) ${e.key}@${e.revision}`
        : `resync(${e.cause}, ${e.entries.length} keys)@${e.revision}`,
  );
  const shown = parts.length > 12 ? [...parts.slice(0, 6), "…", ...parts.slice(-6)] : parts;
  return `${events.length} events [${shown.join(", ")}]`;
}
