/** Opens the store the agent's flags name, with their endpoints and credentials. */

import { isStoreName, openStore, storeNames } from "../../stores/index.ts";
import type { Store, StoreOptions } from "../../stores/store.ts";
import type { AgentFlags } from "../config/flags.ts";
import { WeftError, WeftErrorCode } from "../errors.ts";
import type { Logger } from "../log.ts";

export function storeFromFlags(flags: AgentFlags, log?: Logger): Store {
  if (!isStoreName(flags.store)) {
    throw new WeftError(
      WeftErrorCode.FlagInvalid,
      `--store=${flags.store}: unknown store; use one of ${storeNames.join(", ")}`,
      { field: "--store", value: flags.store },
    );
  }
  return openStore(flags.store, storeOptions(flags, log));
}

/** The endpoints, credentials and TLS files the flags give for their store. */
export function storeOptions(flags: AgentFlags, log?: Logger): StoreOptions {
  const tls =
    flags.etcdCertfile !== "" || flags.etcdKeyfile !== "" || flags.etcdCafile !== ""
      ? {
          ...(flags.etcdCertfile === "" ? {} : { certFile: flags.etcdCertfile }),
          ...(flags.etcdKeyfile === "" ? {} : { keyFile: flags.etcdKeyfile }),
          ...(flags.etcdCafile === "" ? {} : { caFile: flags.etcdCafile }),
        }
      : undefined;
  return {
    endpoints: flags.storeEndpoints,
    username: flags.etcdUsername === "" ? undefined : flags.etcdUsername,
    password: flags.etcdPassword === "" ? undefined : flags.etcdPassword,
    // --consul-token (or Consul's own CONSUL_HTTP_TOKEN) is for Consul only; NATS reads NATS_TOKEN.
    token:
      flags.store === "consul" ? flags.consulToken || process.env.CONSUL_HTTP_TOKEN || undefined : undefined,
    credsFile: flags.natsCreds === "" ? undefined : flags.natsCreds,
    tls,
    logger: log,
  };
}

/** `<prefix>/config`. */
export function configKey(prefix: string): string {
  return `${prefix.replace(/\/+$/, "")}/config`;
}
