/**
 * Fuzz targets for weft's own parsers: the network config (`parseNetworkConfig`), lease entries
 * (`parseLease`) and the command line with its environment (`parseFlags`).
 */

import { FLAGS, parseFlags, UNSUPPORTED_FLAGS } from "../../src/config/flags.ts";
import { parseNetworkConfig } from "../../src/config/network-config.ts";
import { SEED_000_CONFIG, SEED_003_CONFIG } from "../../src/demo/demo.ts";
import { isWeftError } from "../../src/errors.ts";
import { type LeaseRules, MAX_LEASE_VALUE_BYTES, parseLease } from "../../src/lease/lease.ts";
import { cidrContainsCidr, parseCidr, tryParseIpv4 } from "../../src/net/ipv4.ts";
import type { KeyValue } from "../../stores/store.ts";
import { mutateText, randomString, randomText, textInput } from "./inputs.ts";
import type { Rng } from "./prng.ts";
import { check, checkMessage, type FuzzTarget, tolerate } from "./target.ts";

const CONFIG_SEEDS = [
  SEED_000_CONFIG,
  SEED_003_CONFIG,
  '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}',
  '{"Network":"10.5.0.0/16","SubnetLen":24,"SubnetMin":"10.5.10.0","SubnetMax":"10.5.99.0","Backend":{"Type":"host-gw"}}',
  '{"network":"10.244.0.0/16","backend":{"type":"vxlan","vni":4096,"port":4789,"gbp":true,"directrouting":true,"mtu":1400}}',
  '{"Network":"172.16.0.0/12","SubnetLen":20,"EnableIPv4":true,"EnableIPv6":false,"EnableNFTables":true,"Backend":{"Type":"vxlan","VNI":1,"Learning":false}}',
  '{"Network":"10.5.0.0/16","IPv6Network":"fd00:42::/56","IPv6SubnetLen":64,"Backend":{"Type":"vxlan","MacPrefix":"0E-2A"}}',
  '{"Network":"10.5.0.0/28","Backend":{"Type":"host-gw","Unknown":1},"Extra":[1,2,3]}',
];

export const networkConfigTarget: FuzzTarget<string> = {
  name: "network-config",
  covers: ["parseNetworkConfig (src/config/network-config.ts)"],
  allowed: "WeftError CONFIG_INVALID",
  generate: (rng) => textInput(rng, CONFIG_SEEDS),
  run(json) {
    const parsed = tolerate(
      () => parseNetworkConfig(json),
      (err) => {
        checkMessage(err);
        return isWeftError(err, "CONFIG_INVALID");
      },
    );
    if (parsed === undefined) return;
    const { network, subnetLen, subnetMin, subnetMax, backend } = parsed.config;
    check(network.prefixLen >= 1 && network.prefixLen <= 28, `Network /${network.prefixLen} accepted`);
    check(subnetLen >= network.prefixLen + 2 && subnetLen <= 30, `SubnetLen ${subnetLen} accepted`);
    check(subnetMin <= subnetMax, "SubnetMin > SubnetMax accepted");
    check(
      cidrContainsCidr(network, { ip: subnetMin, prefixLen: subnetLen }),
      "SubnetMin outside the Network",
    );
    check(
      cidrContainsCidr(network, { ip: subnetMax, prefixLen: subnetLen }),
      "SubnetMax outside the Network",
    );
    check(backend.type === "host-gw" || backend.type === "vxlan", `backend ${String(backend.type)}`);
  },
};

const RULES: readonly LeaseRules[] = [
  { network: parseCidr("10.5.0.0/16"), subnetLen: 24, subnets: "/coreos.com/network/subnets/" },
  { network: parseCidr("192.168.0.0/16"), subnetLen: 26, subnets: "/cluster.hostgw/network/subnets/" },
  { network: parseCidr("10.0.0.0/8"), subnetLen: undefined, subnets: "/p/subnets/" },
];

const LEASE_VALUES = [
  '{"PublicIP":"172.17.42.41","PublicIPv6":null,"BackendType":"host-gw"}',
  '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
  '{"publicip":"10.0.0.6","backendtype":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"},"BackendV6Data":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:45"}}',
  '{"PublicIP":"10.0.0.5"}',
];

function leaseKeyText(rng: Rng, rules: LeaseRules): string {
  const len = rules.subnetLen ?? rng.range(8, 30);
  const base = rules.network.ip + rng.int(2 ** (32 - rules.network.prefixLen));
  const ip = (base & (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0)) >>> 0;
  const name = `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}-${len}`;
  const r = rng.float();
  if (r < 0.5) return `${rules.subnets}${name}`;
  if (r < 0.6) return `${rules.subnets}${name}&fd00:${rng.int(0xffff).toString(16)}::-64`;
  if (r < 0.7) return `${rules.subnets}${randomText(rng, 6)}/${name}`;
  if (r < 0.8) return `${rules.subnets}${randomString(rng)}`;
  return mutateText(rng, `${rules.subnets}${name}`, [name, rules.subnets]);
}

