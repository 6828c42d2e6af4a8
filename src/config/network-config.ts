/**
 * The network config JSON stored at `<prefix>/config` (flannel's `subnet.Config`), parsed like flanneld
 * v0.28.9 does: Go encoding/json field matching (case-insensitive, unknown fields ignored — weft warns),
 * then every rule of flanneld's `CheckNetworkConfig`, with flanneld's defaults:
 * - SubnetLen: 24 when the Network prefix is ≤ /22, else prefix + 2.
 * - SubnetMin: the Network plus one subnet (the first subnet is skipped); SubnetMax: the last subnet.
 *
 * Where weft differs, on purpose:
 * - A missing Backend (flanneld silently picks udp) and any backend but host-gw/vxlan are refused.
 * - EnableIPv6 is refused ("not supported yet"); the IPv6 fields are still type-checked.
 * - SubnetMin greater than SubnetMax is refused (flanneld starts and fails with "out of subnets").
 * - A Network with host bits set (`10.5.1.0/16`) is accepted as flanneld does, with a warning.
 * Every refusal is a `WeftError` CONFIG_INVALID naming the field, the value and the rule.
 */

import { isIPv6 } from "node:net";
import { z } from "zod/mini";
import { WeftError, WeftErrorCode } from "../errors.ts";
import {
  blockSize,
  cidrContains,
  formatCidr,
  formatIpv4,
  type Ipv4,
  type Ipv4Cidr,
  maskIpv4,
  tryParseCidr,
  tryParseIpv4,
} from "../net/ipv4.ts";
import { type BackendConfig, parseBackendConfig } from "./backend-config.ts";
import { fromZodIssue, invalidField, missingField, showValue } from "./config-error.ts";
import { matchFields } from "./json-fields.ts";
import { locateJsonError } from "./json-position.ts";

export type {
  BackendConfig,
  BackendType,
  HostGwBackendConfig,
  VxlanBackendConfig,
} from "./backend-config.ts";

/** A validated network config with flanneld's defaults filled in. */
export interface NetworkConfig {
  /** The cluster network (host bits cleared). */
  readonly network: Ipv4Cidr;
  /** Prefix length of each node's subnet. */
  readonly subnetLen: number;
  /** Lowest subnet (network address) the allocator hands out. */
  readonly subnetMin: Ipv4;
  /** Highest subnet (network address) the allocator hands out. */
  readonly subnetMax: Ipv4;
  /** Always true: weft is IPv4-only for now. */
  readonly enableIPv4: true;
  /** Always false: EnableIPv6 true is refused. */
  readonly enableIPv6: false;
  /** Use nftables instead of iptables. */
  readonly enableNFTables: boolean;
  readonly backend: BackendConfig;
}

/** The outcome of `parseNetworkConfig`: the config and what was ignored or adjusted on the way. */
export interface ParsedNetworkConfig {
  readonly config: NetworkConfig;
  readonly warnings: string[];
}

const FIELDS = [
  "Network",
  "SubnetLen",
  "SubnetMin",
  "SubnetMax",
  "EnableIPv4",
  "EnableIPv6",
  "IPv6Network",
  "IPv6SubnetLen",
  "IPv6SubnetMin",
  "IPv6SubnetMax",
  "EnableNFTables",
  "Backend",
] as const;

const flag = z.optional(z.boolean({ error: "must be true or false" }));
/** Ranges that depend on the Network are checked after the types; here only "a whole number ≥ 0". */
const prefixLength = z
  .int({ error: "must be a whole number" })
  .check(z.minimum(0, { error: "must not be negative" }));
const address4 = z.optional(z.string({ error: 'must be an IPv4 address string like "10.5.1.0"' }));
const address6 = z.optional(z.string({ error: 'must be an IPv6 address string like "fd00:42::"' }));

