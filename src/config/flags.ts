/**
 * The agent's flags: flanneld v0.28.9's names, defaults and `FLANNELD_*` variables, plus weft's own
 * (`--store`, `--store-endpoints`, `--consul-token`, `--nats-creds`, `--dry-run`, `--log-format`, read from
 * `WEFT_*` variables). The default store is `etcd` (v3), as flanneld, so a flanneld unit file works as is;
 * the embedded SQLite store is opt-in with `--store=sqlite`.
 *
 * Bad values are `WeftError` FLAG_INVALID naming the flag (or variable), the value and the rule; unknown
 * flags and flanneld flags weft does not implement are FLAG_UNKNOWN.
 */

import { isIP } from "node:net";
import { errorMessage, WeftError, WeftErrorCode } from "../errors.ts";
import { tryParseIpv4 } from "../net/ipv4.ts";
import { FLAGS, type FlagSpec } from "./flag-table.ts";
import { type FlagSource, parseGoBool, type RawFlags, readRawFlags } from "./go-flags.ts";

export { FLAGS, formatHelp, UNSUPPORTED_FLAGS } from "./flag-table.ts";
export type { FlagSource } from "./go-flags.ts";

/** The stores weft can use. */
export const STORE_KINDS = ["etcd", "etcd2", "consul", "nats", "sqlite"] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Default `--store-endpoints` of the stores that do not use `--etcd-endpoints`. */
export const DEFAULT_STORE_ENDPOINTS: Readonly<Record<"consul" | "nats" | "sqlite", string>> = {
  consul: "http://127.0.0.1:8500",
  nats: "nats://127.0.0.1:4222",
  sqlite: "/var/lib/weft/weft.db",
};

/** Every setting of the agent from flags and environment, converted and checked. */
export interface AgentFlags {
  readonly etcdEndpoints: readonly string[];
  readonly etcdPrefix: string;
  readonly etcdKeyfile: string;
  readonly etcdCertfile: string;
  readonly etcdCafile: string;
  readonly etcdUsername: string;
  /** Secret: never log it (see `describeFlags`). */
  readonly etcdPassword: string;
  /** Interface names or IPs, in order; empty means the default route's interface. */
  readonly iface: readonly string[];
  /** Regexes (JavaScript syntax) matching interface names or IPs, checked after `iface`. */
  readonly ifaceRegex: readonly string[];
  /** This node's public IPv4; undefined means the interface address. */
  readonly publicIp: string | undefined;
  readonly subnetFile: string;
  /** 1..1439. */
  readonly subnetLeaseRenewMarginMinutes: number;
  readonly ipMasq: boolean;
  readonly ipMasqFullyRandomDisable: boolean;
  readonly iptablesForwardRules: boolean;
  /** ≥ 1. */
  readonly iptablesResyncSeconds: number;
  readonly healthzIp: string;
  /** 0 disables the health server. */
  readonly healthzPort: number;
  /** klog-style verbosity, `-v`. */
  readonly verbosity: number;
  readonly version: boolean;
  /** `-h`/`--help` was given: print `formatHelp()` and exit 0; the other fields are defaults. */
  readonly help: boolean;
  readonly store: StoreKind;
  /** Endpoints of the chosen store (for sqlite: one database path). */
  readonly storeEndpoints: readonly string[];
  /** Secret: never log it. */
  readonly consulToken: string;
  readonly natsCreds: string;
  readonly dryRun: boolean;
  readonly logFormat: LogFormat;
  /** Where each flag's value came from, by flag name. */
  readonly sources: ReadonlyMap<string, FlagSource>;
  /** Things a person should know but that do not stop the agent. */
  readonly warnings: readonly string[];
}

const SPECS = new Map<string, FlagSpec>(FLAGS.map((spec) => [spec.name, spec]));

/** Reads typed values out of the raw text, naming flag/variable, value and rule on failure. */
class FlagReader {
  constructor(readonly raw: RawFlags) {}

  text(name: string): string {
    return this.raw.values.get(name)?.at(-1) ?? SPECS.get(name)?.defaultValue ?? "";
  }

