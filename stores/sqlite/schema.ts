/**
 * The SQLite store's schema, its SQL text and the pure conversions between rows and the store
 * contract. No I/O here: `queries.ts` runs these statements on a connection.
 *
 * Tables (schema version 1, kept in `PRAGMA user_version`):
 * - `kv`: the live keys. `revision` is the change-log id of the key's last write, `expires_at` the
 *   wall-clock deadline in milliseconds since the epoch (NULL: never expires), `ttl` the full TTL in
 *   seconds that `renew` restarts.
 * - `log`: one row per write, in commit order; its AUTOINCREMENT id is the revision, so revisions are
 *   never reused even after the oldest rows are trimmed. A put carries the value and TTL, a delete its
 *   reason (`deleted` or `expired`). Whether a put expires is `ttl IS NOT NULL`.
 * - `meta`: `compacted`, the highest revision trimmed from `log`. A watch positioned below it cannot
 *   prove it saw every change and resyncs.
 * The store revision is `sqlite_sequence.seq` of `log`: the last revision ever handed out.
 */
import { StoreError, StoreErrorCode } from "../errors.ts";
import type { KeyValue, Revision, WatchEvent } from "../store.ts";

export const SCHEMA_VERSION = 1;

export const SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS kv (
  key TEXT NOT NULL PRIMARY KEY,
  value TEXT NOT NULL,
  revision INTEGER NOT NULL,
  create_revision INTEGER NOT NULL,
  expires_at INTEGER,
  ttl INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS log (
  revision INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL,
  type TEXT NOT NULL CHECK (type IN ('put', 'delete')),
  reason TEXT CHECK (reason IN ('deleted', 'expired')),
  value TEXT,
  ttl INTEGER
);
CREATE TABLE IF NOT EXISTS meta (name TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('compacted', 0);
PRAGMA user_version = ${SCHEMA_VERSION};
`;

const KV_COLUMNS = "key, value, revision, expires_at, ttl";
const LIVE = "(expires_at IS NULL OR expires_at > $now)";
/**
 * The value, or "" with its length in `omitted` when it is longer than `$max` UTF-8 bytes (NULL: no
 * limit). SQLite measures a TEXT value without loading it (`octet_length`), so a large value never
 * leaves the database file.
 */
const FITS = "($max IS NULL OR value IS NULL OR octet_length(value) <= $max)";
const BOUNDED_VALUE = `CASE WHEN ${FITS} THEN value ELSE '' END AS value,
  CASE WHEN ${FITS} THEN NULL ELSE octet_length(value) END AS omitted`;
const BOUNDED_KV_COLUMNS = `key, ${BOUNDED_VALUE}, revision, expires_at, ttl`;
const BOUNDED_LOG_COLUMNS = `revision, key, type, reason, ${BOUNDED_VALUE}, ttl`;

/** Every statement the driver runs; named parameters bind without their `$` (strict mode). */
export const SQL = {
  userVersion: "PRAGMA user_version",
  dataVersion: "PRAGMA data_version",
  head: "SELECT seq FROM sqlite_sequence WHERE name = 'log'",
  compacted: "SELECT value FROM meta WHERE name = 'compacted'",
  getLive: `SELECT ${KV_COLUMNS} FROM kv WHERE key = $key AND ${LIVE}`,
  getAny: `SELECT ${KV_COLUMNS} FROM kv WHERE key = $key`,
  listLive: `SELECT ${BOUNDED_KV_COLUMNS} FROM kv WHERE key >= $start AND key < $end AND ${LIVE}
    ORDER BY key`,
  listLiveOpen: `SELECT ${BOUNDED_KV_COLUMNS} FROM kv WHERE key >= $start AND ${LIVE} ORDER BY key`,
  logAfter: `SELECT ${BOUNDED_LOG_COLUMNS} FROM log WHERE revision > $after AND key >= $start AND key < $end
    ORDER BY revision LIMIT $limit`,
  logAfterOpen: `SELECT ${BOUNDED_LOG_COLUMNS} FROM log WHERE revision > $after AND key >= $start
    ORDER BY revision LIMIT $limit`,
  appendLog: "INSERT INTO log (key, type, reason, value, ttl) VALUES ($key, $type, $reason, $value, $ttl)",
  insertKv: `INSERT INTO kv (key, value, revision, create_revision, expires_at, ttl)
    VALUES ($key, $value, $revision, $revision, $expiresAt, $ttl)`,
  updateKv:
    "UPDATE kv SET value = $value, revision = $revision, expires_at = $expiresAt, ttl = $ttl WHERE key = $key",
  renewKv: "UPDATE kv SET expires_at = $expiresAt WHERE key = $key",
  deleteKv: "DELETE FROM kv WHERE key = $key",
  anyExpired: "SELECT 1 AS found FROM kv WHERE expires_at <= $now LIMIT 1",
  logExpired: `INSERT INTO log (key, type, reason)
    SELECT key, 'delete', 'expired' FROM kv WHERE expires_at <= $now ORDER BY expires_at, key`,
  deleteExpired: "DELETE FROM kv WHERE expires_at <= $now",
  nextExpiry: "SELECT expires_at FROM kv WHERE expires_at IS NOT NULL ORDER BY expires_at LIMIT 1",
  trimLog: "DELETE FROM log WHERE revision <= $cut",
  setCompacted: "UPDATE meta SET value = $cut WHERE name = 'compacted' AND value < $cut",
} as const;

/** A `kv` row as read with `safeIntegers` (INTEGER columns arrive as bigint). */
export interface KvRow {
  readonly key: string;
  readonly value: string;
  readonly revision: bigint;
  readonly expires_at: bigint | null;
  readonly ttl: bigint | null;
  /** Read with a value limit: the length of a value left out (see `BOUNDED_VALUE`), else null. */
  readonly omitted?: bigint | null;
}

/** A `log` row. */
export interface LogRow {
  readonly revision: bigint;
  readonly key: string;
  readonly type: string;
  readonly reason: string | null;
  readonly value: string | null;
  readonly ttl: bigint | null;
  readonly omitted: bigint | null;
}

/** The half-open key range `[start, end)` holding exactly the keys that begin with a prefix. */
export interface KeyRange {
  readonly start: string;
  /** Absent when no string bounds the range (the empty prefix, or one of only U+10FFFF). */
  readonly end: string | undefined;
}

/**
 * The range of `prefix`. SQLite compares TEXT with memcmp on UTF-8, which orders like code points, so
 * the first string after every `prefix…` is the prefix with its last code point incremented (dropping
 * trailing U+10FFFF, skipping the surrogate block). Exact for `%`, `_` and any other character.
 */
export function prefixRange(prefix: string): KeyRange {
  const points = Array.from(prefix);
  while (points.length > 0) {
    const last = (points.pop() as string).codePointAt(0) ?? 0;
    if (last < 0x10ffff) {
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1;
      return { start: prefix, end: points.join("") + String.fromCodePoint(next) };
    }
  }
  return { start: prefix, end: undefined };
}

/** Seconds left before `expiresAtMs`, rounded up: a live key always has at least 1. */
function secondsLeft(expiresAtMs: bigint, now: number): number {
  return Math.max(1, Math.ceil((Number(expiresAtMs) - now) / 1000));
}

/** A live `kv` row as the contract's KeyValue; `now` is the wall clock in ms. */
export function toKeyValue(row: KvRow, now: number): KeyValue {
  const base = { key: row.key, value: row.value, revision: row.revision, ...omitted(row.omitted) };
  if (row.expires_at === null) return { ...base, expires: false };
  return { ...base, expires: true, ttlSeconds: secondsLeft(row.expires_at, now) };
}

function omitted(bytes: bigint | null | undefined): { omittedBytes?: number } {
  return bytes === null || bytes === undefined ? {} : { omittedBytes: Number(bytes) };
}

/** The KeyValue of a write that just happened: a TTL key has its full TTL left. */
export function writtenKeyValue(
  key: string,
  value: string,
  revision: Revision,
  ttl: number | null,
): KeyValue {
  if (ttl === null) return { key, value, revision, expires: false };
  return { key, value, revision, expires: true, ttlSeconds: ttl };
}

/** A change-log row as a watch event. */
export function toWatchEvent(row: LogRow): WatchEvent {
  if (row.type === "delete") {
    const reason = row.reason === "expired" ? "expired" : "deleted";
    return { type: "delete", key: row.key, revision: row.revision, reason };
  }
  const ttl = row.ttl === null ? null : Number(row.ttl);
  const kv = writtenKeyValue(row.key, row.value ?? "", row.revision, ttl);
  return { type: "put", kv: row.omitted === null ? kv : { ...kv, ...omitted(row.omitted) } };
}

/** Largest TTL accepted (etcd's limit); keeps `expires_at` an exact integer. */
const MAX_TTL_SECONDS = 9_000_000_000;

/** Rejects a key the store cannot hold. */
export function checkKey(key: string): void {
  if (typeof key !== "string" || key === "") {
    throw new StoreError(
      StoreErrorCode.Invalid,
      `invalid key ${JSON.stringify(key)}: keys are non-empty strings`,
    );
  }
}

/**
 * The TTL to store, in whole seconds (fractions round up, as etcd grants whole seconds), or null for a
 * key that never expires. Rejects zero, negative, non-finite and absurdly large values.
 */
export function storedTtl(key: string, ttlSeconds: number | undefined): number | null {
  if (ttlSeconds === undefined) return null;
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > MAX_TTL_SECONDS) {
    throw new StoreError(
      StoreErrorCode.Invalid,
      `invalid TTL ${ttlSeconds} s for key ${key}: give a number of seconds between 1 and ${MAX_TTL_SECONDS}, or no TTL for a key that never expires`,
      { key },
    );
  }
  return Math.max(1, Math.ceil(ttlSeconds));
}

/** The SQLite result code name (`SQLITE_BUSY`, …) of an error thrown by bun:sqlite, if it is one. */
export function sqliteCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const { name, code } = err as { name?: unknown; code?: unknown };
  return name === "SQLiteError" && typeof code === "string" ? code : undefined;
}

/** True for "another connection holds the lock" (SQLITE_BUSY*, SQLITE_LOCKED*): retry later. */
export function isBusy(err: unknown): boolean {
  const code = sqliteCode(err);
  return code !== undefined && (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED"));
}

const HINTS: Readonly<Record<string, string>> = {
  SQLITE_CANTOPEN: "check that the path names a file (not a directory) in a directory this user can write",
  SQLITE_READONLY: "check that the file and its directory are writable by this user",
  SQLITE_PERM: "check the permissions of the file and its directory",
  SQLITE_FULL: "free disk space",
  SQLITE_NOTADB: "the file is not a SQLite database; point --store-endpoints at another file",
  SQLITE_CORRUPT: "the database is damaged; restore it or point --store-endpoints at a new file",
};

/** A person-readable reason for a SQLite failure, with what to do when we know it. */
export function describeSqliteError(err: unknown): string {
  const code = sqliteCode(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code === undefined) return message;
  const hint = Object.entries(HINTS).find(([prefix]) => code.startsWith(prefix))?.[1];
  return hint === undefined ? `${code}: ${message}` : `${code}: ${message} (${hint})`;
}
