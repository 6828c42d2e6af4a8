/**
 * Runs the store contract suite against every driver on a real server. `STORES=etcd,sqlite` narrows
 * the run to those drivers.
 */

import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "../../stores/index.ts";
import type { SqliteStore } from "../../stores/sqlite.ts";
import { type Store, type StoreName, storeNames } from "../../stores/store.ts";
import { freePort, startEtcd } from "../harness/servers.ts";
import { type ContractFixture, runStoreContract } from "./contract.ts";

const selected = (process.env.STORES ?? storeNames.join(","))
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "");
for (const name of selected) {
  if (!(storeNames as readonly string[]).includes(name)) {
    throw new Error(`STORES names unknown store "${name}"; known: ${storeNames.join(", ")}`);
  }
}
const wanted = (name: StoreName) => selected.includes(name);

function deadHttp(): { endpoint: string } {
  return { endpoint: `http://127.0.0.1:${freePort()}` };
}

if (wanted("etcd")) {
  runStoreContract("etcd", async () => {
    const server = await startEtcd();
    const dead = deadHttp();
    return {
      name: "etcd",
      open: () => openStore("etcd", { endpoints: [server.endpoint] }),
      unreachable: { endpoints: [dead.endpoint], requestTimeoutMs: 2_000 },
      unreachableEndpoint: dead.endpoint,
      async crash() {
        await server.kill();
        return { restart: () => server.start() };
      },
      async loseHistory(store: Store) {
        const { revision } = await store.list("/weft-contract-nothing/");
        const res = await fetch(`${server.endpoint}/v3/kv/compaction`, {
          method: "POST",
          body: JSON.stringify({ revision: String(revision), physical: true }),
        });
        if (!res.ok) throw new Error(`compaction failed: ${res.status} ${await res.text()}`);
      },
      teardown: () => server.stop(),
    } satisfies ContractFixture;
  });
}

if (wanted("etcd2")) {
  runStoreContract("etcd2", async () => {
    const server = await startEtcd({ enableV2: true });
    const dead = deadHttp();
    return {
      name: "etcd2",
      open: () => openStore("etcd2", { endpoints: [server.endpoint] }),
      unreachable: { endpoints: [dead.endpoint], requestTimeoutMs: 2_000 },
      unreachableEndpoint: dead.endpoint,
      async crash() {
        await server.kill();
        return { restart: () => server.start() };
      },
      async loseHistory() {
        // etcd v2 keeps the last 1,000 events of the whole store: 1,100 writes elsewhere clear ours.
        for (let batch = 0; batch < 55; batch++) {
          await Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              fetch(`${server.endpoint}/v2/keys/weft-noise/k${i}`, {
                method: "PUT",
                headers: { "content-type": "application/x-www-form-urlencoded" },
                body: `value=${batch}`,
              }).then((r) => r.text()),
            ),
          );
        }
      },
      teardown: () => server.stop(),
    } satisfies ContractFixture;
  });
}

if (wanted("sqlite")) {
  runStoreContract("sqlite", async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-sqlite-"));
    const path = join(dir, "weft.db");
    const missing = join(dir, "no", "such", "dir", "weft.db");
    return {
      name: "sqlite",
      open: () => openStore("sqlite", { endpoints: [path] }),
      unreachable: { endpoints: [missing] },
      unreachableEndpoint: missing,
      async loseHistory(store: Store) {
        (store as SqliteStore).compactHistory(0);
      },
      async teardown() {
        rmSync(dir, { recursive: true, force: true });
      },
    } satisfies ContractFixture;
  });
}

// A closed store leaves no timer, socket or watcher behind: a process that opened one, watched, and
// closed it must exit by itself.
for (const name of selected) {
  test(`${name} - a process that closes its store exits by itself`, async () => {
    let endpoint: string;
    let cleanup: () => Promise<void>;
    if (name === "sqlite") {
      const dir = mkdtempSync(join(tmpdir(), "weft-sqlite-"));
      endpoint = join(dir, "weft.db");
      cleanup = async () => rmSync(dir, { recursive: true, force: true });
    } else {
      const server = await startEtcd({ enableV2: name === "etcd2" });
      endpoint = server.endpoint;
      cleanup = () => server.stop();
    }
    try {
      const started = Date.now();
      const child = Bun.spawn(
        [process.execPath, join(import.meta.dir, "fixtures", "close-exits.ts"), name, endpoint],
        {
          stdout: "pipe",
          stderr: "pipe",
        },
      );
      const exited = await Promise.race([child.exited, Bun.sleep(15_000).then(() => "timeout" as const)]);
      if (exited === "timeout") child.kill("SIGKILL");
      const out = await new Response(child.stdout).text();
      const err = await new Response(child.stderr).text();
      expect({ exited, out: out.trim(), err: err.trim() }).toEqual({
        exited: 0,
        out: "watch ended",
        err: "",
      });
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await cleanup();
    }
  }, 60_000);
}
