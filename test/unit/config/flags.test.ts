import { describe, expect, test } from "bun:test";
import { storeOptions } from "../../../src/cli/store-from-flags.ts";
import { envName, FLAGS } from "../../../src/config/flag-table.ts";
import { describeFlags, formatHelp, parseFlags } from "../../../src/config/flags.ts";
import { parseGoBool } from "../../../src/config/go-flags.ts";
import { WeftErrorCode } from "../../../src/errors.ts";
import { thrown } from "../helpers.ts";

const parse = (argv: string[], env: Record<string, string | undefined> = {}) => parseFlags(argv, env);
function refusal(argv: string[], env: Record<string, string | undefined> = {}) {
  const err = thrown(() => parse(argv, env));
  expect(err.message).not.toContain("\n");
  return err;
}

describe("flags", () => {
  test("flags - defaults are flanneld's", () => {
    const flags = parse([]);
    expect(flags.etcdEndpoints).toEqual(["http://127.0.0.1:4001", "http://127.0.0.1:2379"]);
    expect(flags.etcdPrefix).toBe("/coreos.com/network");
    expect(flags.etcdKeyfile).toBe("");
    expect(flags.iface).toEqual([]);
    expect(flags.ifaceRegex).toEqual([]);
    expect(flags.publicIp).toBeUndefined();
    expect(flags.subnetFile).toBe("/run/flannel/subnet.env");
    expect(flags.subnetLeaseRenewMarginMinutes).toBe(60);
    expect(flags.ipMasq).toBe(false);
    expect(flags.ipMasqFullyRandomDisable).toBe(false);
    expect(flags.iptablesForwardRules).toBe(true);
    expect(flags.iptablesResyncSeconds).toBe(5);
    expect(flags.healthzIp).toBe("0.0.0.0");
    expect(flags.healthzPort).toBe(0);
    expect(flags.verbosity).toBe(0);
    expect(flags.version).toBe(false);
    expect(flags.help).toBe(false);
    expect(flags.warnings).toEqual([]);
    expect(flags.sources.size).toBe(0);
  });

  test("flags - weft's defaults: etcd store on --etcd-endpoints, text logs", () => {
    const flags = parse([]);
    expect(flags.store).toBe("etcd");
    expect(flags.storeEndpoints).toEqual(flags.etcdEndpoints);
    expect(flags.dryRun).toBe(false);
    expect(flags.logFormat).toBe("text");
    expect(flags.consulToken).toBe("");
  });

  test("flags - Go syntax: -flag=value, --flag=value and --flag value", () => {
    const flags = parse([
      "-etcd-prefix=/a",
      "--subnet-file=/tmp/s.env",
      "--public-ip",
      "192.168.1.5",
      "-v",
      "3",
    ]);
    expect(flags.etcdPrefix).toBe("/a");
    expect(flags.subnetFile).toBe("/tmp/s.env");
    expect(flags.publicIp).toBe("192.168.1.5");
    expect(flags.verbosity).toBe(3);
    expect(flags.sources.get("public-ip")).toEqual({ from: "cli" });
  });

  test("flags - booleans: bare is true, =false and Go's other spellings", () => {
    expect(parse(["--ip-masq"]).ipMasq).toBe(true);
    expect(parse(["-ip-masq=false"]).ipMasq).toBe(false);
    expect(parse(["--iptables-forward-rules=false"]).iptablesForwardRules).toBe(false);
    expect(parse(["--ip-masq=1"]).ipMasq).toBe(true);
    expect(parse(["--ip-masq=F"]).ipMasq).toBe(false);
    expect(parse(["--ip-masq=TRUE"]).ipMasq).toBe(true);
    expect(parseGoBool("yes")).toBeUndefined();
  });

  test("flags - a boolean does not take the next argument as its value", () => {
    const err = refusal(["--ip-masq", "false"]);
    expect(err.code).toBe(WeftErrorCode.FlagInvalid);
    expect(err.message).toContain('unexpected argument "false"');
  });

  test("flags - repeatable --iface and --iface-regex keep their order", () => {
    const flags = parse(["--iface", "eth1", "--iface=10.0.0.5", "--iface-regex", "^en", "--iface-regex=^wl"]);
    expect(flags.iface).toEqual(["eth1", "10.0.0.5"]);
    expect(flags.ifaceRegex).toEqual(["^en", "^wl"]);
  });

  test("flags - --iface-can-reach takes an IPv4 address, from the command line or FLANNELD_IFACE_CAN_REACH", () => {
    expect(parse([]).ifaceCanReach).toBeUndefined();
    expect(parse(["-iface-can-reach=192.168.205.1"]).ifaceCanReach).toBe("192.168.205.1");
    expect(parse([], { FLANNELD_IFACE_CAN_REACH: "10.0.0.1" }).ifaceCanReach).toBe("10.0.0.1");
    expect(refusal(["--iface-can-reach=gateway"]).message).toStartWith(
      "--iface-can-reach=gateway: must be an IPv4 address",
    );
  });

  test("flags - --iface-regex takes Go's syntax, a leading (?i) included", () => {
    expect(parse(["--iface-regex=(?i)^ETH"]).ifaceRegex).toEqual(["(?i)^ETH"]);
    expect(refusal(["--iface-regex=(?U)a+"]).message).toStartWith(
      "--iface-regex=(?U)a+: is not a valid regular expression (Go's ungreedy flag",
    );
  });

  test("flags - a repeated scalar flag: the last one wins", () => {
    expect(parse(["--etcd-prefix=/a", "--etcd-prefix=/b"]).etcdPrefix).toBe("/b");
  });

  test("flags - -- ends the flags; an argument after it is refused", () => {
    expect(parse(["--ip-masq", "--"]).ipMasq).toBe(true);
    expect(refusal(["--", "extra"]).message).toContain('unexpected argument "extra"');
  });

  test("flags - -h, -help and --help ask for help and stop parsing", () => {
    for (const arg of ["-h", "-help", "--help", "--h"]) {
      const flags = parse([arg, "--bogus"]);
      expect(flags.help).toBe(true);
    }
  });

  test("flags - --version", () => {
    expect(parse(["--version"]).version).toBe(true);
    expect(parse([], { FLANNELD_VERSION: "true" }).version).toBe(false);
  });
});

