/**
 * The agent's flags: flanneld v0.28.9's names, defaults and `FLANNELD_*` variables, plus weft's own
 * (`--store`, `--store-endpoints`, `--consul-token`, `--nats-creds`, `--nats-replicas`, `--dry-run`, `--log-format`, read from
 * `WEFT_*` variables). The default store is `etcd` (v3), as flanneld, so a flanneld unit file works as is;
 * the embedded SQLite store is opt-in with `--store=sqlite`.
 *
 * A bad value on the command line is `WeftError` FLAG_INVALID naming the flag, the value and the rule. A
 * bad value in a variable is a warning naming the variable, the value, the rule and the default used
 * instead, as flanneld's `flagutil.SetFlagsFromEnv` logs it and goes on. Unknown flags and flanneld flags
 * weft does not implement are FLAG_UNKNOWN.
 */

import { isIP } from "node:net";
import { storeDrivers } from "../../stores/index.ts";
import { storeNames } from "../../stores/store.ts";
import { errorMessage, isWeftError, WeftError, WeftErrorCode } from "../errors.ts";
import { tryParseIpv4 } from "../net/ipv4.ts";
import { readEtcdEndpoints } from "./etcd-endpoints.ts";
import { FLAGS, type FlagSpec } from "./flag-table.ts";
import { type FlagSource, goRegExp, parseGoBool, type RawFlags, readRawFlags } from "./go-flags.ts";

export { FLAGS, formatHelp, UNSUPPORTED_FLAGS } from "./flag-table.ts";
export type { FlagSource } from "./go-flags.ts";

/** The stores weft can use: one driver each in stores/ (see `storeDrivers`). */
export const STORE_KINDS = storeNames;
export type StoreKind = (typeof STORE_KINDS)[number];

export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

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
  /** Go (RE2) regexes matching interface IPs, then names, checked after `iface` (see `goRegExp`). */
  readonly ifaceRegex: readonly string[];
  /** An IPv4 whose route (`ip route get`) names the interface; checked after `ifaceRegex`. */
  readonly ifaceCanReach: string | undefined;
  /** This node's public IPv4; undefined means the interface address. */
  readonly publicIp: string | undefined;
  readonly subnetFile: string;
  /** 1..1439. */
  readonly subnetLeaseRenewMarginMinutes: number;
  readonly ipMasq: boolean;
  readonly ipMasqFullyRandomDisable: boolean;
  readonly iptablesForwardRules: boolean;
  /** Peer routes through nexthop objects when the kernel has them (`--route-nexthops`, default true). */
  readonly routeNexthops: boolean;
  /** ≥ 1. */
  readonly iptablesResyncSeconds: number;
  readonly healthzIp: string;
  /** 0 disables the health server. */
  readonly healthzPort: number;
  /** The always-on local control endpoint (unix socket, root-only); see http/control.ts. */
  readonly controlSocket: string;
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
  /** Replicas of the NATS bucket when the agent creates it (1..5, checked by the nats driver's rule). */
  readonly natsReplicas: number;
  readonly dryRun: boolean;
  readonly logFormat: LogFormat;
  /** Where each flag's value came from, by flag name. */
  readonly sources: ReadonlyMap<string, FlagSource>;
  /** Things a person should know but that do not stop the agent. */
  readonly warnings: readonly string[];
}

const SPECS = new Map<string, FlagSpec>(FLAGS.map((spec) => [spec.name, spec]));

/**
 * Reads typed values out of the raw text, naming flag/variable, value and rule on failure. A bad value on
 * the command line throws; a bad value from the environment is a warning and the flag keeps its default,
 * as flanneld's `flagutil.SetFlagsFromEnv` does.
 */
class FlagReader {
  readonly sources: Map<string, FlagSource>;
  readonly #fellBack = new Set<string>();

  constructor(
    readonly raw: RawFlags,
    readonly warnings: string[],
  ) {
    this.sources = new Map(raw.sources);
  }

  text(name: string): string {
    const given = this.#fellBack.has(name) ? undefined : this.raw.values.get(name)?.at(-1);
    return given ?? SPECS.get(name)?.defaultValue ?? "";
  }

  list(name: string): readonly string[] {
    return this.#fellBack.has(name) ? [] : (this.raw.values.get(name) ?? []);
  }

  given(name: string): boolean {
    return this.sources.has(name);
  }

  /**
   * `--name=value` or `VARIABLE=value (--name)`, with secrets redacted and at most 200 characters of
   * the value: how a message names a value.
   */
  shown(name: string, value: string): string {
    const source = this.sources.get(name);
    const spec = SPECS.get(name);
    const dashes = name.length === 1 ? "-" : "--";
    // A URL's user:password@ is a secret too (etcd's client ignores it; a NATS URL may carry one). The
    // pattern starts at "://" (one starting at the scheme is quadratic on a long value without one).
    const redacted = value.replace(/:\/\/[^/@,\s]*@/g, "://<redacted>@");
    const open =
      redacted.length > 200 ? `${redacted.slice(0, 200)}… (${redacted.length} characters)` : redacted;
    const text =
      spec?.secret === true ? "<redacted>" : open.includes(" ") || open === "" ? JSON.stringify(open) : open;
    return source?.from === "env"
      ? `${source.variable}=${text} (${dashes}${name})`
      : `${dashes}${name}=${text}`;
  }