const topSchema = z.object({
  Network: z.optional(z.string({ error: 'must be a CIDR string like "10.5.0.0/16"' })),
  SubnetLen: z.optional(prefixLength),
  SubnetMin: address4,
  SubnetMax: address4,
  EnableIPv4: flag,
  EnableIPv6: flag,
  IPv6Network: z.optional(z.string({ error: 'must be an IPv6 CIDR string like "fd00:42::/56"' })),
  IPv6SubnetLen: z.optional(prefixLength.check(z.maximum(128, { error: "must be between 0 and 128" }))),
  IPv6SubnetMin: address6,
  IPv6SubnetMax: address6,
  EnableNFTables: flag,
  Backend: z.optional(z.unknown()),
});
type TopFields = z.infer<typeof topSchema>;

/**
 * Parse and validate the network config JSON. Throws `WeftError` CONFIG_INVALID on invalid JSON (naming
 * line and column) and on any value that breaks a rule (naming field, value and rule).
 */
export function parseNetworkConfig(json: string): ParsedNetworkConfig {
  const raw = parseJson(json);
  const object = z.record(z.string(), z.unknown()).safeParse(raw);
  if (!object.success) {
    throw new WeftError(
      WeftErrorCode.ConfigInvalid,
      `network config: expected a JSON object like {"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}, found ${Array.isArray(raw) ? "an array" : showValue(raw)}`,
      { value: raw },
    );
  }
  const matched = matchFields(object.data, FIELDS, "network config");
  const warnings = [...matched.warnings];
  const parsed = topSchema.safeParse(matched.fields);
  if (!parsed.success) throw fromZodIssue(parsed.error, matched.fields);
  const fields = parsed.data;

  checkStack(fields);
  checkIpv6Basics(fields);
  const ipv4 = checkIpv4(fields, warnings);
  const backend = parseBackendConfig(fields.Backend);
  warnings.push(...backend.warnings);
  return {
    config: {
      ...ipv4,
      enableIPv4: true,
      enableIPv6: false,
      enableNFTables: fields.EnableNFTables ?? false,
      backend: backend.backend,
    },
    warnings,
  };
}

function parseJson(json: string): unknown {
  try {
    return JSON.parse(json);
  } catch (err) {
    const at = locateJsonError(json);
    const where = at === undefined ? "" : ` at line ${at.line}, column ${at.column}: ${at.reason}`;
    throw new WeftError(WeftErrorCode.ConfigInvalid, `network config: invalid JSON${where}`, { cause: err });
  }
}

function checkStack(fields: TopFields): void {
  const ipv4 = fields.EnableIPv4 ?? true;
  const ipv6 = fields.EnableIPv6 ?? false;
  if (!ipv4 && !ipv6) {
    throw invalidField("EnableIPv4", false, "at least one of EnableIPv4 and EnableIPv6 must be true");
  }
  if (!ipv4) {
    throw invalidField(
      "EnableIPv4",
      false,
      "IPv6-only networks are not supported by weft yet; use an IPv4 Network",
    );
  }
}

function checkIpv6Basics(fields: TopFields): void {
  if (fields.IPv6Network !== undefined) {
    const [address = "", length, ...rest] = fields.IPv6Network.split("/");
    const len = Number(length);
    if (rest.length > 0 || !isIPv6(address) || !/^[0-9]{1,3}$/.test(length ?? "") || len > 128) {
      throw invalidField(
        "IPv6Network",
        fields.IPv6Network,
        'must be an IPv6 CIDR string like "fd00:42::/56"',
      );
    }
  }
  for (const field of ["IPv6SubnetMin", "IPv6SubnetMax"] as const) {
    const value = fields[field];
    if (value !== undefined && !isIPv6(value)) {
      throw invalidField(field, value, 'must be an IPv6 address string like "fd00:42::"');
    }
  }
  if (fields.EnableIPv6 === true) {
    throw invalidField(
      "EnableIPv6",
      true,
      "IPv6 and dual-stack are not supported by weft yet; remove EnableIPv6 (the IPv4 Network keeps working)",
    );
  }
}