describe("flags environment", () => {
  test("flags - FLANNELD_* variables set flags", () => {
    const flags = parse([], {
      FLANNELD_ETCD_ENDPOINTS: "https://10.0.0.1:2379",
      FLANNELD_ETCD_PREFIX: "/my/net",
      FLANNELD_IP_MASQ: "true",
      FLANNELD_V: "2",
      FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "30",
      FLANNELD_PUBLIC_IP: "10.0.0.9",
      FLANNELD_IPTABLES_FORWARD_RULES: "false",
    });
    expect(flags.etcdEndpoints).toEqual(["https://10.0.0.1:2379"]);
    expect(flags.storeEndpoints).toEqual(["https://10.0.0.1:2379"]);
    expect(flags.etcdPrefix).toBe("/my/net");
    expect(flags.ipMasq).toBe(true);
    expect(flags.verbosity).toBe(2);
    expect(flags.subnetLeaseRenewMarginMinutes).toBe(30);
    expect(flags.publicIp).toBe("10.0.0.9");
    expect(flags.iptablesForwardRules).toBe(false);
    expect(flags.sources.get("ip-masq")).toEqual({ from: "env", variable: "FLANNELD_IP_MASQ" });
  });

  test("flags - the command line wins over the environment", () => {
    const flags = parse(["--etcd-prefix=/cli", "--ip-masq=false"], {
      FLANNELD_ETCD_PREFIX: "/env",
      FLANNELD_IP_MASQ: "true",
    });
    expect(flags.etcdPrefix).toBe("/cli");
    expect(flags.ipMasq).toBe(false);
  });

  test("flags - an empty variable is ignored", () => {
    expect(parse([], { FLANNELD_ETCD_PREFIX: "" }).etcdPrefix).toBe("/coreos.com/network");
  });

  test("flags - a repeatable flag takes exactly one value from the environment", () => {
    expect(parse([], { FLANNELD_IFACE: "eth0,eth1" }).iface).toEqual(["eth0,eth1"]);
    expect(parse(["--iface=eth2"], { FLANNELD_IFACE: "eth0" }).iface).toEqual(["eth2"]);
    expect(parse([], { FLANNELD_IFACE_REGEX: "^en" }).ifaceRegex).toEqual(["^en"]);
  });

  test("flags - weft's own flags read WEFT_* variables, not FLANNELD_*", () => {
    const flags = parse([], {
      WEFT_STORE: "consul",
      WEFT_CONSUL_TOKEN: "s3cret",
      WEFT_DRY_RUN: "true",
      WEFT_LOG_FORMAT: "json",
      FLANNELD_STORE: "sqlite",
    });
    expect(flags.store).toBe("consul");
    expect(flags.storeEndpoints).toEqual(["http://127.0.0.1:8500"]);
    expect(flags.consulToken).toBe("s3cret");
    expect(flags.dryRun).toBe(true);
    expect(flags.logFormat).toBe("json");
  });

  test("flags - every flag has the variable flanneld's flagutil would derive", () => {
    expect(envName("etcd-endpoints", "flanneld")).toBe("FLANNELD_ETCD_ENDPOINTS");
    expect(envName("v", "flanneld")).toBe("FLANNELD_V");
    expect(envName("store-endpoints", "weft")).toBe("WEFT_STORE_ENDPOINTS");
    for (const spec of FLAGS) expect(envName(spec.name, spec.origin)).toMatch(/^(FLANNELD|WEFT)_[A-Z_]+$/);
  });

  test("flags - a bad variable value is a warning naming variable, value, rule and the default used", () => {
    const flags = parse([], {
      FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "0",
      FLANNELD_IP_MASQ: "yes",
      FLANNELD_PUBLIC_IP: "10.0.0",
      FLANNELD_ETCD_ENDPOINTS: "unix:///run/etcd.sock",
      FLANNELD_ETCD_PREFIX: "/ok",
    });
    expect(flags.subnetLeaseRenewMarginMinutes).toBe(60);
    expect(flags.ipMasq).toBe(false);
    expect(flags.publicIp).toBeUndefined();
    expect(flags.etcdEndpoints).toEqual(["http://127.0.0.1:4001", "http://127.0.0.1:2379"]);
    expect(flags.storeEndpoints).toEqual(flags.etcdEndpoints);
    expect(flags.etcdPrefix).toBe("/ok");
    expect(flags.sources.has("ip-masq")).toBe(false);
    expect(flags.sources.get("etcd-prefix")).toEqual({ from: "env", variable: "FLANNELD_ETCD_PREFIX" });
    expect(flags.warnings).toContain(
      'FLANNELD_SUBNET_LEASE_RENEW_MARGIN=0 (--subnet-lease-renew-margin): must be 1..1439 minutes; FLANNELD_SUBNET_LEASE_RENEW_MARGIN is ignored and the default "60" is used',
    );
    expect(flags.warnings).toContain(
      'FLANNELD_IP_MASQ=yes (--ip-masq): must be true or false; FLANNELD_IP_MASQ is ignored and the default "false" is used',
    );
    expect(flags.warnings).toContain(
      "FLANNELD_PUBLIC_IP=10.0.0 (--public-ip): must be an IPv4 address: expected four dot-separated numbers 0..255, found 3 part(s); FLANNELD_PUBLIC_IP is ignored and the default (none) is used",
    );
    expect(
      flags.warnings.find((w) => w.startsWith("FLANNELD_ETCD_ENDPOINTS=unix:///run/etcd.sock")),
    ).toContain('is ignored and the default "http://127.0.0.1:4001,http://127.0.0.1:2379" is used');
    expect(flags.warnings).toHaveLength(4);
    for (const warning of flags.warnings) expect(warning).not.toContain("\n");
  });

  test("flags - WEFT_* variables follow the same rule", () => {
    const flags = parse([], { WEFT_STORE: "redis", WEFT_LOG_FORMAT: "json" });
    expect(flags.store).toBe("etcd");
    expect(flags.logFormat).toBe("json");
    expect(flags.warnings).toEqual([
      'WEFT_STORE=redis (--store): must be one of etcd, etcd2, consul, nats, sqlite; WEFT_STORE is ignored and the default "etcd" is used',
    ]);
  });

  test("flags - the same bad value on the command line still stops weft", () => {
    expect(
      refusal(["--subnet-lease-renew-margin=0"], { FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "30" }).message,
    ).toBe("--subnet-lease-renew-margin=0: must be 1..1439 minutes");
    expect(refusal(["--ip-masq=yes"]).code).toBe(WeftErrorCode.FlagInvalid);
  });
});

