/**
 * Waiting for the network config at `<prefix>/config`, as flanneld does: a missing, unreadable or
 * invalid config is retried every second (a unit with Restart=always then never loops, and a bad
 * config can be fixed live with `weft config set`). Each distinct problem is logged once and shown in
 * systemd's STATUS= line and /readyz. When the key is missing, weft looks where people put it by
 * mistake — etcd's v2 keyspace (seed 000 writes it with `etcdctl set`), the prefix with or without its
 * leading slash, flanneld's default prefix — and says so.
 */
import type { Store } from "../../stores/store.ts";
import type { Clock } from "../clock.ts";
import type { AgentFlags } from "../config/flags.ts";
import { type NetworkConfig, parseNetworkConfig } from "../config/network-config.ts";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import { configKey, storeFromFlags } from "./store-from-flags.ts";

/** flanneld's default `--etcd-prefix`. */
export const DEFAULT_PREFIX = "/coreos.com/network";
/** How often to look for the config elsewhere while it is missing. */
const ELSEWHERE_EVERY_MS = 30_000;

/** Keys where a config meant for `prefix` is often found instead (the real key excluded). */
export function configKeyCandidates(prefix: string): string[] {
  const key = configKey(prefix);
  const trimmed = prefix.replace(/\/+$/, "");
  const toggled = trimmed.startsWith("/") ? trimmed.replace(/^\/+/, "") : `/${trimmed}`;
  const candidates = [configKey(toggled), configKey(DEFAULT_PREFIX)];
  // `--etcd-prefix=/coreos.com/network/config`: the prefix is the config key itself.
  if (/\/config$/.test(trimmed)) candidates.push(trimmed);
  return [...new Set(candidates)].filter((k) => k !== key && k !== "/config");
}

/**
 * Where the config for `key` exists instead, as a sentence with the fix, or undefined. Looks in this
 * store under the candidate keys and, on etcd v3, in etcd's v2 keyspace at the same key.
 */
export async function findConfigElsewhere(flags: AgentFlags, store: Store): Promise<string | undefined> {
  const key = configKey(flags.etcdPrefix);
  if (flags.store === "etcd") {
    const v2 = storeFromFlags({ ...flags, store: "etcd2" });
    try {
      if ((await v2.get(key)) !== undefined)
        return `found ${key} in etcd's v2 keyspace (written with the v2 API, e.g. ETCDCTL_API=2 etcdctl set): run weft with --store=etcd2, or copy it to the v3 keyspace with weft config set`;
    } catch {
      // v2 disabled (etcd ≥ 3.4 without --enable-v2) or unreachable: nothing to say.
    } finally {
      await v2.close();
    }
  }
  for (const candidate of configKeyCandidates(flags.etcdPrefix)) {
    try {
      if ((await store.get(candidate)) === undefined) continue;
    } catch {
      continue;
    }
    const prefix = candidate.replace(/\/config$/, "") || "/";
    return candidate === flags.etcdPrefix.replace(/\/+$/, "")
      ? `--etcd-prefix=${flags.etcdPrefix} names the config key itself: use --etcd-prefix=${prefix}`
      : `found a network config at ${candidate}: run weft with --etcd-prefix=${prefix}, or write it to ${key} with weft config set`;
  }
  return undefined;
}

export interface ConfigWaitOptions {
  readonly flags: AgentFlags;
  readonly store: Store;
  readonly log: Logger;
  readonly clock: Clock;
  /** The current reason for waiting (systemd STATUS=, /readyz). */
  readonly status: (text: string) => void;
  /** Looks for the config elsewhere (tests inject a fake). */
  readonly elsewhere?: (flags: AgentFlags, store: Store) => Promise<string | undefined>;
}

/** Waits for a valid `<prefix>/config`; resolves undefined when `signal` aborts first. */
export async function waitForConfig(
  o: ConfigWaitOptions,
  signal: AbortSignal,
): Promise<NetworkConfig | undefined> {
  const key = configKey(o.flags.etcdPrefix);
  const elsewhere = o.elsewhere ?? findConfigElsewhere;
  let said = "";
  let lookedElsewhereAt = Number.NEGATIVE_INFINITY;
  let hint: string | undefined;
  const report = (text: string, level: "info" | "warn", fields: Record<string, unknown>) => {
    o.status(text);
    if (text === said) return;
    said = text;
    o.log[level](text, { key, ...fields, retry: "every second" });
  };
  while (!signal.aborted) {
    try {
      const kv = await o.store.get(key);
      if (kv !== undefined) {
        try {
          const { config, warnings } = parseNetworkConfig(kv.value);
          for (const w of warnings) o.log.warn("network config", { key, warning: w });
          return config;
        } catch (err) {
          report(
            `the network config at ${key} is invalid: ${errorMessage(err)}; fix it with weft config set`,
            "warn",
            {},
          );
        }
      } else {
        if (o.clock.now() - lookedElsewhereAt >= ELSEWHERE_EVERY_MS) {
          lookedElsewhereAt = o.clock.now();
          hint = await elsewhere(o.flags, o.store);
        }
        const text =
          hint === undefined
            ? `waiting for the network config at ${key} (weft config set < net-conf.json)`
            : `waiting for the network config at ${key}: ${hint}`;
        report(text, hint === undefined ? "info" : "warn", {});
      }
    } catch (err) {
      report(`cannot read the network config at ${key}: ${errorMessage(err)}; retrying`, "warn", {});
    }
    await o.clock.sleep(1_000, signal);
  }
  return undefined;
}