function checkIpv4(
  fields: TopFields,
  warnings: string[],
): Pick<NetworkConfig, "network" | "subnetLen" | "subnetMin" | "subnetMax"> {
  if (fields.Network === undefined) {
    throw missingField(
      "Network",
      'please define a correct Network parameter in the flannel config, e.g. "Network": "10.5.0.0/16"',
    );
  }
  if (fields.Network.includes(":")) {
    throw invalidField("Network", fields.Network, "must be an IPv4 CIDR; IPv6 networks go in IPv6Network");
  }
  const parsed = tryParseCidr(fields.Network, "clear");
  if (!parsed.ok)
    throw invalidField("Network", fields.Network, `must be a CIDR like "10.5.0.0/16": ${parsed.reason}`);
  const network = parsed.value;
  if (network.prefixLen === 0 && network.ip === 0) {
    throw invalidField("Network", fields.Network, "must not be 0.0.0.0/0 (flanneld treats it as undefined)");
  }
  if (!tryParseCidr(fields.Network, "reject").ok) {
    warnings.push(
      `network config: Network "${fields.Network}" has host bits set; using ${formatCidr(network)} as flanneld does`,
    );
  }
  if (network.prefixLen > 28) {
    throw invalidField(
      "Network",
      fields.Network,
      "network is too small: the minimum useful prefix is /28 (four subnets of four addresses)",
    );
  }

  const subnetLen =
    fields.SubnetLen === undefined || fields.SubnetLen === 0 ? defaultSubnetLen(network) : fields.SubnetLen;
  const shortest = network.prefixLen + 2;
  if (subnetLen > 30 || subnetLen < shortest) {
    throw invalidField(
      "SubnetLen",
      fields.SubnetLen,
      `must be between /${shortest} and /30 (the Network ${formatCidr(network)} must hold at least four subnets, and each subnet at least four addresses)`,
    );
  }

  const size = blockSize(subnetLen);
  const subnetMin = boundary("SubnetMin", fields.SubnetMin, network, subnetLen) ?? network.ip + size;
  const subnetMax =
    boundary("SubnetMax", fields.SubnetMax, network, subnetLen) ??
    network.ip + blockSize(network.prefixLen) - size;
  if (subnetMin > subnetMax) {
    if (fields.SubnetMin === undefined) {
      throw invalidField(
        "SubnetMax",
        fields.SubnetMax,
        `must not be less than SubnetMin ${formatIpv4(subnetMin)} (the default: the second subnet)`,
      );
    }
    throw invalidField(
      "SubnetMin",
      fields.SubnetMin,
      `must not be greater than SubnetMax ${formatIpv4(subnetMax)}`,
    );
  }
  return { network, subnetLen, subnetMin, subnetMax };
}

/** flanneld's default SubnetLen: /24 for networks of /22 or larger, else four subnets. */
export function defaultSubnetLen(network: Ipv4Cidr): number {
  return network.prefixLen <= 22 ? 24 : network.prefixLen + 2;
}

/** A checked SubnetMin/SubnetMax, or undefined when unset (absent or 0.0.0.0, as in flanneld). */
function boundary(
  field: string,
  text: string | undefined,
  network: Ipv4Cidr,
  subnetLen: number,
): Ipv4 | undefined {
  if (text === undefined) return undefined;
  const parsed = tryParseIpv4(text);
  if (!parsed.ok)
    throw invalidField(field, text, `must be an IPv4 address like "10.5.1.0": ${parsed.reason}`);
  if (parsed.value === 0) return undefined;
  if (!cidrContains(network, parsed.value)) {
    throw invalidField(field, text, `must lie inside the Network ${formatCidr(network)}`);
  }
  const aligned = maskIpv4(parsed.value, subnetLen);
  if (aligned !== parsed.value) {
    throw invalidField(
      field,
      text,
      `must be on a /${subnetLen} boundary (SubnetLen), e.g. ${formatIpv4(aligned)}`,
    );
  }
  return parsed.value;
}
