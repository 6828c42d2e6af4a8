/**
 * Runs async operations one after another. Each firewall instance serialises its read → plan →
 * transaction cycles: two overlapping cycles (a spec change racing the resync timer) would both see a
 * missing jump and both insert it.
 */
export class Serial {
  #tail: Promise<unknown> = Promise.resolve();

  /** Runs `body` after every operation queued before it has settled. */
  run<T>(body: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(body, body);
    this.#tail = next.catch(() => undefined);
    return next;
  }
}