describe("flags glog", () => {
  test("flags - seed 000's command line parses, with one notice that weft logs to stderr", () => {
    const flags = parse([
      "-etcd-endpoints=http://172.17.42.1:2379",
      "-etcd-prefix=/cluster.hostgw/network",
      "-logtostderr=true",
      "-v=3",
    ]);
    expect(flags.etcdEndpoints).toEqual(["http://172.17.42.1:2379"]);
    expect(flags.etcdPrefix).toBe("/cluster.hostgw/network");
    expect(flags.verbosity).toBe(3);
    expect(flags.warnings).toEqual([
      "-logtostderr=true: accepted for older flanneld command lines and ignored; weft always logs to stderr",
    ]);
  });

  test("flags - glog's flags with and without values, as Go's flag package reads them, make one notice", () => {
    const flags = parse([
      "-logtostderr",
      "--alsologtostderr=false",
      "-log_dir",
      "/var/log/flannel",
      "-stderrthreshold=error",
      "-stderrthreshold",
      "2",
      "-v",
      "1",
    ]);
    expect(flags.verbosity).toBe(1);
    expect(flags.warnings).toEqual([
      "-logtostderr --alsologtostderr=false -log_dir=/var/log/flannel -stderrthreshold=error -stderrthreshold=2: accepted for older flanneld command lines and ignored; weft always logs to stderr",
    ]);
  });

  test("flags - a glog flag with a value Go would refuse is refused", () => {
    expect(refusal(["-logtostderr=maybe"]).message).toBe("-logtostderr=maybe: must be true or false");
    expect(refusal(["-stderrthreshold=LOUD"]).message).toBe(
      "-stderrthreshold=LOUD: must be INFO, WARNING, ERROR, FATAL or a number, as glog takes it",
    );
    expect(refusal(["-log_dir"]).message).toBe("flag -log_dir needs a value");
    expect(refusal(["-logtostderr", "false"]).message).toContain('unexpected argument "false"');
  });

  test("flags - glog flags from the environment join the notice; a bad one is only a warning", () => {
    const flags = parse([], { FLANNELD_LOGTOSTDERR: "1", FLANNELD_STDERRTHRESHOLD: "LOUD" });
    expect(flags.warnings).toEqual([
      "FLANNELD_STDERRTHRESHOLD=LOUD (--stderrthreshold): must be INFO, WARNING, ERROR, FATAL or a number, as glog takes it; ignored",
      "FLANNELD_LOGTOSTDERR=1: accepted for older flanneld command lines and ignored; weft always logs to stderr",
    ]);
  });
});