  list(name: string): readonly string[] {
    return this.raw.values.get(name) ?? [];
  }

  given(name: string): boolean {
    return this.raw.sources.has(name);
  }

  fail(name: string, value: string, rule: string): WeftError {
    const source = this.raw.sources.get(name);
    const spec = SPECS.get(name);
    const dashes = name.length === 1 ? "-" : "--";
    const shown =
      spec?.secret === true
        ? "<redacted>"
        : value.includes(" ") || value === ""
          ? JSON.stringify(value)
          : value;
    const where =
      source?.from === "env" ? `${source.variable}=${shown} (${dashes}${name})` : `${dashes}${name}=${shown}`;
    return new WeftError(WeftErrorCode.FlagInvalid, `${where}: ${rule}`, {
      field: `${dashes}${name}`,
      value: spec?.secret === true ? undefined : value,
    });
  }

  bool(name: string): boolean {
    const value = this.text(name);
    const parsed = parseGoBool(value);
    if (parsed === undefined) throw this.fail(name, value, "must be true or false");
    return parsed;
  }

  int(name: string, min: number, max: number, rule: string): number {
    const value = this.text(name);
    if (!/^[+-]?[0-9]+$/.test(value)) throw this.fail(name, value, `must be a decimal whole number; ${rule}`);
    if (/^[+-]?0[0-9]/.test(value)) {
      throw this.fail(
        name,
        value,
        `has a leading zero, which Go reads as octal; write it in decimal; ${rule}`,
      );
    }
    const parsed = Number(value);
    if (parsed < min || parsed > max) throw this.fail(name, value, rule);
    return parsed;
  }

  nonEmpty(name: string, rule: string): string {
    const value = this.text(name);
    if (value === "") throw this.fail(name, value, rule);
    return value;
  }

  commaList(name: string, value: string, what: string): readonly string[] {
    const items = value.split(",");
    if (items.some((item) => item === "" || /\s/.test(item))) {
      throw this.fail(
        name,
        value,
        `must be a comma-separated list of ${what} without spaces or empty entries`,
      );
    }
    return items;
  }

  oneOf<T extends string>(name: string, choices: readonly T[]): T {
    const value = this.text(name);
    if (!(choices as readonly string[]).includes(value))
      throw this.fail(name, value, `must be one of ${choices.join(", ")}`);
    return value as T;
  }
}

/**
 * Parse the agent's command line (`argv` without the program name and without a subcommand) and its
 * environment. Command-line values win over environment values, which win over defaults.
 */
export function parseFlags(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): AgentFlags {
  const raw = readRawFlags(argv, env);
  const warnings = [...raw.warnings];
  if (raw.help) {
    return build(
      new FlagReader({ values: new Map(), sources: new Map(), help: true, warnings }),
      warnings,
      true,
    );
  }
  return build(new FlagReader(raw), warnings, false);
}

