import { expect, test } from "bun:test";
import { configKeyCandidates, waitForConfig } from "../../../src/cli/config-wait.ts";
import { parseFlags } from "../../../src/config/flags.ts";
import { createLogger } from "../../../src/log.ts";
import type { KeyValue, Store } from "../../../stores/store.ts";
import { fakeClock } from "../helpers.ts";

const VALID = '{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}';

/** A store whose config value follows a script: one `get` per tick of the fake clock. */
function scripted(values: (string | undefined | Error)[]): Store {
  let i = 0;
  return {
    get: async (key: string): Promise<KeyValue | undefined> => {
      const v = values[Math.min(i++, values.length - 1)];
      if (v instanceof Error) throw v;
      return v === undefined ? undefined : { key, value: v, revision: 1n, expires: false };
    },
  } as unknown as Store;
}

test("config wait - where a config meant for a prefix is often found instead", () => {
  expect(configKeyCandidates("/docker/network/")).toEqual([
    "docker/network/config",
    "/coreos.com/network/config",
  ]);
  expect(configKeyCandidates("/coreos.com/network")).toEqual(["coreos.com/network/config"]);
  expect(configKeyCandidates("/coreos.com/network/config")).toContain("/coreos.com/network/config");
});

test("config wait - missing, unreadable and invalid configs are retried, each said once, until a valid one comes", async () => {
  const lines: string[] = [];
  const statuses: string[] = [];
  const bad = VALID.replace("10.5.0.0/16", "10.5.0.0/33");
  const store = scripted([undefined, undefined, new Error("connection refused"), bad, bad, bad, VALID]);
  const config = await waitForConfig(
    {
      flags: parseFlags(["--store=sqlite"], {}),
      store,
      log: createLogger({ write: (l) => lines.push(l) }),
      clock: fakeClock(),
      status: (t) => statuses.push(t),
      elsewhere: async () => undefined,
    },
    new AbortController().signal,
  );
  expect(config?.backend.type).toBe("vxlan");
  expect(statuses.length).toBe(6);
  expect(lines.filter((l) => l.includes("waiting for the network config")).length).toBe(1);
  expect(lines.filter((l) => l.includes("connection refused")).length).toBe(1);
  expect(lines.filter((l) => l.includes("is invalid")).length).toBe(1);
  expect(lines.find((l) => l.includes("is invalid"))).toContain("Network");
});

test("config wait - a config found elsewhere is named in the status and the log", async () => {
  const lines: string[] = [];
  const statuses: string[] = [];
  const stop = new AbortController();
  await waitForConfig(
    {
      flags: parseFlags(["--store=sqlite"], {}),
      store: scripted([undefined, undefined, undefined, VALID]),
      log: createLogger({ write: (l) => lines.push(l) }),
      clock: fakeClock(),
      status: (t) => statuses.push(t),
      elsewhere: async () => "found it next door",
    },
    stop.signal,
  );
  expect(statuses[0]).toBe(
    "waiting for the network config at /coreos.com/network/config: found it next door",
  );
  expect(lines.filter((l) => l.includes("found it next door")).length).toBe(1);
});