describe("flags etcd endpoints", () => {
  test("flags - an endpoint without a scheme is used as http://, with a warning", () => {
    const flags = parse(["--etcd-endpoints=10.0.0.5:2379,http://10.0.0.6:2379,etcd-3.lan:2379"]);
    expect(flags.etcdEndpoints).toEqual([
      "http://10.0.0.5:2379",
      "http://10.0.0.6:2379",
      "http://etcd-3.lan:2379",
    ]);
    expect(flags.storeEndpoints).toEqual(flags.etcdEndpoints);
    expect(flags.warnings).toEqual([
      "--etcd-endpoints=10.0.0.5:2379,http://10.0.0.6:2379,etcd-3.lan:2379: 10.0.0.5:2379,etcd-3.lan:2379 has no scheme; using http://, as etcd's client does",
    ]);
  });

  test("flags - with a client certificate a bare endpoint is https://, as etcd's client dials it with TLS", () => {
    const flags = parse([
      "--etcd-endpoints=[fd00::5]:2379",
      "--etcd-keyfile=/k.pem",
      "--etcd-certfile=/c.pem",
    ]);
    expect(flags.etcdEndpoints).toEqual(["https://[fd00::5]:2379"]);
    expect(flags.warnings[0]).toContain("using https:// (a client certificate is set)");
  });

  test("flags - --store-endpoints of etcd2 and a FLANNELD_ETCD_ENDPOINTS variable are read the same way", () => {
    const v2 = parse(["--store=etcd2", "--store-endpoints=127.0.0.1:2379"]);
    expect(v2.storeEndpoints).toEqual(["http://127.0.0.1:2379"]);
    expect(v2.warnings[0]).toStartWith("--store-endpoints=127.0.0.1:2379: 127.0.0.1:2379 has no scheme");
    const env = parse([], { FLANNELD_ETCD_ENDPOINTS: "10.0.0.5:2379" });
    expect(env.etcdEndpoints).toEqual(["http://10.0.0.5:2379"]);
    expect(env.warnings[0]).toStartWith(
      "FLANNELD_ETCD_ENDPOINTS=10.0.0.5:2379 (--etcd-endpoints): 10.0.0.5:2379 has no scheme",
    );
  });

  test("flags - the path of an endpoint URL is dropped, as etcd's client ignores it", () => {
    const flags = parse(["--etcd-endpoints=http://10.0.0.5:2379/v2/keys"]);
    expect(flags.etcdEndpoints).toEqual(["http://10.0.0.5:2379"]);
    expect(flags.warnings[0]).toContain("only the scheme, host and port of http://10.0.0.5:2379 are used");
  });

  test.each([
    ["--etcd-endpoints=10.0.0.5", "--etcd-endpoints=10.0.0.5: 10.0.0.5 is neither a URL"],
    ["--etcd-endpoints=10.0.0.5:99999", "--etcd-endpoints=10.0.0.5:99999: 10.0.0.5:99999 is neither a URL"],
    [
      "--etcd-endpoints=unix:///run/etcd.sock",
      "--etcd-endpoints=unix:///run/etcd.sock: unix:// endpoints are not supported",
    ],
    [
      "--etcd-endpoints=ftp://10.0.0.5:2379",
      "--etcd-endpoints=ftp://10.0.0.5:2379: ftp://10.0.0.5:2379 must be http://host:port or https://host:port",
    ],
    ["--etcd-endpoints=http://a b:1", '--etcd-endpoints="http://a b:1": must be a comma-separated list'],
    ["--store-endpoints=http://", "--store-endpoints=http://: http:// is not a valid URL"],
  ])("flags - %p is refused at start naming the flag and the value", (arg, message) => {
    const err = refusal([arg]);
    expect(err.code).toBe(WeftErrorCode.FlagInvalid);
    expect(err.message).toStartWith(message);
  });

  test("flags - etcd endpoints are not checked when another store is used", () => {
    expect(parse(["--store=sqlite", "--etcd-endpoints=10.0.0.5"]).etcdEndpoints).toEqual(["10.0.0.5"]);
  });
});

