/**
 * `weft doctor`'s rules about the store, the network config, the own lease and the running agent: pure
 * functions from what was read to findings. The reading is in `store-facts.ts` and `doctor.ts`.
 */

import { storeDrivers } from "../../../stores/index.ts";
import type { StoreKind } from "../../config/flags.ts";
import type { NetworkConfig } from "../../config/network-config.ts";
import type { Readiness } from "../../http/server.ts";
import type { Lease } from "../../lease/lease.ts";
import { formatCidr, type Ipv4Cidr } from "../../net/ipv4.ts";
import { configKeyCandidates, DEFAULT_PREFIX } from "../config-wait.ts";
import { Check, type DoctorFinding, fail, ok, warn } from "./finding.ts";

const trimmed = (prefix: string) => prefix.replace(/\/+$/, "");

/**
 * The flags a store reads, for fixes, as its driver declares them (stores/<name>/driver.ts): `--store`,
 * where its endpoints go, the shared TLS and user/password flags it uses, and the flags only it reads.
 */
export function storeFlags(store: StoreKind): string {
  const driver = storeDrivers[store];
  const endpoints = {
    "etcd-urls": "--etcd-endpoints",
    urls: "--store-endpoints",
    file: "--store-endpoints=<database file>",
  }[driver.endpoints];
  const flags = [`--store=${store}`, endpoints];
  if (driver.uses.userPassword) flags.push("--etcd-username/--etcd-password");
  if (driver.uses.tls) flags.push("--etcd-certfile/--etcd-keyfile/--etcd-cafile");
  for (const flag of driver.flags) flags.push(`--${flag.name}`);
  return flags.join(", ");
}

export function storeRule(
  store: StoreKind,
  endpoints: readonly string[],
  result: { readonly ok: true } | { readonly ok: false; readonly error: string },
): DoctorFinding {
  const where = `${store} at ${endpoints.join(",")}`;
  if (result.ok) return ok(Check.Store, `${where} answers`);
  return fail(
    Check.Store,
    `cannot use ${where}: ${result.error}`,
    `give doctor the agent's flags or environment file (${storeFlags(store)}), and check that the store runs and accepts them`,
  );
}

/** Another place the config may have been written to, and what to do when it is there. */
export interface ConfigCandidate {
  readonly key: string;
  /** Why it is there, for the finding. */
  readonly where: string;
  readonly fix: string;
}

/**
 * Keys where people write the config by mistake: the ones the agent itself looks at while it waits
 * (`config-wait.ts`: the leading slash toggled, flanneld's default prefix, the prefix naming the key),
 * and the prefix joined with a doubled slash or none (`"$PREFIX/config"` with a trailing slash in
 * $PREFIX, `"$PREFIX"config`).
 */
export function alternativeConfigKeys(prefix: string): ConfigCandidate[] {
  const p = trimmed(prefix);
  const copy = `copy it there with weft config set --etcd-prefix=${p} < net-conf.json`;
  const keys = [...new Set([`${p}//config`, `${p}config`, ...configKeyCandidates(prefix)])];
  return keys.map((key) => {
    const other = key.replace(/\/config$/, "") || "/";
    if (key === `${p}//config`)
      return { key, where: `found at ${key} (the prefix was written with a trailing slash)`, fix: copy };
    if (key === `${p}config`)
      return { key, where: `found at ${key} (the prefix was joined without a slash)`, fix: copy };
    if (key === p)
      return {
        key,
        where: `--etcd-prefix=${p} names the config key itself`,
        fix: `run with --etcd-prefix=${other}`,
      };
    if (other === DEFAULT_PREFIX)
      return {
        key,
        where: `found under flanneld's default prefix ${DEFAULT_PREFIX}`,
        fix: `run with --etcd-prefix=${DEFAULT_PREFIX} (as the other hosts?), or ${copy}`,
      };
    return { key, where: `found at ${key}`, fix: `run with --etcd-prefix=${other}, or ${copy}` };
  });
}

/** The config as read: found and valid, found and invalid, or missing (with where it was seen instead). */
export type ConfigState =
  | { readonly kind: "valid"; readonly config: NetworkConfig; readonly warnings: readonly string[] }
  | { readonly kind: "invalid"; readonly message: string }
  | { readonly kind: "missing"; readonly elsewhere: readonly ConfigCandidate[] };

export function configRule(key: string, store: StoreKind, state: ConfigState): DoctorFinding {
  switch (state.kind) {
    case "valid": {
      const c = state.config;
      const seen = `${key}: Network ${formatCidr(c.network)}, SubnetLen ${c.subnetLen}, backend ${c.backend.type}${c.enableNFTables ? ", nftables" : ""}`;
      if (state.warnings.length === 0) return ok(Check.Config, seen);
      return warn(
        Check.Config,
        `${seen}; ${state.warnings.join("; ")}`,
        "correct the config and write it again with weft config set < net-conf.json",
      );
    }
    case "invalid":
      return fail(
        Check.Config,
        `${key} is invalid: ${state.message}`,
        "fix the named field and write it again with weft config set < net-conf.json (it validates before writing)",
      );
    case "missing": {
      const [first] = state.elsewhere;
      if (first !== undefined)
        return fail(Check.Config, `no network config at ${key}; ${first.where}`, first.fix);
      return fail(
        Check.Config,
        `no network config at ${key} in the ${store} store: the agent waits for it`,
        `write it with weft config set --store=${store} --etcd-prefix=${key.replace(/\/config$/, "")} < net-conf.json, or give doctor the store flags and --etcd-prefix the other hosts use`,
      );
    }
  }
}

