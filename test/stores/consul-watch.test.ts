// The Consul watch's reconnect pacing (stores/consul/watch.ts) on fake dependencies and a fake clock:
// the blocking reads are scripted, each failing at once or after a given time, or answering.
import { describe, expect, test } from "bun:test";
import { type ConsulEntry, type Snapshot, snapshotOf } from "../../stores/consul/codec.ts";
import { type WatchDeps, watchPrefix } from "../../stores/consul/watch.ts";
import { UnavailableError } from "../../stores/errors.ts";
import type { StoreClock } from "../../stores/runtime.ts";
import type { WatchEvent } from "../../stores/store.ts";

const ENDPOINT = "http://127.0.0.1:8500";

function entry(key: string, index: bigint): ConsulEntry {
  return { key, value: "{}", createIndex: index, modifyIndex: index, session: undefined };
}

/**
 * One scripted read: a snapshot, a failure after `failAfterMs` of the fake clock, or no answer until
 * it is aborted (`hold`: a Consul without a leader holding the read).
 */
type Step = { readonly answer: Snapshot } | { readonly failAfterMs: number } | { readonly hold: true };

/** What the watch did, in order: reads (with the fake time) and sleeps. */
type Trace = ({ kind: "read"; at: number; index: bigint } | { kind: "sleep"; ms: number })[];

/**
 * A fake clock and deps whose reads follow `steps`; once they run out, a read blocks until aborted,
 * as a blocking query with nothing new would. A sleep first lets every settled read be handled: if
 * that aborted it, it ends at once without time passing, else it advances the clock by its length.
 */
function scripted(steps: Step[]) {
  let now = 0;
  const trace: Trace = [];
  const lines: string[] = [];
  /** Reads in flight now, the most at once, and how many held reads were aborted. */
  const reads = { now: 0, most: 0, heldAborted: 0 };
  const clock: StoreClock = {
    now: () => now,
    sleep: async (ms, signal) => {
      await new Promise((resolve) => setImmediate(resolve));
      if (signal?.aborted) return;
      trace.push({ kind: "sleep", ms });
      now += ms;
    },
  };
  const first = steps[0];
  const deps: WatchDeps = {
    storeSignal: new AbortController().signal,
    clock,
    logger: {
      debug: () => undefined,
      info: (m, f) => lines.push(`${m} ${JSON.stringify(f)}`),
      warn: (m, f) => lines.push(`${m} ${JSON.stringify(f)}`),
    },
    read: async (_prefix, index, signal) => {
      trace.push({ kind: "read", at: now, index });
      const step = steps.shift();
      if (step === undefined || "hold" in step) {
        reads.most = Math.max(reads.most, ++reads.now);
        // Aborting a read cancels it at once (its promise settles a moment later).
        await new Promise<void>((resolve) =>
          signal.addEventListener(
            "abort",
            () => {
              reads.now--;
              if (step !== undefined) reads.heldAborted++;
              resolve();
            },
            { once: true },
          ),
        );
        throw signal.reason;
      }
      if ("answer" in step) return step.answer;
      now += step.failAfterMs;
      throw new UnavailableError(
        ENDPOINT,
        step.failAfterMs === 0 ? "ECONNREFUSED" : "no answer within 5000 ms",
      );
    },
    sessionLives: async () => true,
    baseline: () => (first !== undefined && "answer" in first ? first.answer : undefined),
    toKeyValue: (e) => ({ key: `/${e.key}`, value: e.value, revision: e.modifyIndex, expires: false }),
    track: () => undefined,
  };
  return { deps, trace, lines, reads };
}

/** Runs the watch from revision 5 until the first put arrives; returns it. */
async function firstPut(deps: WatchDeps): Promise<WatchEvent | undefined> {
  const stop = new AbortController();
  for await (const event of watchPrefix(deps, "/p/", { afterRevision: 5n, signal: stop.signal })) {
    if (event.type === "put") {
      stop.abort();
      return event;
    }
  }
  return undefined;
}

/** The sleep right after each failed read (before the next read): the reconnect wait, if any. */
function waitsAfterFailures(trace: Trace, failed: ReadonlySet<number>): (number | undefined)[] {
  const out: (number | undefined)[] = [];
  let read = -1;
  for (let i = 0; i < trace.length; i++) {
    const t = trace[i];
    if (t?.kind !== "read") continue;
    read++;
    if (!failed.has(read)) continue;
    const next = trace[i + 1];
    out.push(next?.kind === "sleep" ? next.ms : undefined);
  }
  return out;
}