describe("flags validation", () => {
  test.each([
    [["--subnet-lease-renew-margin=0"], "--subnet-lease-renew-margin=0: must be 1..1439 minutes"],
    [["--subnet-lease-renew-margin=1440"], "--subnet-lease-renew-margin=1440: must be 1..1439 minutes"],
    [
      ["--subnet-lease-renew-margin=ten"],
      "--subnet-lease-renew-margin=ten: must be a decimal whole number; must be 1..1439 minutes",
    ],
    [["--subnet-lease-renew-margin=060"], "--subnet-lease-renew-margin=060: has a leading zero"],
    [["--iptables-resync=0"], "--iptables-resync=0: must be 1..86400 seconds"],
    [["--healthz-port=65536"], "--healthz-port=65536: must be a port 0..65535"],
    [["-v=-1"], "-v=-1: must be a log level ≥ 0"],
    [["--ip-masq=maybe"], "--ip-masq=maybe: must be true or false"],
    [
      ["--public-ip=10.0.0"],
      "--public-ip=10.0.0: must be an IPv4 address: expected four dot-separated numbers",
    ],
    [["--public-ip=fd00::1"], "--public-ip=fd00::1: must be an IPv4 address"],
    [["--iface-regex=("], "--iface-regex=(: is not a valid regular expression"],
    [["--iface="], '--iface="": must be an interface name or IP'],
    [
      ["--etcd-endpoints=http://a:2379,,http://b:2379"],
      "--etcd-endpoints=http://a:2379,,http://b:2379: must be a comma-separated list of URLs",
    ],
    [["--etcd-prefix="], '--etcd-prefix="": must not be empty'],
    [["--store=redis"], "--store=redis: must be one of etcd, etcd2, consul, nats, sqlite"],
    [["--log-format=xml"], "--log-format=xml: must be one of text, json"],
    [["--healthz-ip=not an ip"], '--healthz-ip="not an ip": must be an IP address or a host name'],
    [
      ["--store=sqlite", "--store-endpoints=/a.db,/b.db"],
      "--store-endpoints=/a.db,/b.db: --store=sqlite takes one database file path",
    ],
  ])("flags - %p is refused naming flag, value and rule", (argv, message) => {
    const err = refusal(argv);
    expect(err.code).toBe(WeftErrorCode.FlagInvalid);
    expect(err.message).toStartWith(message);
  });

  test("flags - a flag without its value is refused", () => {
    const err = refusal(["--etcd-prefix"]);
    expect(err.code).toBe(WeftErrorCode.FlagInvalid);
    expect(err.message).toBe("flag --etcd-prefix needs a value");
  });

  test("flags - bad syntax is refused", () => {
    expect(refusal(["---ip-masq"]).message).toBe("bad flag syntax: ---ip-masq");
    expect(refusal(["-=x"]).message).toBe("bad flag syntax: -=x");
  });

  test("flags - a positional argument is refused", () => {
    const err = refusal(["--iface", "eth0", "eth1"]);
    expect(err.code).toBe(WeftErrorCode.FlagInvalid);
    expect(err.message).toContain('unexpected argument "eth1"');
  });

  test("flags - a secret's value never appears in an error", () => {
    const err = refusal(["--etcd-password", "hunter2", "--etcd-prefix="]);
    expect(err.message).not.toContain("hunter2");
  });

  test("flags - edges of the ranges are accepted", () => {
    expect(parse(["--subnet-lease-renew-margin=1"]).subnetLeaseRenewMarginMinutes).toBe(1);
    expect(parse(["--subnet-lease-renew-margin=1439"]).subnetLeaseRenewMarginMinutes).toBe(1439);
    expect(parse(["--healthz-port=65535", "--healthz-ip=::"]).healthzPort).toBe(65535);
    expect(parse(["--healthz-ip=localhost"]).healthzIp).toBe("localhost");
  });
});