export const leaseTarget: FuzzTarget<{ rules: number; kv: KeyValue }> = {
  name: "lease",
  covers: ["parseLease (src/lease/lease.ts)"],
  allowed: "nothing (returns a rejection)",
  generate(rng) {
    const rules = rng.int(RULES.length);
    const rule = RULES[rules] as LeaseRules;
    const value = rng.chance(0.01)
      ? `{"PublicIP":"10.0.0.1","Pad":"${"x".repeat(rng.range(4_000, 20_000))}"}`
      : textInput(rng, LEASE_VALUES);
    return {
      rules,
      kv: { key: leaseKeyText(rng, rule), value, revision: BigInt(rng.u32()), expires: rng.chance(0.5) },
    };
  },
  run({ rules, kv }) {
    const rule = RULES[rules] as LeaseRules;
    const parsed = parseLease(kv, rule);
    if (!parsed.ok) {
      check(parsed.reason.length < 4_000, "a rejection reason that long");
      return;
    }
    const { lease } = parsed;
    check(Buffer.byteLength(kv.value) <= MAX_LEASE_VALUE_BYTES, "an oversized value accepted");
    check(
      kv.key.startsWith(rule.subnets) && !kv.key.slice(rule.subnets.length).includes("/"),
      "a nested key accepted",
    );
    check(cidrContainsCidr(rule.network, lease.subnet), "a subnet outside the network accepted");
    check(
      rule.subnetLen === undefined || lease.subnet.prefixLen === rule.subnetLen,
      "another length accepted",
    );
    check(tryParseIpv4(lease.publicIP).ok, `PublicIP ${lease.publicIP} accepted`);
    check(typeof lease.backendType === "string", "a non-text BackendType");
  },
};

const FLAG_NAMES = [...FLAGS.map((f) => f.name), ...UNSUPPORTED_FLAGS.map((f) => f.name), "help", "h", "x"];
const FLAG_VALUES = [
  "",
  "true",
  "false",
  "0",
  "-1",
  "1440",
  "99999999999999999999",
  "http://127.0.0.1:2379",
  "https://[::1]:2379,http://10.0.0.1:4001",
  "127.0.0.1:2379",
  "unix:///tmp/x",
  "etcd",
  "sqlite",
  "consul",
  "nats",
  "json",
  "eth0",
  "10.0.0.1",
  "10.0.0.300",
  "^eth[0-9]+$",
  "(a+)+$",
  "[",
  "(?P<x>a)",
  "\\pL",
  "/coreos.com/network",
];

function flagValue(rng: Rng): string {
  return rng.chance(0.7) ? rng.pick(FLAG_VALUES) : randomString(rng);
}

export const flagsTarget: FuzzTarget<{ argv: string[]; env: Record<string, string> }> = {
  name: "flags",
  covers: ["parseFlags (src/config/flags.ts) with the environment"],
  allowed: "WeftError FLAG_INVALID / FLAG_UNKNOWN",
  generate(rng) {
    const argv: string[] = [];
    const n = rng.size(8);
    for (let i = 0; i < n; i++) {
      const r = rng.float();
      const dashes = rng.chance(0.5) ? "--" : "-";
      const name = rng.pick(FLAG_NAMES);
      if (r < 0.45) argv.push(`${dashes}${name}=${flagValue(rng)}`);
      else if (r < 0.7) argv.push(`${dashes}${name}`, flagValue(rng));
      else if (r < 0.85) argv.push(`${dashes}${name}`);
      else argv.push(randomString(rng));
    }
    const env: Record<string, string> = {};
    const m = rng.size(5);
    for (let i = 0; i < m; i++) {
      const spec = rng.pick(FLAGS);
      const prefix = spec.origin === "flanneld" ? "FLANNELD_" : "WEFT_";
      env[`${prefix}${spec.name.toUpperCase().replaceAll("-", "_")}`] = flagValue(rng);
    }
    return { argv, env };
  },
  run({ argv, env }) {
    const flags = tolerate(
      () => parseFlags(argv, env),
      (err) => {
        checkMessage(err);
        return isWeftError(err, "FLAG_INVALID") || isWeftError(err, "FLAG_UNKNOWN");
      },
    );
    if (flags === undefined || flags.help) return;
    check(flags.storeEndpoints.length > 0, "no store endpoints");
    check(flags.healthzPort >= 0 && flags.healthzPort <= 65_535, `healthz port ${flags.healthzPort}`);
    check(
      flags.subnetLeaseRenewMarginMinutes >= 1 && flags.subnetLeaseRenewMarginMinutes <= 1439,
      `renew margin ${flags.subnetLeaseRenewMarginMinutes}`,
    );
    check(flags.etcdPrefix !== "", "an empty prefix");
  },
};