function build(r: FlagReader, warnings: string[], help: boolean): AgentFlags {
  const etcdEndpoints = r.commaList("etcd-endpoints", r.text("etcd-endpoints"), "URLs");
  const iface = r.list("iface");
  for (const value of iface)
    if (value === "") throw r.fail("iface", value, "must be an interface name or IP");
  const ifaceRegex = r.list("iface-regex");
  for (const value of ifaceRegex) {
    try {
      new RegExp(value);
    } catch (err) {
      throw r.fail("iface-regex", value, `is not a valid regular expression (${errorMessage(err)})`);
    }
  }
  const publicIpText = r.text("public-ip");
  if (publicIpText !== "") {
    const parsed = tryParseIpv4(publicIpText);
    if (!parsed.ok) throw r.fail("public-ip", publicIpText, `must be an IPv4 address: ${parsed.reason}`);
  }
  const healthzIp = r.text("healthz-ip");
  if (isIP(healthzIp) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(healthzIp)) {
    throw r.fail("healthz-ip", healthzIp, "must be an IP address or a host name");
  }
  const store = r.oneOf("store", STORE_KINDS);

  const etcdKeyfile = r.text("etcd-keyfile");
  const etcdCertfile = r.text("etcd-certfile");
  if ((etcdKeyfile === "") !== (etcdCertfile === "")) {
    warnings.push(
      "etcd TLS needs both --etcd-keyfile and --etcd-certfile; connecting to etcd without a client certificate",
    );
  }
  const flags: AgentFlags = {
    etcdEndpoints,
    etcdPrefix: r.nonEmpty("etcd-prefix", "must not be empty (flanneld's default is /coreos.com/network)"),
    etcdKeyfile,
    etcdCertfile,
    etcdCafile: r.text("etcd-cafile"),
    etcdUsername: r.text("etcd-username"),
    etcdPassword: r.text("etcd-password"),
    iface,
    ifaceRegex,
    publicIp: publicIpText === "" ? undefined : publicIpText,
    subnetFile: r.nonEmpty("subnet-file", "must be a file path"),
    subnetLeaseRenewMarginMinutes: r.int("subnet-lease-renew-margin", 1, 1439, "must be 1..1439 minutes"),
    ipMasq: r.bool("ip-masq"),
    ipMasqFullyRandomDisable: r.bool("ip-masq-fully-random-disable"),
    iptablesForwardRules: r.bool("iptables-forward-rules"),
    iptablesResyncSeconds: r.int("iptables-resync", 1, 86_400, "must be 1..86400 seconds"),
    healthzIp,
    healthzPort: r.int("healthz-port", 0, 65_535, "must be a port 0..65535 (0 disables the health server)"),
    verbosity: r.int("v", 0, 2_147_483_647, "must be a log level ≥ 0"),
    version: r.bool("version"),
    help,
    store,
    storeEndpoints: storeEndpoints(r, store, etcdEndpoints, warnings),
    consulToken: r.text("consul-token"),
    natsCreds: r.text("nats-creds"),
    dryRun: r.bool("dry-run"),
    logFormat: r.oneOf("log-format", LOG_FORMATS),
    sources: r.raw.sources,
    warnings,
  };
  warnOnForeignStoreFlags(r, store, warnings);
  return flags;
}

function storeEndpoints(
  r: FlagReader,
  store: StoreKind,
  etcdEndpoints: readonly string[],
  warnings: string[],
) {
  const given = r.text("store-endpoints");
  if (store === "sqlite") {
    const path = given === "" ? DEFAULT_STORE_ENDPOINTS.sqlite : given;
    if (path.includes(","))
      throw r.fail("store-endpoints", given, "--store=sqlite takes one database file path");
    return [path];
  }
  if (given === "") {
    return store === "etcd" || store === "etcd2" ? etcdEndpoints : [DEFAULT_STORE_ENDPOINTS[store]];
  }
  const endpoints = r.commaList("store-endpoints", given, "URLs");
  if (
    (store === "etcd" || store === "etcd2") &&
    r.given("etcd-endpoints") &&
    endpoints.join(",") !== etcdEndpoints.join(",")
  ) {
    warnings.push(
      `--store-endpoints=${given} is used; --etcd-endpoints=${etcdEndpoints.join(",")} is ignored`,
    );
  }
  return endpoints;
}

function warnOnForeignStoreFlags(r: FlagReader, store: StoreKind, warnings: string[]): void {
  const isEtcd = store === "etcd" || store === "etcd2";
  const owners: readonly [string, boolean][] = [
    ["etcd-keyfile", isEtcd],
    ["etcd-certfile", isEtcd],
    ["etcd-cafile", isEtcd],
    ["etcd-username", isEtcd],
    ["etcd-password", isEtcd],
    ["consul-token", store === "consul"],
    ["nats-creds", store === "nats"],
  ];
  for (const [name, used] of owners) {
    if (!used && r.given(name)) warnings.push(`--${name} is ignored with --store=${store}`);
  }
}

/** The flags as a plain object for one startup log line, with secrets replaced by `<redacted>`. */
export function describeFlags(flags: AgentFlags): Record<string, unknown> {
  const { sources: _sources, warnings: _warnings, ...rest } = flags;
  return {
    ...rest,
    etcdPassword: flags.etcdPassword === "" ? "" : "<redacted>",
    consulToken: flags.consulToken === "" ? "" : "<redacted>",
  };
}
