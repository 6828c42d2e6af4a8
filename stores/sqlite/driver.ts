import type { StoreDriver } from "../driver.ts";
import { CAPABILITIES, SqliteStore } from "./index.ts";

/** One SQLite database file shared by the agents of one machine: `--store=sqlite`. */
export const sqliteDriver: StoreDriver = {
  name: "sqlite",
  endpoints: "file",
  defaultEndpoint: "/var/lib/weft/weft.db",
  uses: { tls: false, userPassword: false },
  flags: [],
  capabilities: CAPABILITIES,
  learnedOnConnect: [],
  open: (options, runtime) => new SqliteStore(options, runtime),
};
