/**
 * The parts of test/bench/scale.bench.ts as the outer script runs them, taking turns between the
 * drivers (test/bench/scale-driver.ts): initial sync round by round (weft, floor inline, floor
 * nexthop, flanneld), idle and churn with the agent the last round left running, start → ready with
 * the agents alternating. Results and remarks go into one `ScaleResults`.
 */
import type { AgentKind } from "./agent-fixtures.ts";
import type { Driver } from "./scale-driver.ts";
import {
  CAP_MS,
  CHURN,
  CHURN_SIZE,
  type ChurnResult,
  type FloorResult,
  IDLE_SECONDS,
  IDLE_SIZES,
  type IdleResult,
  READY_SAMPLES,
  READY_TIMEOUT_MS,
  type ReadyResult,
  type ScalePhase,
  type SyncResult,
  syncRounds,
} from "./scale-fixtures.ts";
import { type ScaleResults, SYNC_SIDES, type SyncSide } from "./scale-report.ts";

const MINUTE = 60_000;

export interface PhaseContext {
  readonly drivers: ReadonlyMap<AgentKind | "floor", Driver>;
  readonly results: ScaleResults;
  readonly phases: readonly ScalePhase[];
  /** True once Ctrl-C's cleanup started: no new command goes out. */
  interrupted(): boolean;
  progress(line: string): void;
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));
const fmt = (ms: number | undefined) => (ms === undefined ? "> cap" : `${ms.toFixed(1)} ms`);

