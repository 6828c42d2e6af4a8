/**
 * What `weft doctor` reads from the store, read-only and time-limited: whether it answers, the network
 * config (and, when it is missing, whether it sits in etcd's other API keyspace or under a mistaken
 * key), and the leases. A SQLite database file that does not exist is reported, never created.
 */
import { existsSync } from "node:fs";
import { basicAuth } from "../../../stores/etcd2/codec.ts";
import { HttpEndpoints } from "../../../stores/http.ts";
import { databasePath } from "../../../stores/sqlite/file.ts";
import type { Store } from "../../../stores/store.ts";
import type { AgentFlags } from "../../config/flags.ts";
import { parseNetworkConfig } from "../../config/network-config.ts";
import { errorMessage, WeftError, WeftErrorCode } from "../../errors.ts";
import { LEASE_READ, type Lease, type LeaseRules, parseLease, subnetsPrefix } from "../../lease/lease.ts";
import { parseCidr } from "../../net/ipv4.ts";
import { configKey, storeFromFlags, storeOptions } from "../store-from-flags.ts";
import {
  alternativeConfigKeys,
  type ConfigCandidate,
  type ConfigState,
  otherKeyspaceCandidate,
} from "./store-rules.ts";

export interface StoreFacts {
  readonly key: string;
  readonly reach: { readonly ok: true } | { readonly ok: false; readonly error: string };
  /** Present when the store answered. */
  readonly config?: ConfigState | undefined;
  /** Valid leases under `<prefix>/subnets/`, when the store answered. */
  readonly leases?: readonly Lease[] | undefined;
}

/** Rejects with a WeftError IO naming `what` when `promise` takes longer than `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new WeftError(WeftErrorCode.Io, `${what}: no answer within ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** GET `<endpoint>/v2/keys<key>` with the flags' credentials and TLS: true when it answers 200. */
export async function existsInEtcdV2(flags: AgentFlags, key: string, timeoutMs: number): Promise<boolean> {
  const options = storeOptions(flags);
  const http = new HttpEndpoints({ ...options, requestTimeoutMs: timeoutMs });
  try {
    const path = `/v2/keys${key.startsWith("/") ? key : `/${key}`}`;
    const answer = await http.request({
      method: "GET",
      path,
      headers: basicAuth(options.username, options.password),
    });
    return answer.status === 200;
  } catch {
    return false;
  }
}

async function exists(store: Store, key: string, timeoutMs: number): Promise<boolean> {
  try {
    return (await within(store.get(key), timeoutMs, `reading ${key}`)) !== undefined;
  } catch {
    return false;
  }
}

/** The other etcd API's keyspace (v2 for etcd, v3 for etcd2) at the same key. */
async function otherKeyspace(flags: AgentFlags, key: string, timeoutMs: number): Promise<ConfigCandidate[]> {
  if (flags.store === "etcd") {
    return (await existsInEtcdV2(flags, key, timeoutMs))
      ? [otherKeyspaceCandidate("etcd", key, flags.etcdPrefix)]
      : [];
  }
  if (flags.store === "etcd2") {
    const v3 = storeFromFlags({ ...flags, store: "etcd" });
    try {
      return (await exists(v3, key, timeoutMs))
        ? [otherKeyspaceCandidate("etcd2", key, flags.etcdPrefix)]
        : [];
    } finally {
      await within(v3.close(), timeoutMs, "closing the store").catch(() => undefined);
    }
  }
  return [];
}

async function readConfig(
  store: Store,
  flags: AgentFlags,
  value: string | undefined,
  timeoutMs: number,
): Promise<ConfigState> {
  const key = configKey(flags.etcdPrefix);
  if (value !== undefined) {
    try {
      const { config, warnings } = parseNetworkConfig(value);
      return { kind: "valid", config, warnings };
    } catch (err) {
      return { kind: "invalid", message: errorMessage(err) };
    }
  }
  const elsewhere = [...(await otherKeyspace(flags, key, timeoutMs))];
  for (const candidate of alternativeConfigKeys(flags.etcdPrefix)) {
    if (await exists(store, candidate.key, timeoutMs)) elsewhere.push(candidate);
  }
  return { kind: "missing", elsewhere };
}

export async function readStore(flags: AgentFlags, timeoutMs = 5_000): Promise<StoreFacts> {
  const key = configKey(flags.etcdPrefix);
  if (flags.store === "sqlite") {
    const file = databasePath(flags.storeEndpoints[0] ?? "");
    if (file !== ":memory:" && !existsSync(file))
      return { key, reach: { ok: false, error: `the database file ${file} does not exist` } };
  }
  let store: Store | undefined;
  try {
    store = storeFromFlags(flags);
    const kv = await within(store.get(key), timeoutMs, `reading ${key}`);
    const config = await readConfig(store, flags, kv?.value, timeoutMs);
    const rules: LeaseRules = {
      network: config.kind === "valid" ? config.config.network : parseCidr("0.0.0.0/0"),
      subnetLen: config.kind === "valid" ? config.config.subnetLen : undefined,
      subnets: subnetsPrefix(flags.etcdPrefix),
    };
    const listed = await within(
      store.list(subnetsPrefix(flags.etcdPrefix), LEASE_READ),
      timeoutMs,
      "listing the leases",
    );
    const leases = listed.entries.flatMap((entry) => {
      const parsed = parseLease(entry, rules);
      return parsed.ok ? [parsed.lease] : [];
    });
    return { key, reach: { ok: true }, config, leases };
  } catch (err) {
    return { key, reach: { ok: false, error: errorMessage(err) } };
  } finally {
    await within(store?.close() ?? Promise.resolve(), timeoutMs, "closing the store").catch(() => undefined);
  }
}
