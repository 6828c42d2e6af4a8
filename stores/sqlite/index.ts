/**
 * The embedded store (`--store=sqlite`): one SQLite database file on one machine, shared by every
 * agent process that opens it (demo, tests, single-host labs). Not for several machines: SQLite's
 * locks do not work over network file systems, hence `multiHost: false`.
 *
 * - File: `endpoints[0]` is the database path, opened on the first call (the constructor does no
 *   I/O); a failed open is retried by the next call. If its directory is missing but the directory
 *   above exists, that one level is created; a deeper missing tree is reported as UnavailableError
 *   naming the path (see `file.ts`). `:memory:` works for single-process tests.
 * - Concurrency: WAL journal (readers never block the writer), `synchronous=NORMAL`, and every write
 *   in a `BEGIN IMMEDIATE` transaction, so a read-check-write (create-if-absent, compare-and-swap)
 *   is atomic across processes. SQLITE_BUSY waits up to 100 ms inside SQLite, then is retried with
 *   backoff (the event loop stays free) until `requestTimeoutMs` (default 5 s) has passed; only then
 *   does the call fail, with UnavailableError.
 * - Revisions: every write (create, update, delete, expiry) appends one row to the change log in the
 *   same transaction; its id is the revision (layout in `schema.ts`). `renew` moves only the
 *   deadline and writes no log row: like an etcd keepalive it neither changes the revision nor
 *   wakes watchers.
 * - TTL: the deadline is stored as wall-clock milliseconds (one machine, one clock). Reads never
 *   return a key past its deadline, renew refuses it. Expired keys are swept, by any client, in a
 *   write transaction that deletes them and logs `delete`/`expired` (the condition is evaluated under
 *   the lock, so concurrent sweepers never log an expiry twice): before reads, inside every write, and
 *   on a timer aimed at the earliest deadline but re-armed at least every second, so another
 *   process's watch sees an expiry within about a second even when the key's writer is dead.
 * - History: the change log keeps the newest 10,000 revisions (trimmed every 256 writes of a client;
 *   `compactHistory` forces it). Watches are described in `watch.ts`.
 */
import type { Database } from "bun:sqlite";
import {
  ConflictError,
  KeyExistsError,
  KeyNotFoundError,
  StoreError,
  StoreErrorCode,
  UnavailableError,
} from "../errors.ts";
import { StoreLifecycle, type StoreRuntimeOptions } from "../runtime.ts";
import type {
  Capabilities,
  CreateOptions,
  DeleteOptions,
  KeyValue,
  ListOptions,
  ListResult,
  Revision,
  Store,
  StoreLogger,
  StoreOptions,
  UpdateOptions,
  WatchEvent,
  WatchOptions,
} from "../store.ts";
import { databasePath, openDatabase } from "./file.ts";
import * as q from "./queries.ts";
import {
  checkKey,
  describeSqliteError,
  isBusy,
  prefixRange,
  storedTtl,
  toKeyValue,
  writtenKeyValue,
} from "./schema.ts";
import { WatchHub } from "./watch.ts";

/** Test seams of the SQLite store. */
export interface SqliteStoreInternals extends StoreRuntimeOptions {
  /** Wall clock in ms since the epoch, in which deadlines are stored (default: the clock's `now`). */
  readonly now?: (() => number) | undefined;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
/** Change-log rows kept for watches that fall behind; older positions resync. */
export const HISTORY_ROWS = 10_000;
const TRIM_EVERY_WRITES = 256;
/** The sweep timer looks at least this often, since other processes may write earlier deadlines. */
const SWEEP_MAX_DELAY_MS = 1_000;
const SWEEP_MIN_DELAY_MS = 5;

/** What every SQLite store can do (declared by its driver): one machine, expiry swept by clients. */
export const CAPABILITIES: Capabilities = Object.freeze({
  serverTtl: false,
  multiHost: false,
  expiryReason: true,
  minTtlSeconds: 1,
});

export class SqliteStore implements Store {
  readonly name = "sqlite" as const;
  readonly capabilities = CAPABILITIES;

  readonly #endpoint: string;
  readonly #path: string;
  readonly #timeoutMs: number;
  readonly #logger: StoreLogger | undefined;
  readonly #now: () => number;
  readonly #hub: WatchHub;
  #db: Database | undefined;
  readonly #life: StoreLifecycle;
  #writesSinceTrim = 0;
  /** When the sweep loop sweeps next (ms since the epoch, as `#now` tells time). */
  #sweepAt = Number.POSITIVE_INFINITY;
  /** Aborted to wake the sweep loop's current wait, so it re-reads `#sweepAt`. */
  #sweepNap: AbortController | undefined;
  #sweeping = false;

