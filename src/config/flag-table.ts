/**
 * Every command-line flag weft knows: flanneld v0.28.9's flags that weft implements (same names, defaults
 * and `FLANNELD_*` environment variables), weft's own flags (`WEFT_*` variables), and flanneld flags
 * weft refuses or ignores. The table drives both the parser and `weft --help`.
 */

import { type StoreFlag, storeDrivers } from "../../stores/index.ts";
import { storeNames } from "../../stores/store.ts";

/** How a flag takes its value (Go's flag package semantics). */
export type FlagKind =
  /** `--name=value` or `--name value`. */
  | "string"
  /** `--name` (true) or `--name=false`; never `--name false`. */
  | "bool"
  /** A decimal integer. */
  | "int"
  /** Repeatable: every occurrence adds one value; from the environment exactly one value. */
  | "list";

/** Which program defined the flag; decides the environment variable prefix. */
export type FlagOrigin = "flanneld" | "weft";

/** One flag weft implements. */
export interface FlagSpec {
  /** The name without dashes, exactly as Go's flag package matches it (case-sensitive). */
  readonly name: string;
  readonly kind: FlagKind;
  readonly origin: FlagOrigin;
  /** The default as text (`""` for none), shown in help and parsed like a command-line value. */
  readonly defaultValue: string;
  /** Placeholder of the value in help (`<list>`, `<minutes>`). */
  readonly valueName?: string;
  readonly help: string;
  /** Never print the value (passwords, tokens). */
  readonly secret?: boolean;
}

/** A flanneld flag weft does not implement. */
export interface UnsupportedFlagSpec {
  readonly name: string;
  readonly kind: "string" | "bool";
  /** flanneld's default: giving exactly this value is harmless and only warned about. */
  readonly defaultValue: string;
  readonly reason: string;
  /** Accepted and ignored with a warning (logging knobs) instead of refused. */
  readonly ignored?: boolean;
  /**
   * A glog file-logging flag of the flanneld releases the old guides were written for (`-logtostderr`):
   * accepted when its value is valid, and every one given is named in one notice that weft logs to stderr.
   */
  readonly glog?: boolean;
  /** For an ignored `string` flag: the rule its value must follow, `undefined` when it does. */
  readonly check?: (value: string) => string | undefined;
}

const GLOG_REASON = "glog's file logging, taken by older flanneld releases; weft always logs to stderr";

/** Each store's default `--store-endpoints`, as its driver declares it. */
function defaultEndpointsHelp(): string {
  const fromEtcd = storeNames.filter((name) => storeDrivers[name].defaultEndpoint === undefined);
  const own = storeNames.flatMap((name) => {
    const endpoint = storeDrivers[name].defaultEndpoint;
    return endpoint === undefined ? [] : [`${endpoint} for ${name}`];
  });
  return [...(fromEtcd.length > 0 ? [`--etcd-endpoints for ${fromEtcd.join("/")}`] : []), ...own].join(", ");
}

/** A flag one store's driver declares as its own: a string, empty unless the driver names a default. */
function driverFlag(flag: StoreFlag): FlagSpec {
  return {
    name: flag.name,
    kind: "string",
    origin: "weft",
    defaultValue: flag.defaultValue ?? "",
    ...(flag.valueName === undefined ? {} : { valueName: flag.valueName }),
    help: flag.help,
    ...(flag.secret === true ? { secret: true } : {}),
  };
}

const DEFAULT_ETCD_ENDPOINTS = "http://127.0.0.1:4001,http://127.0.0.1:2379";

