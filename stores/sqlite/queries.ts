/**
 * Typed wrappers over the statements of `schema.ts`, run on a connection the caller owns.
 * Statements are prepared once per connection (bun:sqlite caches `db.query`). Nothing here retries or
 * maps errors: `SQLITE_BUSY` and friends reach the caller, which decides.
 */
import type { Database } from "bun:sqlite";
import type { Revision } from "../store.ts";
import { type KeyRange, type KvRow, type LogRow, SCHEMA_SQL, SQL } from "./schema.ts";

type Params = Record<string, string | number | bigint | null>;

/**
 * Runs `body` in one transaction: `BEGIN` takes a read snapshot, `BEGIN IMMEDIATE` takes the write
 * lock up front (so a read-then-write never fails half way with SQLITE_BUSY_SNAPSHOT).
 */
export function inTransaction<T>(db: Database, begin: "BEGIN" | "BEGIN IMMEDIATE", body: () => T): T {
  db.query(begin).run();
  try {
    const result = body();
    db.query("COMMIT").run();
    return result;
  } catch (err) {
    if (db.inTransaction) {
      try {
        db.query("ROLLBACK").run();
      } catch {
        // the connection rolled back by itself; the original error is the one to report
      }
    }
    throw err;
  }
}

/** Creates the tables when the file is new; returns the schema version found before. */
export function migrate(db: Database, version: number): number {
  const before = Number(db.query<{ user_version: bigint }, []>(SQL.userVersion).get()?.user_version ?? 0);
  if (before >= version) return before;
  return inTransaction(db, "BEGIN IMMEDIATE", () => {
    const now = Number(db.query<{ user_version: bigint }, []>(SQL.userVersion).get()?.user_version ?? 0);
    if (now < version) db.run(SCHEMA_SQL);
    return now;
  });
}

/** Changes whenever another connection commits (never for this connection's own commits). */
export function dataVersion(db: Database): bigint {
  return db.query<{ data_version: bigint }, []>(SQL.dataVersion).get()?.data_version ?? 0n;
}

/** The last revision handed out (0 on a new file). */
export function head(db: Database): Revision {
  return db.query<{ seq: bigint }, []>(SQL.head).get()?.seq ?? 0n;
}

/** The highest revision trimmed from the change log (0 when nothing was trimmed). */
export function compacted(db: Database): Revision {
  return db.query<{ value: bigint }, []>(SQL.compacted).get()?.value ?? 0n;
}

/** The key if present and not past its deadline. */
export function getLive(db: Database, key: string, now: number): KvRow | undefined {
  return db.query<KvRow, Params>(SQL.getLive).get({ key, now }) ?? undefined;
}

/** The key as stored, expired or not (inside a write transaction, after a sweep). */
export function getAny(db: Database, key: string): KvRow | undefined {
  return db.query<KvRow, Params>(SQL.getAny).get({ key }) ?? undefined;
}

/**
 * Live keys of a range, sorted by key; a value longer than `maxValueBytes` stays in the file (the row
 * has "" and its length in `omitted`).
 */
export function listLive(
  db: Database,
  range: KeyRange,
  now: number,
  maxValueBytes: number | undefined,
): KvRow[] {
  const max = maxValueBytes ?? null;
  if (range.end === undefined)
    return db.query<KvRow, Params>(SQL.listLiveOpen).all({ start: range.start, now, max });
  return db.query<KvRow, Params>(SQL.listLive).all({ start: range.start, end: range.end, now, max });
}

/** Up to `limit` change-log rows of a range after `after`, in revision order; values as in `listLive`. */
export function logAfter(
  db: Database,
  range: KeyRange,
  after: Revision,
  limit: number,
  maxValueBytes: number | undefined,
): LogRow[] {
  const max = maxValueBytes ?? null;
  if (range.end === undefined) {
    return db.query<LogRow, Params>(SQL.logAfterOpen).all({ after, start: range.start, limit, max });
  }
  const params = { after, start: range.start, end: range.end, limit, max };
  return db.query<LogRow, Params>(SQL.logAfter).all(params);
}

export interface LogEntry {
  readonly key: string;
  readonly type: "put" | "delete";
  readonly reason: "deleted" | null;
  readonly value: string | null;
  readonly ttl: number | null;
}

/** Appends one change-log row; its id is the new revision. */
export function appendLog(db: Database, entry: LogEntry): Revision {
  const { lastInsertRowid } = db.query<never, Params>(SQL.appendLog).run({ ...entry });
  return BigInt(lastInsertRowid);
}

export interface KvWrite {
  readonly key: string;
  readonly value: string;
  readonly revision: Revision;
  readonly expiresAt: number | null;
  readonly ttl: number | null;
}

export function insertKv(db: Database, row: KvWrite): void {
  db.query<never, Params>(SQL.insertKv).run({ ...row });
}

export function updateKv(db: Database, row: KvWrite): void {
  db.query<never, Params>(SQL.updateKv).run({ ...row });
}

export function renewKv(db: Database, key: string, expiresAt: number): void {
  db.query<never, Params>(SQL.renewKv).run({ key, expiresAt });
}

export function deleteKv(db: Database, key: string): void {
  db.query<never, Params>(SQL.deleteKv).run({ key });
}

/** True when some key is past its deadline (a read: no lock needed to find there is nothing to do). */
export function anyExpired(db: Database, now: number): boolean {
  return db.query<{ found: bigint }, Params>(SQL.anyExpired).get({ now }) !== null;
}

/**
 * Deletes every key past its deadline, appending one `delete`/`expired` row each. Call inside a
 * write transaction: the condition is evaluated under the lock, so concurrent sweepers never log
 * the same expiry twice. Returns how many keys expired.
 */
export function sweepExpired(db: Database, now: number): number {
  const { changes } = db.query<never, Params>(SQL.logExpired).run({ now });
  if (changes > 0) db.query<never, Params>(SQL.deleteExpired).run({ now });
  return changes;
}

/** The earliest deadline of any key, in ms since the epoch. */
export function nextExpiry(db: Database): number | undefined {
  const row = db.query<{ expires_at: bigint }, []>(SQL.nextExpiry).get();
  return row === null ? undefined : Number(row.expires_at);
}

/**
 * Drops change-log rows so that at most `keepRows` of the newest revisions remain, and records the
 * boundary. Call inside a write transaction. Returns the compaction boundary afterwards.
 */
export function trimLog(db: Database, keepRows: number): Revision {
  const cut = head(db) - BigInt(keepRows);
  const before = compacted(db);
  if (cut <= before) return before;
  db.query<never, Params>(SQL.trimLog).run({ cut });
  db.query<never, Params>(SQL.setCompacted).run({ cut });
  return cut;
}
