/**
 * Structured findings: problems the firewall layer notices but does not fix itself (a sysctl it must not
 * write, a foreign DROP it cannot override, a missing kernel feature). The agent logs each one and
 * exports it as a metric; none of them is an exception.
 */

export const Severity = { Info: "info", Warning: "warning", Error: "error" } as const;
export type Severity = (typeof Severity)[keyof typeof Severity];

export const FindingCode = {
  /** `net.ipv4.ip_forward` is not 1: nothing is routed to or from pods. */
  IpForwardDisabled: "IP_FORWARD_DISABLED",
  /** Strict reverse-path filtering on the interface: asymmetric paths are dropped. */
  RpFilterStrict: "RP_FILTER_STRICT",
  /** A sysctl could not be read (interface gone, /proc/sys not mounted). */
  SysctlUnreadable: "SYSCTL_UNREADABLE",
  /** The kernel or iptables refused MASQUERADE --random-fully; rules run without it. */
  RandomFullyUnsupported: "RANDOM_FULLY_UNSUPPORTED",
  /** FORWARD drops by policy and forward rules are disabled: routed pod traffic is dropped. */
  ForwardDropWithoutRules: "FORWARD_DROP_WITHOUT_RULES",
  /** A forward-hook chain outside weft's control drops by policy; our accept cannot override it. */
  ForeignForwardDrop: "FOREIGN_FORWARD_DROP",
  /** nftables mode also keeps the iptables WEFT-FWD accept because iptables' FORWARD chain exists. */
  IptablesForwardBridge: "IPTABLES_FORWARD_BRIDGE",
} as const;
export type FindingCode = (typeof FindingCode)[keyof typeof FindingCode];

export interface Finding {
  readonly code: FindingCode;
  readonly severity: Severity;
  /** What is wrong, with which value, and what to do. */
  readonly message: string;
  /** The setting or object concerned (`net.ipv4.conf.eth0.rp_filter`, `ip filter FORWARD`). */
  readonly subject: string;
  /** The value read, when there is one. */
  readonly value?: string | undefined;
}
