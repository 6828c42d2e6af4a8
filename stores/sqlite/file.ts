/**
 * Opening the SQLite store's database file: where it lives, the connection settings every process
 * must share (WAL journal, `synchronous=NORMAL`, a short busy wait) and the schema.
 *
 * Directory policy: if the file's directory is missing but the one above it exists, that single level
 * is created (`/var/lib/weft` for `/var/lib/weft/weft.db`, as an operator expects); a deeper missing
 * tree is most likely a typo and is reported, never created.
 */
import { Database } from "bun:sqlite";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { StoreError, StoreErrorCode, UnavailableError } from "../errors.ts";
import { migrate } from "./queries.ts";
import { describeSqliteError, isBusy, SCHEMA_VERSION } from "./schema.ts";

/** How long SQLite itself waits for a lock before reporting SQLITE_BUSY (it blocks the event loop). */
const BUSY_TIMEOUT_MS = 100;

/** The file path of an endpoint: a plain path (made absolute), a `file://` URL, or `:memory:`. */
export function databasePath(endpoint: string): string {
  if (endpoint === "" || endpoint === ":memory:") return endpoint;
  return resolve(endpoint.startsWith("file://") ? fileURLToPath(endpoint) : endpoint);
}

/**
 * Opens the database and brings its schema up to date. Throws a StoreError naming `endpoint` (the
 * path as the operator wrote it), or a SQLite busy error for the caller to retry.
 */
export function openDatabase(endpoint: string, path: string): Database {
  if (path === "") {
    throw new StoreError(
      StoreErrorCode.Invalid,
      "the sqlite store needs a database file path (--store-endpoints=/var/lib/weft/weft.db)",
    );
  }
  if (path !== ":memory:") ensureDirectory(endpoint, path);
  let db: Database | undefined;
  try {
    db = new Database(path, { create: true, readwrite: true, strict: true, safeIntegers: true });
    db.run(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const mode = db.query<{ journal_mode: string }, []>("PRAGMA journal_mode = WAL").get()?.journal_mode;
    if (mode !== "wal" && mode !== "memory") {
      throw new UnavailableError(endpoint, `cannot switch the database to WAL mode (it stays in ${mode})`);
    }
    db.run("PRAGMA synchronous = NORMAL");
    const found = migrate(db, SCHEMA_VERSION);
    if (found > SCHEMA_VERSION) {
      throw new UnavailableError(
        endpoint,
        `the database has schema version ${found}, newer than this weft knows (${SCHEMA_VERSION}); upgrade weft or use another file`,
      );
    }
    return db;
  } catch (err) {
    db?.close(false);
    if (err instanceof StoreError || isBusy(err)) throw err;
    throw new UnavailableError(endpoint, describeSqliteError(err), { cause: err });
  }
}

function ensureDirectory(endpoint: string, path: string): void {
  const dir = dirname(path);
  if (existsSync(dir)) return;
  const parent = dirname(dir);
  if (!existsSync(parent)) {
    throw new UnavailableError(
      endpoint,
      `neither its directory ${dir} nor ${parent} exists; create the directory or fix the path`,
    );
  }
  try {
    mkdirSync(dir, { mode: 0o755 });
  } catch (err) {
    if ((err as { code?: unknown }).code === "EEXIST") return;
    const reason = err instanceof Error ? err.message : String(err);
    throw new UnavailableError(endpoint, `cannot create its directory ${dir}: ${reason}`, { cause: err });
  }
}
