/**
 * Opens the store the agent's flags name, with their endpoints and credentials. The TLS and
 * credentials files are checked first: an unreadable file or a plain `http://` endpoint next to TLS
 * files stops the command with an error naming the flag, instead of failing at every request.
 */

import { readFileSync } from "node:fs";
import { isStoreName, openStore, storeDrivers, storeNames } from "../../stores/index.ts";
import type { Store, StoreOptions } from "../../stores/store.ts";
import { withoutUserinfo } from "../../stores/tls.ts";
import type { AgentFlags } from "../config/flags.ts";
import { errorMessage, WeftError, WeftErrorCode } from "../errors.ts";
import type { Logger } from "../log.ts";

export function storeFromFlags(flags: AgentFlags, log?: Logger): Store {
  if (!isStoreName(flags.store)) {
    throw new WeftError(
      WeftErrorCode.FlagInvalid,
      `--store=${flags.store}: unknown store; use one of ${storeNames.join(", ")}`,
      { field: "--store", value: flags.store },
    );
  }
  checkStoreFiles(flags);
  return openStore(flags.store, storeOptions(flags, log));
}

/**
 * The endpoints, credentials and TLS files the flags give for their store, and only those its driver
 * declares it uses (the rest is warned about by `parseFlags`): a client certificate only when both
 * --etcd-certfile and --etcd-keyfile are given.
 */
export function storeOptions(flags: AgentFlags, log?: Logger): StoreOptions {
  const driver = storeDrivers[flags.store];
  const reads = (flag: string) => driver.flags.some((f) => f.name === flag);
  const pair = flags.etcdCertfile !== "" && flags.etcdKeyfile !== "";
  const tls =
    driver.uses.tls && (pair || flags.etcdCafile !== "")
      ? {
          ...(pair ? { certFile: flags.etcdCertfile, keyFile: flags.etcdKeyfile } : {}),
          ...(flags.etcdCafile === "" ? {} : { caFile: flags.etcdCafile }),
        }
      : undefined;
  const basic = driver.uses.userPassword;
  return {
    endpoints: flags.storeEndpoints,
    username: basic && flags.etcdUsername !== "" ? flags.etcdUsername : undefined,
    password: basic && flags.etcdPassword !== "" ? flags.etcdPassword : undefined,
    // --consul-token (or Consul's own CONSUL_HTTP_TOKEN) is for Consul only; NATS reads NATS_TOKEN.
    token: reads("consul-token")
      ? flags.consulToken || process.env.CONSUL_HTTP_TOKEN || undefined
      : undefined,
    credsFile: reads("nats-creds") && flags.natsCreds !== "" ? flags.natsCreds : undefined,
    replicas: reads("nats-replicas") ? flags.natsReplicas : undefined,
    tls,
    logger: log,
  };
}

/** `--name=value`, or `VARIABLE=value (--name)` when the value came from the environment. */
function shown(flags: AgentFlags, name: string, value: string): string {
  const source = flags.sources.get(name);
  return source?.from === "env" ? `${source.variable}=${value} (--${name})` : `--${name}=${value}`;
}

/** What a PEM file of each kind must hold. */
const PEM: Readonly<Record<string, { readonly marker: RegExp; readonly what: string }>> = {
  "etcd-certfile": { marker: /-----BEGIN CERTIFICATE-----/, what: "PEM certificate" },
  "etcd-keyfile": { marker: /-----BEGIN [A-Z ]*PRIVATE KEY-----/, what: "PEM private key" },
  "etcd-cafile": { marker: /-----BEGIN CERTIFICATE-----/, what: "PEM CA certificate" },
};

/**
 * Throws FLAG_INVALID when a TLS or credentials file the store would use cannot be read or holds no
 * PEM block of its kind, or when an HTTP store (etcd, etcd2, consul) has a plain `http://` endpoint
 * while TLS files are given: TLS would silently not be used there.
 */
export function checkStoreFiles(flags: AgentFlags): void {
  const options = storeOptions(flags);
  const files: [string, string][] = [];
  if (options.tls?.certFile !== undefined) files.push(["etcd-certfile", options.tls.certFile]);
  if (options.tls?.keyFile !== undefined) files.push(["etcd-keyfile", options.tls.keyFile]);
  if (options.tls?.caFile !== undefined) files.push(["etcd-cafile", options.tls.caFile]);
  if (options.credsFile !== undefined) files.push(["nats-creds", options.credsFile]);
  for (const [name, path] of files) {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      throw new WeftError(
        WeftErrorCode.FlagInvalid,
        `${shown(flags, name, path)}: cannot read the file (${errorMessage(err)}); --store=${flags.store} needs it`,
        { field: `--${name}`, value: path, path, cause: err },
      );
    }
    const pem = PEM[name];
    if (pem !== undefined && !pem.marker.test(text)) {
      throw new WeftError(
        WeftErrorCode.FlagInvalid,
        `${shown(flags, name, path)}: the file holds no ${pem.what}`,
        {
          field: `--${name}`,
          value: path,
          path,
        },
      );
    }
  }
  if (options.tls === undefined || flags.store === "nats" || flags.store === "sqlite") return;
  const plain = options.endpoints.filter((endpoint) => /^http:\/\//i.test(endpoint));
  if (plain.length === 0) return;
  const tlsFlags = files.filter(([name]) => name.startsWith("etcd-")).map(([name]) => `--${name}`);
  const given = flags.sources.has("store-endpoints")
    ? "--store-endpoints"
    : flags.store === "consul"
      ? "--store-endpoints (default)"
      : flags.sources.has("etcd-endpoints")
        ? "--etcd-endpoints"
        : "--etcd-endpoints (default)";
  const shownPlain = plain.map(withoutUserinfo);
  throw new WeftError(
    WeftErrorCode.FlagInvalid,
    `${given}: ${shownPlain.join(",")} ${plain.length === 1 ? "is" : "are"} plain http://, but ${tlsFlags.join(", ")} ${tlsFlags.length === 1 ? "is" : "are"} given for TLS: use https:// (${shownPlain.map((e) => e.replace(/^http:/i, "https:")).join(",")}), or drop the TLS flags`,
    { field: given.split(" ")[0], value: shownPlain.join(",") },
  );
}

/** `<prefix>/config`. */
export function configKey(prefix: string): string {
  return `${prefix.replace(/\/+$/, "")}/config`;
}