  constructor(options: StoreOptions, internals: SqliteStoreInternals = {}) {
    this.#life = new StoreLifecycle("sqlite", internals.clock);
    this.#endpoint = options.endpoints[0] ?? "";
    this.#path = databasePath(this.#endpoint);
    this.#timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#logger = options.logger;
    const clock = this.#life.clock;
    this.#now = internals.now ?? (() => clock.now());
    const inMemory = this.#path === ":memory:";
    this.#hub = new WatchHub({
      open: () => this.#open(),
      walPath: inMemory ? undefined : `${this.#path}-wal`,
      now: () => this.#now(),
      clock,
      logger: this.#logger,
    });
  }

  async get(key: string): Promise<KeyValue | undefined> {
    checkKey(key);
    return this.#attempt((db) => {
      this.#sweepBeforeRead(db);
      const now = this.#now();
      const row = q.getLive(db, key, now);
      return row === undefined ? undefined : toKeyValue(row, now);
    });
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    return this.#attempt((db) => {
      this.#sweepBeforeRead(db);
      const now = this.#now();
      const max = options.maxValueBytes;
      return q.inTransaction(db, "BEGIN", () => ({
        entries: q.listLive(db, prefixRange(prefix), now, max).map((row) => toKeyValue(row, now)),
        revision: q.head(db),
      }));
    });
  }

  async create(key: string, value: string, options: CreateOptions = {}): Promise<KeyValue> {
    checkKey(key);
    const ttl = storedTtl(key, options.ttlSeconds);
    return this.#write((db, now) => {
      if (q.getAny(db, key) !== undefined) return new KeyExistsError(key, { endpoint: this.#endpoint });
      const revision = q.appendLog(db, { key, type: "put", reason: null, value, ttl });
      const expiresAt = ttl === null ? null : this.#deadline(now, ttl);
      q.insertKv(db, { key, value, revision, expiresAt, ttl });
      return writtenKeyValue(key, value, revision, ttl);
    });
  }

  async update(key: string, value: string, options: UpdateOptions): Promise<KeyValue> {
    checkKey(key);
    const ttl = storedTtl(key, options.ttlSeconds);
    return this.#write((db, now) => {
      const current = q.getAny(db, key);
      if (current?.revision !== options.expectRevision) {
        return new ConflictError(key, options.expectRevision, current?.revision, {
          endpoint: this.#endpoint,
        });
      }
      const revision = q.appendLog(db, { key, type: "put", reason: null, value, ttl });
      const expiresAt = ttl === null ? null : this.#deadline(now, ttl);
      q.updateKv(db, { key, value, revision, expiresAt, ttl });
      return writtenKeyValue(key, value, revision, ttl);
    });
  }

  async renew(key: string): Promise<KeyValue> {
    checkKey(key);
    return this.#write((db, now) => {
      const current = q.getAny(db, key);
      if (current === undefined) return new KeyNotFoundError(key, { endpoint: this.#endpoint });
      if (current.ttl === null) return toKeyValue(current, now);
      const ttl = Number(current.ttl);
      q.renewKv(db, key, this.#deadline(now, ttl));
      return writtenKeyValue(key, current.value, current.revision, ttl);
    });
  }

  async delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    checkKey(key);
    const expected = options.expectRevision;
    return this.#write((db) => {
      const current = q.getAny(db, key);
      if (current === undefined) return false;
      if (expected !== undefined && current.revision !== expected) {
        return new ConflictError(key, expected, current.revision, { endpoint: this.#endpoint });
      }
      q.appendLog(db, { key, type: "delete", reason: "deleted", value: null, ttl: null });
      q.deleteKv(db, key);
      return true;
    });
  }

  watch(prefix: string, options: WatchOptions): AsyncIterable<WatchEvent> {
    if (this.#life.closed) return this.#life.closedWatch();
    return this.#hub.watch(prefix, options);
  }

  /**
   * Trims the change log to its newest `keepRows` revisions (0: all of it), as the periodic trim does
   * with 10,000. Watches positioned before the cut resync. Synchronous; for tests and maintenance.
   * Returns the revision up to which history is gone.
   */
  compactHistory(keepRows: number): Revision {
    this.#life.assertOpen();
    if (!Number.isSafeInteger(keepRows) || keepRows < 0) {
      throw new StoreError(
        StoreErrorCode.Invalid,
        `compactHistory(${keepRows}): keep a whole number ≥ 0 of rows`,
      );
    }
    const deadline = Date.now() + this.#timeoutMs;
    for (;;) {
      try {
        const db = this.#open();
        const cut = q.inTransaction(db, "BEGIN IMMEDIATE", () => q.trimLog(db, keepRows));
        this.#hub.localWrite();
        return cut;
      } catch (err) {
        if (!isBusy(err) || Date.now() >= deadline) throw this.#fault(err);
        Bun.sleepSync(2);
      }
    }
  }

  close(): Promise<void> {
    return this.#life.close(() => {
      this.#hub.close();
      this.#sweepNap?.abort();
      this.#db?.close(false);
      this.#db = undefined;
    });
  }

  /** Runs `op` on the open connection, retrying SQLITE_BUSY until the request time limit. */
  async #attempt<T>(op: (db: Database) => T): Promise<T> {
    const deadline = Date.now() + this.#timeoutMs;
    const backoff = this.#life.backoff(2, 100); // waits 1–2 ms, then 2–4 ms, … up to 50–100 ms
    for (;;) {
      this.#life.assertOpen();
      try {
        return op(this.#open());
      } catch (err) {
        if (!isBusy(err) || Date.now() >= deadline) throw this.#fault(err);
        await backoff.wait();
      }
    }
  }

  /**
   * One write transaction: sweeps expired keys, runs `op`, trims the log now and then. `op` returns a
   * StoreError instead of throwing it, so the sweep still commits; the error is thrown afterwards.
   */
  async #write<T>(op: (db: Database, now: number) => T | StoreError): Promise<T> {
    const result = await this.#attempt((db) => {
      const now = this.#now();
      const outcome = q.inTransaction(db, "BEGIN IMMEDIATE", () => {
        q.sweepExpired(db, now);
        const value = op(db, now);
        if (++this.#writesSinceTrim >= TRIM_EVERY_WRITES) {
          this.#writesSinceTrim = 0;
          q.trimLog(db, HISTORY_ROWS);
        }
        return value;
      });
      this.#hub.localWrite();
      return outcome;
    });
    if (result instanceof StoreError) throw result;
    return result;
  }

  /** The deadline of a key written now with `ttl` (and the sweep loop aimed at it if earlier). */
  #deadline(now: number, ttl: number): number {
    const at = now + ttl * 1000;
    if (at < this.#sweepAt) queueMicrotask(() => this.#armSweep(at));
    return at;
  }

  /** Sweeps before a read when something expired; skipped (not waited for) if another writer is busy. */
  #sweepBeforeRead(db: Database): void {
    try {
      this.#sweep(db);
    } catch (err) {
      if (!isBusy(err)) throw err;
    }
  }

  #sweep(db: Database): void {
    const now = this.#now();
    if (!q.anyExpired(db, now)) return;
    const expired = q.inTransaction(db, "BEGIN IMMEDIATE", () => q.sweepExpired(db, now));
    if (expired > 0) this.#hub.localWrite();
  }

  /** Aims the sweep loop at `target` (ms since the epoch), at most a second ahead. */
  #armSweep(target: number): void {
    if (this.#life.closed || this.#db === undefined) return;
    const now = this.#now();
    const delay = Math.min(SWEEP_MAX_DELAY_MS, Math.max(SWEEP_MIN_DELAY_MS, target - now + 1));
    this.#sweepAt = now + delay;
    this.#sweepNap?.abort();
    if (!this.#sweeping) void this.#sweepLoop();
  }

  /**
   * Sleeps on the store's clock until `#sweepAt`, sweeps, and aims at the next deadline, until the
   * store closes. A re-aim wakes the current wait. Its waits are housekeeping: they do not keep the
   * process alive (an open watch does that).
   */
  async #sweepLoop(): Promise<void> {
    this.#sweeping = true;
    const clock = this.#life.clock;
    try {
      while (!this.#life.closed && this.#db !== undefined && Number.isFinite(this.#sweepAt)) {
        const wait = this.#sweepAt - this.#now();
        if (wait > 0) {
          const nap = new AbortController();
          this.#sweepNap = nap;
          await clock.sleep(wait, nap.signal, { unref: true });
          if (nap.signal.aborted) continue;
          this.#sweepNap = undefined;
          if (this.#now() < this.#sweepAt) continue;
        }
        this.#sweepAt = Number.POSITIVE_INFINITY;
        this.#onSweepTime();
      }
    } finally {
      this.#sweeping = false;
    }
  }

  #onSweepTime(): void {
    const db = this.#db;
    if (this.#life.closed || db === undefined) return;
    try {
      this.#sweep(db);
      this.#armSweep(q.nextExpiry(db) ?? Number.POSITIVE_INFINITY);
    } catch (err) {
      const busy = isBusy(err);
      if (!busy) this.#logger?.warn("sqlite expiry sweep failed", { reason: describeSqliteError(err) });
      this.#armSweep(this.#now() + (busy ? 20 : SWEEP_MAX_DELAY_MS));
    }
  }

  /** The connection, opened on first use; a failed open is retried by the next call. */
  #open(): Database {
    if (this.#db !== undefined) return this.#db;
    this.#life.assertOpen();
    const db = openDatabase(this.#endpoint, this.#path);
    this.#db = db;
    this.#armSweep(q.nextExpiry(db) ?? Number.POSITIVE_INFINITY);
    return db;
  }

  /** A StoreError as is; anything else (a SQLite failure) as UnavailableError naming the file. */
  #fault(err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    if (isBusy(err)) {
      return new UnavailableError(
        this.#endpoint,
        `the database stayed locked by another process for ${this.#timeoutMs} ms`,
        { cause: err },
      );
    }
    return new UnavailableError(this.#endpoint, describeSqliteError(err), { cause: err });
  }
}