/** The flags weft implements, in help order. */
export const FLAGS: readonly FlagSpec[] = [
  {
    name: "etcd-endpoints",
    kind: "string",
    origin: "flanneld",
    defaultValue: DEFAULT_ETCD_ENDPOINTS,
    valueName: "<list>",
    help: "a comma-delimited list of etcd endpoints",
  },
  {
    name: "etcd-prefix",
    kind: "string",
    origin: "flanneld",
    defaultValue: "/coreos.com/network",
    help: "etcd prefix",
  },
  {
    name: "etcd-keyfile",
    kind: "string",
    origin: "flanneld",
    defaultValue: "",
    valueName: "<file>",
    help: "SSL key file used to secure etcd communication",
  },
  {
    name: "etcd-certfile",
    kind: "string",
    origin: "flanneld",
    defaultValue: "",
    valueName: "<file>",
    help: "SSL certification file used to secure etcd communication",
  },
  {
    name: "etcd-cafile",
    kind: "string",
    origin: "flanneld",
    defaultValue: "",
    valueName: "<file>",
    help: "SSL Certificate Authority file used to secure etcd communication",
  },
  {
    name: "etcd-username",
    kind: "string",
    origin: "flanneld",
    defaultValue: "",
    help: "username for BasicAuth to etcd",
  },
  {
    name: "etcd-password",
    kind: "string",
    origin: "flanneld",
    defaultValue: "",
    help: "password for BasicAuth to etcd",
    secret: true,
  },
  {
    name: "iface",
    kind: "list",
    origin: "flanneld",
    defaultValue: "",
    valueName: "<name|ip>",
    help: "interface to use (IP or name) for inter-host communication; repeatable, the first match wins",
  },
  {
    name: "iface-regex",
    kind: "list",
    origin: "flanneld",
    defaultValue: "",
    valueName: "<regex>",
    help: "regex matching the interface (IP or name) for inter-host communication; repeatable, checked after --iface",
  },
  {
    name: "iface-can-reach",
    kind: "string",
    origin: "flanneld",
    defaultValue: "",
    valueName: "<ipv4>",
    help: "use the interface and source address of the route to this IP, as `ip route get <ip>` (main table); checked after --iface and --iface-regex",
  },
  {
    name: "public-ip",
    kind: "string",
    origin: "flanneld",
    defaultValue: "",
    valueName: "<ipv4>",
    help: "IP accessible by other nodes for inter-host communication (default: the interface address)",
  },
  {
    name: "subnet-file",
    kind: "string",
    origin: "flanneld",
    defaultValue: "/run/flannel/subnet.env",
    valueName: "<file>",
    help: "filename where env variables (subnet, MTU, ...) will be written to",
  },
  {
    name: "subnet-lease-renew-margin",
    kind: "int",
    origin: "flanneld",
    defaultValue: "60",
    valueName: "<minutes>",
    help: "subnet lease renewal margin, in minutes, ranging from 1 to 1439",
  },
  {
    name: "ip-masq",
    kind: "bool",
    origin: "flanneld",
    defaultValue: "false",
    help: "setup IP masquerade rule for traffic destined outside of overlay network",
  },
  {
    name: "ip-masq-fully-random-disable",
    kind: "bool",
    origin: "flanneld",
    defaultValue: "false",
    help: "disable fully-random mode for MASQUERADE",
  },
  {
    name: "iptables-forward-rules",
    kind: "bool",
    origin: "flanneld",
    defaultValue: "true",
    help: "add default accept rules to FORWARD chain in iptables",
  },
  {
    name: "iptables-resync",
    kind: "int",
    origin: "flanneld",
    defaultValue: "5",
    valueName: "<seconds>",
    help: "resync period for iptables rules, in seconds",
  },
  {
    name: "healthz-ip",
    kind: "string",
    origin: "flanneld",
    defaultValue: "0.0.0.0",
    valueName: "<ip>",
    help: "the IP address for healthz server to listen",
  },
  {
    name: "healthz-port",
    kind: "int",
    origin: "flanneld",
    defaultValue: "0",
    valueName: "<port>",
    help: "the port for healthz server to listen (0 to disable)",
  },
  {
    name: "route-nexthops",
    kind: "bool",
    origin: "weft",
    defaultValue: "true",
    help: "program peer routes through kernel nexthop objects (ip nexthop, kernel 5.3 or later; falls back to inline gateways without them)",
  },
  {
    name: "control-socket",
    kind: "string",
    origin: "weft",
    defaultValue: "/run/weft/weft.sock",
    valueName: "<path>",
    help: "root-only unix socket serving /healthz, /readyz, /metrics and /status, always on (weft status and weft doctor use it)",
  },
  {
    name: "v",
    kind: "int",
    origin: "flanneld",
    defaultValue: "0",
    valueName: "<level>",
    help: "number for the log level verbosity",
  },
  {
    name: "version",
    kind: "bool",
    origin: "flanneld",
    defaultValue: "false",
    help: "print version and exit",
  },
  {
    name: "store",
    kind: "string",
    origin: "weft",
    defaultValue: "etcd",
    valueName: `<${storeNames.join("|")}>`,
    help: "the key-value store holding the network config and the leases (etcd = etcd v3, as flanneld)",
  },
  {
    name: "store-endpoints",
    kind: "string",
    origin: "weft",
    defaultValue: "",
    valueName: "<list>",
    help: `comma-separated store endpoints (default: ${defaultEndpointsHelp()})`,
  },
  ...storeNames.flatMap((name) => storeDrivers[name].flags.map(driverFlag)),
  {
    name: "dry-run",
    kind: "bool",
    origin: "weft",
    defaultValue: "false",
    help: "print what the agent would do (lease, route diff, firewall, subnet.env) and change nothing; as `weft plan`",
  },
  {
    name: "log-format",
    kind: "string",
    origin: "weft",
    defaultValue: "text",
    valueName: "<text|json>",
    help: "log line format",
  },
];