describe("flags unknown and unsupported", () => {
  test("flags - an unknown flag is FLAG_UNKNOWN naming it, with a suggestion", () => {
    const err = refusal(["--ifface=eth0"]);
    expect(err.code).toBe(WeftErrorCode.FlagUnknown);
    expect(err.message).toBe("unknown flag --ifface (did you mean --iface?); see weft --help");
    expect(refusal(["-bogus"]).message).toBe("unknown flag -bogus; see weft --help");
  });

  test("flags - names are case-sensitive like Go's flag package", () => {
    expect(refusal(["--IP-MASQ"]).code).toBe(WeftErrorCode.FlagUnknown);
  });

  test.each([
    [["--kube-subnet-mgr"], "--kube-subnet-mgr"],
    [["--kube-subnet-mgr=true"], "--kube-subnet-mgr"],
    [["--kube-api-url=https://k8s:6443"], "--kube-api-url"],
    [["--kubeconfig-file", "/etc/kube.conf"], "--kubeconfig-file"],
    [["--net-config-path=/etc/net.json"], "--net-config-path"],
    [["--ip-blackhole-route"], "--ip-blackhole-route"],
    [["--public-ipv6=fd00::1"], "--public-ipv6"],
    [["--set-node-network-unavailable=false"], "--set-node-network-unavailable"],
  ])("flags - flanneld-only %p is FLAG_UNKNOWN saying weft does not support it", (argv, name) => {
    const err = refusal(argv);
    expect(err.code).toBe(WeftErrorCode.FlagUnknown);
    expect(err.message).toContain(`${name} is a flanneld flag that weft does not support`);
  });

  test("flags - an unsupported flanneld flag set via FLANNELD_* is refused too", () => {
    const err = refusal([], { FLANNELD_KUBE_SUBNET_MGR: "true" });
    expect(err.code).toBe(WeftErrorCode.FlagUnknown);
    expect(err.message).toStartWith(
      "FLANNELD_KUBE_SUBNET_MGR=true (--kube-subnet-mgr): --kube-subnet-mgr is a flanneld flag",
    );
  });

  test("flags - an unsupported flag at flanneld's default value is only a warning", () => {
    const flags = parse(["--kube-subnet-mgr=false", "--set-node-network-unavailable"], {
      FLANNELD_IP_BLACKHOLE_ROUTE: "false",
    });
    expect(flags.warnings).toHaveLength(3);
    expect(flags.warnings[0]).toContain("weft does not support --kube-subnet-mgr; ignored");
  });

  test("flags - klog's -vmodule and -log_backtrace_at are accepted and ignored with a warning", () => {
    const flags = parse(["-vmodule=foo=2", "-log_backtrace_at", "x.go:1", "-v=1"]);
    expect(flags.verbosity).toBe(1);
    expect(flags.warnings).toEqual([
      "-vmodule=foo=2: ignored by weft (per-file log levels are klog's)",
      "-log_backtrace_at=x.go:1: ignored by weft (backtraces are klog's)",
    ]);
  });

  test("flags - --ip-masq-fully-random-disable is supported", () => {
    expect(parse(["--ip-masq-fully-random-disable"]).ipMasqFullyRandomDisable).toBe(true);
  });
});