  fail(name: string, value: string, rule: string): WeftError {
    const secret = SPECS.get(name)?.secret === true;
    return new WeftError(WeftErrorCode.FlagInvalid, `${this.shown(name, value)}: ${rule}`, {
      field: `${name.length === 1 ? "-" : "--"}${name}`,
      value: secret ? undefined : value,
    });
  }

  /**
   * `read()`s the flag; when its value came from a variable and is refused, warns and reads the default.
   * `read` is called again after the fallback, so it must only throw through `fail`.
   */
  checked<T>(name: string, read: () => T): T {
    try {
      return read();
    } catch (err) {
      const source = this.sources.get(name);
      if (source?.from !== "env" || !isWeftError(err, WeftErrorCode.FlagInvalid)) throw err;
      this.#fellBack.add(name);
      this.sources.delete(name);
      const fallback = SPECS.get(name)?.defaultValue ?? "";
      this.warnings.push(
        `${err.message}; ${source.variable} is ignored and the default ${fallback === "" ? "(none)" : JSON.stringify(fallback)} is used`,
      );
      return read();
    }
  }

  bool(name: string): boolean {
    return this.checked(name, () => {
      const value = this.text(name);
      const parsed = parseGoBool(value);
      if (parsed === undefined) throw this.fail(name, value, "must be true or false");
      return parsed;
    });
  }

  int(name: string, min: number, max: number, rule: string): number {
    return this.checked(name, () => {
      const value = this.text(name);
      if (!/^[+-]?[0-9]+$/.test(value))
        throw this.fail(name, value, `must be a decimal whole number; ${rule}`);
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
    });
  }

  nonEmpty(name: string, rule: string): string {
    return this.checked(name, () => {
      const value = this.text(name);
      if (value === "") throw this.fail(name, value, rule);
      return value;
    });
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
    return this.checked(name, () => {
      const value = this.text(name);
      if (!(choices as readonly string[]).includes(value))
        throw this.fail(name, value, `must be one of ${choices.join(", ")}`);
      return value as T;
    });
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
      new FlagReader({ values: new Map(), sources: new Map(), help: true, warnings }, warnings),
      true,
    );
  }
  return build(new FlagReader(raw, warnings), false);
}

