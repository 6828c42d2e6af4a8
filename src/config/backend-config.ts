/**
 * The `Backend` object of the network config. weft implements flannel's `host-gw` and `vxlan`; every
 * other flannel backend is refused by name. Field names match case-insensitively (flannel's vxlan json
 * tags are lower-case, Go matches any case); vxlan defaults are flanneld's (VNI 1, Port 0 = kernel
 * default 8472, MTU = the external interface MTU when absent).
 */

import { z } from "zod/mini";
import { fromZodIssue, invalidField, missingField } from "./config-error.ts";
import { matchFields } from "./json-fields.ts";

/** The backend types weft implements. */
export const SUPPORTED_BACKENDS = ["host-gw", "vxlan"] as const;
export type BackendType = (typeof SUPPORTED_BACKENDS)[number];

/** Backends flanneld has and weft does not. */
const FLANNEL_ONLY_BACKENDS = [
  "udp",
  "ipip",
  "ipsec",
  "wireguard",
  "alloc",
  "extension",
  "tencent-vpc",
  "ali-vpc",
  "aws-vpc",
  "gce",
];

/** `{"Type":"host-gw"}`: routes via peers' public IPs, no options. */
export interface HostGwBackendConfig {
  readonly type: "host-gw";
}

/** `{"Type":"vxlan", …}` with flanneld's defaults filled in. */
export interface VxlanBackendConfig {
  readonly type: "vxlan";
  /** VXLAN network identifier 0..16777215; the device is `flannel.<VNI>`. Default 1. */
  readonly vni: number;
  /** UDP port; 0 (default) lets the kernel use 8472. */
  readonly port: number;
  /** Group Based Policy extension. Default false. */
  readonly gbp: boolean;
  /** Let the kernel learn FDB entries. Default false. */
  readonly learning: boolean;
  /** Use host-gw style routes for peers on the same L2 subnet. Default false. */
  readonly directRouting: boolean;
  /** Device MTU; absent means "the external interface MTU" (decided at runtime). */
  readonly mtu: number | undefined;
}

export type BackendConfig = HostGwBackendConfig | VxlanBackendConfig;

const BACKEND_FIELDS = [
  "Type",
  "VNI",
  "Port",
  "GBP",
  "DirectRouting",
  "MTU",
  "Learning",
  "MacPrefix",
  "Name",
] as const;
type BackendField = (typeof BACKEND_FIELDS)[number];
const VXLAN_FIELDS: readonly BackendField[] = ["VNI", "Port", "GBP", "DirectRouting", "MTU", "Learning"];
const WINDOWS_FIELDS: readonly BackendField[] = ["MacPrefix", "Name"];

/** An optional whole number within [min, max], with `type` when it is no whole number at all. */
const whole = (type: string, min: number, max: number, range: string) =>
  z.optional(
    z.int({ error: type }).check(z.minimum(min, { error: range }), z.maximum(max, { error: range })),
  );
const flag = z.optional(z.boolean({ error: "must be true or false" }));
const text = z.optional(z.string({ error: "must be a string" }));

const backendSchema = z.object({
  Type: z.optional(z.string({ error: 'must be a string: "host-gw" or "vxlan"' })),
  VNI: whole("must be a whole number 0..16777215", 0, 16_777_215, "must be between 0 and 16777215"),
  Port: whole(
    "must be a whole number 0..65535",
    0,
    65_535,
    "must be between 0 and 65535 (0 = kernel default 8472)",
  ),
  MTU: whole("must be a whole number 68..65535", 68, 65_535, "must be between 68 and 65535"),
  GBP: flag,
  DirectRouting: flag,
  Learning: flag,
  MacPrefix: text,
  Name: text,
});

const objectSchema = z.record(z.string(), z.unknown(), {
  error: 'must be an object like {"Type": "vxlan"}',
});

/** Validate the raw `Backend` value; `undefined` means the field was absent. */
export function parseBackendConfig(raw: unknown): { backend: BackendConfig; warnings: string[] } {
  if (raw === undefined) {
    throw missingField(
      "Backend",
      'flanneld would fall back to its udp backend, which weft does not implement; set Backend.Type, e.g. "Backend": {"Type": "vxlan"} (the same overlay, in the kernel) or {"Type": "host-gw"} when all hosts share one L2 segment',
    );
  }
  const object = objectSchema.safeParse(raw);
  if (!object.success) throw fromZodIssue(object.error, raw, "Backend");
  const matched = matchFields(object.data, BACKEND_FIELDS, "network config: Backend");
  const warnings = [...matched.warnings];
  const parsed = backendSchema.safeParse(matched.fields);
  if (!parsed.success) throw fromZodIssue(parsed.error, matched.fields, "Backend");
  const fields = parsed.data;

  const type = checkType(fields.Type, warnings);
  for (const field of WINDOWS_FIELDS) {
    if (fields[field] !== undefined)
      warnings.push(`network config: Backend.${field} is Windows-only and ignored`);
  }
  if (type === "host-gw") {
    for (const field of VXLAN_FIELDS) {
      if (fields[field] !== undefined) {
        warnings.push(
          `network config: Backend.${field} is a vxlan option and ignored by the host-gw backend`,
        );
      }
    }
    return { backend: { type }, warnings };
  }
  return {
    backend: {
      type,
      vni: fields.VNI ?? 1,
      port: fields.Port ?? 0,
      gbp: fields.GBP ?? false,
      learning: fields.Learning ?? false,
      directRouting: fields.DirectRouting ?? false,
      mtu: fields.MTU,
    },
    warnings,
  };
}

function checkType(type: string | undefined, warnings: string[]): BackendType {
  const supported = 'weft supports "host-gw" and "vxlan"';
  if (type === undefined) throw missingField("Backend.Type", `set it to "vxlan" or "host-gw"`);
  // flanneld lower-cases the type (`"Host-GW"` works there), so weft does too.
  const lower = type.toLowerCase();
  if ((SUPPORTED_BACKENDS as readonly string[]).includes(lower)) {
    if (lower !== type) warnings.push(`network config: Backend.Type "${type}" is read as "${lower}"`);
    return lower as BackendType;
  }
  if (lower === "udp") {
    throw invalidField(
      "Backend.Type",
      type,
      'weft does not implement the udp backend (a user-space tunnel); use "vxlan": the same overlay, done in the kernel',
    );
  }
  if (FLANNEL_ONLY_BACKENDS.includes(lower)) {
    throw invalidField("Backend.Type", type, `weft does not implement the ${lower} backend; ${supported}`);
  }
  throw invalidField("Backend.Type", type, `unknown backend type; ${supported}`);
}