const at5 = snapshotOf(5n, [entry("p/a", 5n)]);
const at7 = snapshotOf(7n, [entry("p/a", 5n), entry("p/b", 7n)]);

describe("consul watch - reconnecting", () => {
  test("consul watch - reconnect attempts start at most a second apart, however long the server stays away", async () => {
    const fails = Array.from({ length: 10 }, () => ({ failAfterMs: 0 }));
    const { deps, trace } = scripted([{ answer: at5 }, ...fails, { answer: at7 }]);
    const put = await firstPut(deps);
    expect(put?.type === "put" && put.kv.key).toBe("/p/b");
    // Reads 1..10 failed; the first sleep after each is the reconnect wait.
    const waits = waitsAfterFailures(trace, new Set(Array.from({ length: 10 }, (_, i) => i + 1)));
    expect(waits).toHaveLength(10);
    for (const w of waits) {
      expect(w).toBeDefined();
      expect(w ?? 0).toBeLessThanOrEqual(1_000);
    }
    // Doubling from 100 ms: the last ones are at the cap (jitter keeps them in its upper half).
    expect(waits.at(-1) ?? 0).toBeGreaterThanOrEqual(500);
  });

  test("consul watch - an attempt held until its timeout (a Consul still electing its leader) is followed at once", async () => {
    const { deps, trace } = scripted([
      { answer: at5 },
      { failAfterMs: 0 },
      { failAfterMs: 5_000 },
      { answer: at7 },
    ]);
    const put = await firstPut(deps);
    expect(put?.type === "put" && put.kv.key).toBe("/p/b");
    const [fast, held] = waitsAfterFailures(trace, new Set([1, 2]));
    expect(fast).toBeGreaterThan(0);
    // No wait between the held read's failure and the next read.
    expect(held).toBeUndefined();
    const reads = trace.filter((t) => t.kind === "read");
    expect(reads[3]?.at).toBe((reads[2]?.at ?? 0) + 5_000);
    expect(reads[3]?.index).toBe(0n);
  });

  test("consul watch - while reconnecting, a read held without an answer gets a fresh one after 500 ms; the first answer wins", async () => {
    const { deps, trace, reads } = scripted([
      { answer: at5 },
      { failAfterMs: 0 },
      { hold: true },
      { answer: at7 },
    ]);
    const put = await firstPut(deps);
    expect(put?.type === "put" && put.kv.key).toBe("/p/b");
    const sent = trace.filter((t) => t.kind === "read");
    // The blocking read, the one that failed, the held one, and the one sent 500 ms after it.
    expect(sent[3]?.at).toBe((sent[2]?.at ?? 0) + 500);
    expect(sent[3]?.index).toBe(0n);
    expect(reads.heldAborted).toBe(1);
  });

  test("consul watch - reads held while reconnecting are at most 10 at once, the oldest dropped for a new one", async () => {
    const held = Array.from({ length: 14 }, () => ({ hold: true }) as const);
    const { deps, reads } = scripted([{ answer: at5 }, { failAfterMs: 0 }, ...held, { answer: at7 }]);
    const put = await firstPut(deps);
    expect(put?.type === "put" && put.kv.key).toBe("/p/b");
    expect(reads.most).toBe(10);
    expect(reads.heldAborted).toBe(14);
  });

  test("consul watch - an outage logs one line when the server is lost, one per 30 s while it stays away, one when it is back", async () => {
    const { deps, lines } = scripted([
      { answer: at5 },
      { failAfterMs: 0 },
      { failAfterMs: 0 },
      { failAfterMs: 0 },
      { failAfterMs: 31_000 },
      { failAfterMs: 0 },
      { failAfterMs: 0 },
      { answer: at7 },
    ]);
    await firstPut(deps);
    expect(lines.filter((l) => l.startsWith("consul watch lost its server; retrying"))).toHaveLength(1);
    const still = lines.filter((l) => l.startsWith("consul watch still cannot reach its server"));
    expect(still).toHaveLength(1);
    expect(still[0]).toContain('"attempts":4');
    const back = lines.filter((l) => l.startsWith("consul watch reached its server again"));
    expect(back).toHaveLength(1);
    expect(back[0]).toContain('"attempts":6');
    expect(lines).toHaveLength(3);
  });
});