describe("flags store", () => {
  test("flags - --store-endpoints defaults per store", () => {
    expect(parse(["--store=etcd2", "--etcd-endpoints=http://e:2379"]).storeEndpoints).toEqual([
      "http://e:2379",
    ]);
    expect(parse(["--store=sqlite"]).storeEndpoints).toEqual(["/var/lib/weft/weft.db"]);
    expect(parse(["--store=nats"]).storeEndpoints).toEqual(["nats://127.0.0.1:4222"]);
    expect(parse(["--store=consul"]).storeEndpoints).toEqual(["http://127.0.0.1:8500"]);
  });

  test("flags - --store-endpoints wins over --etcd-endpoints, with a warning when both are given", () => {
    const flags = parse(["--etcd-endpoints=http://a:2379", "--store-endpoints=http://b:2379,http://c:2379"]);
    expect(flags.storeEndpoints).toEqual(["http://b:2379", "http://c:2379"]);
    expect(flags.warnings).toEqual([
      "--store-endpoints=http://b:2379,http://c:2379 is used; --etcd-endpoints=http://a:2379 is ignored",
    ]);
    expect(parse(["--store=sqlite", "--store-endpoints=/tmp/w.db"]).storeEndpoints).toEqual(["/tmp/w.db"]);
    expect(parse([], { WEFT_STORE_ENDPOINTS: "http://x:2379" }).storeEndpoints).toEqual(["http://x:2379"]);
  });

  test("flags - --nats-replicas: 1..5 with --store=nats, refused naming flag and value otherwise, passed to the driver", () => {
    const defaults = parse(["--store=nats"]);
    expect(defaults.natsReplicas).toBe(1);
    expect(storeOptions(defaults).replicas).toBe(1);
    const three = parse(["--store=nats", "--nats-replicas=3"]);
    expect(three.natsReplicas).toBe(3);
    expect(storeOptions(three).replicas).toBe(3);
    expect(parse(["--store=nats"], { WEFT_NATS_REPLICAS: "5" }).natsReplicas).toBe(5);
    for (const bad of ["0", "6", "three", "2.5", "-1", ""]) {
      const err = refusal(["--store=nats", `--nats-replicas=${bad}`]);
      expect(err.code).toBe(WeftErrorCode.FlagInvalid);
      expect(err.message).toStartWith(
        `--nats-replicas=${bad === "" ? '""' : bad}: must be a whole number from 1 to 5`,
      );
    }
    const fromEnv = parse(["--store=nats"], { WEFT_NATS_REPLICAS: "9" });
    expect(fromEnv.natsReplicas).toBe(1);
    expect(fromEnv.warnings).toHaveLength(1);
    expect(fromEnv.warnings[0]).toStartWith(
      "WEFT_NATS_REPLICAS=9 (--nats-replicas): must be a whole number from 1 to 5",
    );
    expect(fromEnv.warnings[0]).toEndWith('WEFT_NATS_REPLICAS is ignored and the default "1" is used');
  });

  test("flags - --nats-replicas with another store is only warned about, never checked or passed on", () => {
    const flags = parse(["--store=etcd", "--nats-replicas=9"]);
    expect(flags.warnings).toEqual(["--nats-replicas is ignored with --store=etcd"]);
    expect(storeOptions(flags).replicas).toBeUndefined();
  });

  test("flags - options of another store are warned about", () => {
    const flags = parse(["--store=sqlite", "--etcd-certfile=/c.pem", "--consul-token=t"]);
    expect(flags.warnings).toContain("--etcd-certfile is ignored with --store=sqlite");
    expect(flags.warnings).toContain("--consul-token is ignored with --store=sqlite");
  });

  test("flags - half a TLS client pair is warned about", () => {
    expect(parse(["--etcd-keyfile=/k.pem"]).warnings[0]).toContain(
      "needs both --etcd-keyfile and --etcd-certfile",
    );
    expect(parse(["--etcd-keyfile=/k.pem", "--etcd-certfile=/c.pem"]).warnings).toEqual([]);
  });

  test("flags - describeFlags redacts secrets", () => {
    const described = describeFlags(
      parse(["--etcd-password=hunter2", "--store=consul", "--consul-token=tok"]),
    );
    expect(JSON.stringify(described)).not.toContain("hunter2");
    expect(JSON.stringify(described)).not.toContain('"tok"');
    expect(described.etcdPassword).toBe("<redacted>");
    expect(described.store).toBe("consul");
  });
});

describe("flags help", () => {
  test("flags - help lists every flag with its variable and default", () => {
    const help = formatHelp();
    for (const spec of FLAGS) {
      expect(help).toContain(`${spec.name.length === 1 ? "-" : "--"}${spec.name}`);
      expect(help).toContain(envName(spec.name, spec.origin));
    }
    expect(help).toContain('(default "http://127.0.0.1:4001,http://127.0.0.1:2379")');
    expect(help).toContain("--iptables-forward-rules\n");
    expect(help).toContain("--kube-subnet-mgr");
    expect(help).toContain("weft mk-docker-opts");
  });
});