function build(r: FlagReader, help: boolean): AgentFlags {
  const warnings = r.warnings;
  const store = r.oneOf("store", STORE_KINDS);
  const etcdKeyfile = r.text("etcd-keyfile");
  const etcdCertfile = r.text("etcd-certfile");
  const clientCert = etcdKeyfile !== "" && etcdCertfile !== "";
  const driver = storeDrivers[store];
  const isEtcd = driver.endpoints === "etcd-urls";
  const etcdEndpoints = r.checked("etcd-endpoints", () => {
    const list = r.commaList("etcd-endpoints", r.text("etcd-endpoints"), "URLs");
    return isEtcd ? etcdEndpointList(r, "etcd-endpoints", list, clientCert) : list;
  });
  const iface = r.checked("iface", () => {
    const list = r.list("iface");
    for (const value of list)
      if (value === "") throw r.fail("iface", value, "must be an interface name or IP");
    return list;
  });
  const ifaceRegex = r.checked("iface-regex", () => {
    const list = r.list("iface-regex");
    for (const value of list) {
      try {
        goRegExp(value);
      } catch (err) {
        throw r.fail("iface-regex", value, `is not a valid regular expression (${errorMessage(err)})`);
      }
    }
    return list;
  });
  const healthzIp = r.checked("healthz-ip", () => {
    const value = r.text("healthz-ip");
    if (isIP(value) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(value)) {
      throw r.fail("healthz-ip", value, "must be an IP address or a host name");
    }
    return value;
  });

  if ((etcdKeyfile === "") !== (etcdCertfile === "") && driver.uses.tls) {
    warnings.push(
      `a TLS client certificate needs both --etcd-keyfile and --etcd-certfile; connecting to ${store} without a client certificate`,
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
    ifaceCanReach: optionalIpv4(r, "iface-can-reach"),
    publicIp: optionalIpv4(r, "public-ip"),
    subnetFile: r.nonEmpty("subnet-file", "must be a file path"),
    subnetLeaseRenewMarginMinutes: r.int("subnet-lease-renew-margin", 1, 1439, "must be 1..1439 minutes"),
    ipMasq: r.bool("ip-masq"),
    ipMasqFullyRandomDisable: r.bool("ip-masq-fully-random-disable"),
    iptablesForwardRules: r.bool("iptables-forward-rules"),
    routeNexthops: r.bool("route-nexthops"),
    iptablesResyncSeconds: r.int("iptables-resync", 1, 86_400, "must be 1..86400 seconds"),
    healthzIp,
    healthzPort: r.int("healthz-port", 0, 65_535, "must be a port 0..65535 (0 disables the health server)"),
    controlSocket: r.nonEmpty("control-socket", "must be a socket path (default /run/weft/weft.sock)"),
    verbosity: r.int("v", 0, 2_147_483_647, "must be a log level ≥ 0"),
    version: r.bool("version"),
    help,
    store,
    storeEndpoints: r.checked("store-endpoints", () => storeEndpoints(r, store, etcdEndpoints, clientCert)),
    consulToken: r.text("consul-token"),
    natsCreds: r.text("nats-creds"),
    natsReplicas: Number(driverFlag(r, store, "nats-replicas")),
    dryRun: r.bool("dry-run"),
    logFormat: r.oneOf("log-format", LOG_FORMATS),
    sources: r.sources,
    warnings,
  };
  warnOnForeignStoreFlags(r, store, warnings);
  return flags;
}

/**
 * A flag of one driver (`StoreDriver.flags`): for the chosen store's driver checked by the rule it
 * declares; for any other store its default (the value given is warned about as ignored).
 */
function driverFlag(r: FlagReader, store: StoreKind, name: string): string {
  const own = storeDrivers[store].flags.find((flag) => flag.name === name);
  if (own === undefined) return SPECS.get(name)?.defaultValue ?? "";
  return r.checked(name, () => {
    const value = r.text(name);
    const broken = own.rule?.(value);
    if (broken !== undefined) throw r.fail(name, value, broken);
    return value;
  });
}

function optionalIpv4(r: FlagReader, name: string): string | undefined {
  return r.checked(name, () => {
    const value = r.text(name);
    if (value === "") return undefined;
    const parsed = tryParseIpv4(value);
    if (!parsed.ok) throw r.fail(name, value, `must be an IPv4 address: ${parsed.reason}`);
    return value;
  });
}

/** Reads etcd endpoints as etcd's Go client does (see `readEtcdEndpoints`), warning about what it changed. */
function etcdEndpointList(
  r: FlagReader,
  name: string,
  items: readonly string[],
  clientCert: boolean,
): readonly string[] {
  const value = items.join(",");
  const read = readEtcdEndpoints(items, clientCert);
  if ("rule" in read) throw r.fail(name, value, read.rule);
  const flag = r.shown(name, value);
  if (read.bare.length > 0) {
    const scheme = clientCert ? "https:// (a client certificate is set)" : "http://";
    r.warnings.push(`${flag}: ${read.bare.join(",")} has no scheme; using ${scheme}, as etcd's client does`);
  }
  if (read.trimmed.length > 0) {
    r.warnings.push(
      `${flag}: only the scheme, host and port of ${read.trimmed.join(",")} are used; etcd's client ignores the rest of the URL (use --etcd-username/--etcd-password for credentials)`,
    );
  }
  return read.endpoints;
}

function storeEndpoints(
  r: FlagReader,
  store: StoreKind,
  etcdEndpoints: readonly string[],
  clientCert: boolean,
): readonly string[] {
  const given = r.text("store-endpoints");
  const driver = storeDrivers[store];
  if (driver.endpoints === "file") {
    const path = given === "" ? (driver.defaultEndpoint ?? "") : given;
    if (path.includes(","))
      throw r.fail("store-endpoints", given, `--store=${store} takes one database file path`);
    return [path];
  }
  const isEtcd = driver.endpoints === "etcd-urls";
  if (given === "") return driver.defaultEndpoint === undefined ? etcdEndpoints : [driver.defaultEndpoint];
  const list = r.commaList("store-endpoints", given, "URLs");
  const endpoints = isEtcd ? etcdEndpointList(r, "store-endpoints", list, clientCert) : list;
  if (isEtcd && r.given("etcd-endpoints") && endpoints.join(",") !== etcdEndpoints.join(",")) {
    r.warnings.push(
      `--store-endpoints=${given} is used; --etcd-endpoints=${etcdEndpoints.join(",")} is ignored`,
    );
  }
  return endpoints;
}

/**
 * Warns about credential flags the chosen store's driver does not use, as its driver declares them
 * (`StoreDriver.uses` and `.flags`); `storeOptions` (src/cli/store-from-flags.ts) passes the rest.
 */
function warnOnForeignStoreFlags(r: FlagReader, store: StoreKind, warnings: string[]): void {
  const { uses } = storeDrivers[store];
  const owners: readonly (readonly [string, boolean])[] = [
    ["etcd-keyfile", uses.tls],
    ["etcd-certfile", uses.tls],
    ["etcd-cafile", uses.tls],
    ["etcd-username", uses.userPassword],
    ["etcd-password", uses.userPassword],
    ...STORE_KINDS.flatMap((name) => storeDrivers[name].flags.map((f) => [f.name, name === store] as const)),
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