/** The parts, bound to one run's drivers and results. */
export function phaseRunner(ctx: PhaseContext) {
  const { drivers, results, progress } = ctx;
  const wants = (phase: ScalePhase) => ctx.phases.includes(phase);

  function record(
    n: number,
    side: SyncSide,
    warmup: boolean,
    ms: number | undefined,
    reached: number,
    counted: number,
  ) {
    let bySide = results.sync.get(n);
    if (bySide === undefined) {
      bySide = new Map();
      results.sync.set(n, bySide);
    }
    const samples = bySide.get(side) ?? [];
    samples.push({ warmup, ms, reached, counted });
    bySide.set(side, samples);
  }

  /** idle (and churn at CHURN_SIZE) with the agent the last sync left running; stops it after. */
  async function hold(kind: AgentKind, driver: Driver, n: number): Promise<void> {
    if (wants("idle") && IDLE_SIZES.includes(n)) {
      try {
        progress(`${kind} at ${n}: idle for ${IDLE_SECONDS} s`);
        const result = await driver.request<IdleResult>(
          { op: "idle", seconds: IDLE_SECONDS },
          IDLE_SECONDS * 1_000 + MINUTE,
        );
        results.idle.push({ kind, n, result });
      } catch (err) {
        results.idle.push({ kind, n, missing: errorText(err) });
      }
    }
    if (wants("churn") && n === CHURN_SIZE) {
      try {
        progress(`${kind} at ${n}: churn, ${CHURN.rate} operations a second for ${CHURN.seconds} s`);
        const result = await driver.request<ChurnResult>({ op: "churn" }, CHURN.seconds * 1_000 + 4 * MINUTE);
        results.churn.push({ kind, n, result });
      } catch (err) {
        results.churn.push({ kind, n, missing: errorText(err) });
      }
    }
    await driver.request({ op: "stop" }, MINUTE).catch(() => undefined);
  }

  const holdsAt = (n: number) =>
    (wants("idle") && IDLE_SIZES.includes(n)) || (wants("churn") && n === CHURN_SIZE);

  /** Why hold() never ran for `kind` at `n`, recorded where its figures would be. */
  function holdMissing(kind: AgentKind, n: number, why: string): void {
    if (wants("idle") && IDLE_SIZES.includes(n)) results.idle.push({ kind, n, missing: why });
    if (wants("churn") && n === CHURN_SIZE) results.churn.push({ kind, n, missing: why });
  }

  async function syncPart(n: number, warmup: boolean): Promise<void> {
    const rounds = syncRounds(n);
    const capped = new Set<SyncSide>();
    const held = new Set<AgentKind>();
    for (let round = warmup ? -1 : 0; round < rounds; round++) {
      const label = `${n}-${round < 0 ? "warmup" : `run${round + 1}`}`;
      for (const side of SYNC_SIDES) {
        if (ctx.interrupted()) throw new Error("interrupted");
        const isWarmup = round < 0;
        if (side === "floor-inline" || side === "floor-nexthop") {
          const driver = drivers.get("floor");
          if (driver === undefined || driver.dead !== undefined || capped.has(side)) continue;
          const mode = side === "floor-inline" ? "inline" : "nexthop";
          try {
            const r = await driver.request<FloorResult>(
              { op: "floor", mode, capMs: CAP_MS },
              CAP_MS + MINUTE,
            );
            if (r.exitCode !== 0 || r.counted !== n)
              results.notes.push(
                `${side} ${label}: ip exited ${r.exitCode}, ${r.counted} of ${n} routes in a dump; ${r.stderr}`,
              );
            record(n, side, isWarmup, r.ms, r.counted, r.counted);
            if (r.ms === undefined) {
              capped.add(side);
              results.notes.push(
                `${side} ${label}: ip stopped at ${CAP_MS / 1000} s; not repeated at this N`,
              );
            }
            progress(
              `${side} ${label}: ${fmt(r.ms)} (monitor saw all at ${fmt(r.monitorMs)}, ${r.counted} routes)`,
            );
          } catch (err) {
            results.notes.push(`${side} ${label}: FAILED: ${errorText(err)}`);
          }
          continue;
        }
        const driver = drivers.get(side);
        if (driver === undefined || driver.dead !== undefined || capped.has(side)) continue;
        const keep = round === rounds - 1 && holdsAt(n);
        try {
          const r = await driver.request<SyncResult>(
            { op: "sync", label, capMs: CAP_MS, keep },
            CAP_MS + 2 * MINUTE,
          );
          record(n, side, isWarmup, r.ms, r.reached, r.counted);
          progress(
            `${side} ${label}: ${fmt(r.ms)}, READY=1 ${fmt(r.notifyMs)}, monitor ${r.reached}, ip route ${r.counted}, overruns ${r.monitorResyncs}`,
          );
          if (r.ms === undefined) {
            capped.add(side);
            results.notes.push(
              `${side} at N=${n.toLocaleString("en")}: start ${label} stopped at ${CAP_MS / 1000} s with ${r.reached} of ${n} routes; not repeated at this N`,
            );
            if (holdsAt(n)) holdMissing(side, n, `its sync did not finish within ${CAP_MS / 1000} s`);
          } else if (keep) {
            held.add(side);
            await hold(side, driver, n);
          }
        } catch (err) {
          results.notes.push(`${side} ${label}: FAILED: ${errorText(err)}`);
        }
      }
    }
    for (const kind of ["weft", "flanneld"] as const) {
      if (holdsAt(n) && drivers.has(kind) && !held.has(kind) && !capped.has(kind))
        holdMissing(kind, n, "its last sync round failed");
    }
  }

  /** idle and churn without the sync part: one start each, untimed. */
  async function holdOnly(n: number): Promise<void> {
    for (const kind of ["weft", "flanneld"] as const) {
      const driver = drivers.get(kind);
      if (driver === undefined || driver.dead !== undefined) continue;
      try {
        const r = await driver.request<SyncResult>(
          { op: "sync", label: `${n}-hold`, capMs: CAP_MS, keep: true },
          CAP_MS + 2 * MINUTE,
        );
        if (r.ms === undefined) holdMissing(kind, n, `its sync did not finish within ${CAP_MS / 1000} s`);
        else await hold(kind, driver, n);
      } catch (err) {
        holdMissing(kind, n, errorText(err));
      }
    }
  }

  async function readyPart(n: number): Promise<void> {
    const series = (["weft", "flanneld"] as const)
      .filter((kind) => drivers.has(kind))
      .map((kind) => ({
        n,
        kind,
        notifyMs: [] as number[],
        readyzMs: [] as number[],
        failures: [] as string[],
      }));
    results.ready.push(...series);
    for (let sample = 0; sample < READY_SAMPLES; sample++) {
      for (const s of series) {
        const driver = drivers.get(s.kind);
        if (driver === undefined || driver.dead !== undefined || ctx.interrupted()) continue;
        try {
          const r = await driver.request<ReadyResult>(
            { op: "ready", label: `${n}-ready${sample + 1}` },
            READY_TIMEOUT_MS + 2 * MINUTE,
          );
          if (r.notifyMs !== undefined) s.notifyMs.push(r.notifyMs);
          if (r.readyzMs !== undefined) s.readyzMs.push(r.readyzMs);
        } catch (err) {
          s.failures.push(errorText(err));
          results.notes.push(`${s.kind} ready ${n}-${sample + 1}: FAILED: ${errorText(err)}`);
        }
      }
      if (sample % 5 === 4) progress(`ready at ${n}: ${sample + 1}/${READY_SAMPLES} samples per agent`);
    }
  }

  return { syncPart, holdOnly, readyPart, holdsAt };
}