/** flanneld flags weft refuses (or, for logging knobs, ignores). */
export const UNSUPPORTED_FLAGS: readonly UnsupportedFlagSpec[] = [
  {
    name: "kube-subnet-mgr",
    kind: "bool",
    defaultValue: "false",
    reason: "weft has no Kubernetes subnet manager",
  },
  { name: "kube-api-url", kind: "string", defaultValue: "", reason: "weft has no Kubernetes subnet manager" },
  {
    name: "kubeconfig-file",
    kind: "string",
    defaultValue: "",
    reason: "weft has no Kubernetes subnet manager",
  },
  {
    name: "kube-annotation-prefix",
    kind: "string",
    defaultValue: "flannel.alpha.coreos.com",
    reason: "weft has no Kubernetes subnet manager",
  },
  {
    name: "net-config-path",
    kind: "string",
    defaultValue: "/etc/kube-flannel/net-conf.json",
    reason: "weft reads the network config from the store (<prefix>/config)",
  },
  {
    name: "set-node-network-unavailable",
    kind: "bool",
    defaultValue: "true",
    reason: "weft has no Kubernetes subnet manager",
  },
  {
    name: "ip-blackhole-route",
    kind: "bool",
    defaultValue: "false",
    reason: "weft does not add blackhole routes",
  },
  { name: "public-ipv6", kind: "string", defaultValue: "", reason: "weft is IPv4-only for now" },
  {
    name: "vmodule",
    kind: "string",
    defaultValue: "",
    reason: "per-file log levels are klog's",
    ignored: true,
  },
  {
    name: "log_backtrace_at",
    kind: "string",
    defaultValue: "",
    reason: "backtraces are klog's",
    ignored: true,
  },
  { name: "logtostderr", kind: "bool", defaultValue: "true", reason: GLOG_REASON, ignored: true, glog: true },
  {
    name: "alsologtostderr",
    kind: "bool",
    defaultValue: "false",
    reason: GLOG_REASON,
    ignored: true,
    glog: true,
  },
  { name: "log_dir", kind: "string", defaultValue: "", reason: GLOG_REASON, ignored: true, glog: true },
  {
    name: "stderrthreshold",
    kind: "string",
    defaultValue: "INFO",
    reason: GLOG_REASON,
    ignored: true,
    glog: true,
    check: (value) =>
      /^(INFO|WARNING|ERROR|FATAL)$/i.test(value) || /^[+-]?[0-9]+$/.test(value)
        ? undefined
        : "must be INFO, WARNING, ERROR, FATAL or a number, as glog takes it",
  },
];

/** The environment variable of a flag: `FLANNELD_ETCD_ENDPOINTS`, `FLANNELD_V`, `WEFT_STORE`. */
export function envName(name: string, origin: FlagOrigin): string {
  const prefix = origin === "flanneld" ? "FLANNELD" : "WEFT";
  return `${prefix}_${name.toUpperCase().replace(/[-.]/g, "_")}`;
}

/** `weft --help`: usage, then every flag with its value, default and environment variable. */
export function formatHelp(program = "weft"): string {
  const lines = [
    `Usage: ${program} [OPTION]...`,
    `       ${program} mk-docker-opts [-f subnet.env] [-d out] [-i] [-c] [-m] [-k KEY]`,
    "",
    "Flags take the form -name=value, --name=value or --name value; booleans --name or --name=false.",
    "A flag not given on the command line is read from its environment variable when that is not empty.",
  ];
  for (const origin of ["flanneld", "weft"] as const) {
    lines.push(
      "",
      origin === "flanneld"
        ? "flanneld-compatible flags (env FLANNELD_<NAME>):"
        : "weft flags (env WEFT_<NAME>):",
    );
    for (const spec of FLAGS.filter((flag) => flag.origin === origin)) {
      const dashes = spec.name.length === 1 ? "-" : "--";
      const value = spec.kind === "bool" ? "" : `=${spec.valueName ?? "<value>"}`;
      const shown =
        spec.defaultValue === "" || spec.kind === "bool" ? "" : ` (default "${spec.defaultValue}")`;
      const boolDefault = spec.kind === "bool" && spec.defaultValue === "true" ? " (default true)" : "";
      lines.push(`  ${dashes}${spec.name}${value}`);
      lines.push(`        ${spec.help}${shown}${boolDefault}; env ${envName(spec.name, origin)}`);
    }
  }
  lines.push(
    "",
    `Not supported: ${UNSUPPORTED_FLAGS.filter((flag) => flag.ignored !== true)
      .map((flag) => `--${flag.name}`)
      .join(", ")}.`,
  );
  return `${lines.join("\n")}\n`;
}
