/**
 * Why: a store driver's watch retries a broken connection by itself and never tells the agent, so
 * without this the agent would answer "ready" through a store outage while its picture of the
 * leases silently ages. The probe reads the own lease key (`<prefix>/config` while none is held)
 * every `intervalMs` (one small read per agent, 0.2/s at the default 5 s) and says whether the store
 * answered; the agent turns that into `/readyz` ("store unreachable") and the `weft_store_connected`
 * gauge. Routes are never touched because of it: the kernel keeps what the last known leases said.
 * While the store is down it probes once a second (one failed connect, no log line), so the agent
 * can list the leases again as soon as the store is back instead of waiting out a driver's backoff.
 *
 * It also catches a store that lost its data (restarted empty, restored from an old backup): the own
 * lease is gone, yet no watch reports it, since a watch from the old revision waits for revisions
 * the new history has not reached. `onOwnMissing` lets the agent re-create it.
 */
import type { Store } from "../../stores/store.ts";
import type { Clock } from "../clock.ts";
import type { Logger } from "../log.ts";

export interface StoreProbeOptions {
  readonly store: Store;
  /** `<prefix>/config`: read while no lease is held. */
  readonly key: string;
  /** The own lease's key, when one is held. */
  readonly ownKey: () => string | undefined;
  /** The own lease key read back absent from a store that answers. */
  readonly onOwnMissing: () => void;
  readonly intervalMs: number;
  readonly clock: Clock;
  readonly log: Logger;
  /** Called when reachability changes (not on every probe). */
  readonly onChange: (connected: boolean) => void;
}

export class StoreProbe {
  readonly #o: StoreProbeOptions;
  #connected = true;
  #downSince = 0;

  constructor(options: StoreProbeOptions) {
    this.#o = options;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** Probes until `signal` aborts; one log line per transition, never one per probe. */
  async run(signal: AbortSignal): Promise<void> {
    const { store, key, clock, log } = this.#o;
    while (!signal.aborted) {
      // While the store is down, once a second: its return is noticed (and acted on) within ~1 s.
      await clock.sleep(this.#connected ? this.#o.intervalMs : Math.min(1_000, this.#o.intervalMs), signal);
      if (signal.aborted) return;
      let error: unknown;
      const own = this.#o.ownKey();
      const ok = await store.get(own ?? key).then(
        (kv) => {
          if (own !== undefined && kv === undefined && !signal.aborted) this.#o.onOwnMissing();
          return true;
        },
        (err: unknown) => {
          error = err;
          return false;
        },
      );
      if (signal.aborted || ok === this.#connected) continue;
      this.#connected = ok;
      if (ok) log.info("store reachable again", { downMs: clock.now() - this.#downSince });
      else {
        this.#downSince = clock.now();
        log.warn("store unreachable; routes stay as the last known leases say", { error });
      }
      this.#o.onChange(ok);
    }
  }
}