/** The hint for a config that is only in the other etcd API's keyspace. */
export function otherKeyspaceCandidate(
  store: "etcd" | "etcd2",
  key: string,
  prefix: string,
): ConfigCandidate {
  if (store === "etcd") {
    return {
      key,
      where:
        "found in etcd's v2 keyspace (written with ETCDCTL_API=2 etcdctl set; the v3 API does not see it)",
      fix: `run with --store=etcd2, or copy it with weft config set: ETCDCTL_API=2 etcdctl get ${key} | weft config set --store=etcd --etcd-prefix=${trimmed(prefix)}`,
    };
  }
  return {
    key,
    where: "found in etcd's v3 keyspace (the etcd v2 API does not see it)",
    fix: `run with --store=etcd (flanneld ≥ 0.18 uses only the v3 API), or copy it with weft config set --store=etcd2 --etcd-prefix=${trimmed(prefix)}`,
  };
}

export interface LeaseInput {
  readonly prefix: string;
  /** This host's PublicIP (the agent's, or chosen like the agent from the flags). */
  readonly publicIP: string;
  /** Valid leases under `<prefix>/subnets/`. */
  readonly leases: readonly Lease[];
  readonly subnetFile: string;
  /** FLANNEL_SUBNET's network; undefined when the file is missing or the value unusable. */
  readonly envSubnet: Ipv4Cidr | undefined;
  /** The file does not exist. */
  readonly envMissing: boolean;
}

/** A lease with this host's PublicIP, and subnet.env's FLANNEL_SUBNET inside it. */
export function leaseRule(input: LeaseInput): DoctorFinding {
  const own = input.leases.filter((l) => l.publicIP === input.publicIP);
  const subnets = `${trimmed(input.prefix)}/subnets/`;
  const first = own[0];
  if (first === undefined) {
    return fail(
      Check.Lease,
      `no lease under ${subnets} has PublicIP ${input.publicIP}: this host holds no subnet`,
      "start weft with the store, --etcd-prefix and --iface/--public-ip it had before (it takes its old subnet back if still free); weft status says what it waits for",
    );
  }
  if (own.length > 1) {
    return warn(
      Check.Lease,
      `${own.length} leases have PublicIP ${input.publicIP}: ${own.map((l) => l.subnetText).join(", ")}`,
      `delete the one(s) this host does not use (FLANNEL_SUBNET in ${input.subnetFile} says which) from the store, e.g. etcdctl del ${own.map((l) => l.key).join(" ")}`,
    );
  }
  if (input.envMissing) {
    return fail(
      Check.Lease,
      `lease ${first.subnetText} is held but ${input.subnetFile} does not exist: docker gets no --bip`,
      "give doctor the agent's --subnet-file; if it is the same, restart weft (it writes the file once it holds the lease)",
    );
  }
  if (input.envSubnet === undefined) {
    return fail(
      Check.Lease,
      `lease ${first.subnetText} is held but ${input.subnetFile} has no usable FLANNEL_SUBNET`,
      `restart weft so it rewrites ${input.subnetFile}, then restart docker`,
    );
  }
  const env = formatCidr(input.envSubnet);
  if (env !== first.subnetText) {
    return fail(
      Check.Lease,
      `${input.subnetFile} says FLANNEL_SUBNET is in ${env} but this host's lease is ${first.subnetText}: containers get addresses from a subnet routed to another host or to none`,
      `restart weft so it rewrites ${input.subnetFile}, then restart docker so its --bip moves to ${first.subnetText}`,
    );
  }
  return ok(
    Check.Lease,
    `lease ${first.subnetText} (PublicIP ${input.publicIP}${first.expires ? "" : ", reservation"}) matches FLANNEL_SUBNET`,
  );
}

/** What the running agent answered on its control socket (or HTTP port). */
export type AgentAnswer =
  | { readonly kind: "unreachable"; readonly message: string }
  | {
      readonly kind: "answered";
      readonly where: string;
      readonly ready: Readiness;
      readonly lease?: string | undefined;
      readonly peers?: number | undefined;
      readonly routes?: number | undefined;
    };

export function agentRule(answer: AgentAnswer): DoctorFinding {
  if (answer.kind === "unreachable") {
    return fail(
      Check.Agent,
      answer.message,
      "start weft (systemctl start weft); journalctl -u weft says why it stopped",
    );
  }
  if (!answer.ready.ready) {
    return fail(
      Check.Agent,
      `the agent answers on ${answer.where} but is not ready: ${answer.ready.reason}`,
      "the reason names what it waits for (the other findings say how to fix it); journalctl -u weft -n 50 has the details",
    );
  }
  const details = [
    answer.lease === undefined ? undefined : `lease ${answer.lease}`,
    answer.peers === undefined ? undefined : `${answer.peers} peers`,
    answer.routes === undefined ? undefined : `${answer.routes} routes`,
  ].filter((d) => d !== undefined);
  return ok(
    Check.Agent,
    `the agent answers on ${answer.where}: ready${details.length === 0 ? "" : ` (${details.join(", ")})`}`,
  );
}
