/**
 * The firewall rules weft wants, as plain data (no I/O). Both dataplanes render the same list:
 * `iptables.ts` as `iptables-restore` lines, `nftables.ts` as `nft` statements.
 *
 * Semantics (flanneld v0.28 `pkg/trafficmngr`, N = Network, P = this host's lease subnet):
 * - forward (filter, `--iptables-forward-rules`): accept `-s N` and `-d N`. Docker ≥ 1.13 sets the
 *   FORWARD policy to DROP; without these, routed pod traffic dies in the middle host (flannel #609).
 * - postrouting (nat, `--ip-masq`), first match wins:
 *   1. packets marked by kube-proxy (`0x4000/0x4000`) return: kube-proxy masquerades them itself;
 *   2. `-s P -d N` return: pod to pod stays un-NATed;
 *   3. `-s N -d P` return: cluster to our pods stays un-NATed;
 *   4. `! -s N -d P` return: outside to our pods keeps its source;
 *   5. `-s N ! -d 224.0.0.0/4` masquerade: pods to the outside world (multicast excepted);
 *   6. `! -s N -d N` masquerade: the host itself talking to pods elsewhere.
 *   flanneld's nftables mode writes rule 4 as `saddr != P daddr N`, which contradicts rule 6 (host to
 *   remote pods would return instead of masquerade); weft uses the iptables form in both modes.
 *
 * Ownership: every rule lives in weft's own chains (`WEFT-FWD` in filter, `WEFT-POSTRTG` in nat; the
 * whole `table ip weft` in nftables mode) and carries the comment `weft:fwd` or `weft:masq`, and so
 * does the single jump from the built-in chain. A restarted agent recognises its state by these chain
 * names and comments alone; it never looks at or touches rules outside them (flanneld's FLANNEL-*
 * chains included).
 *
 * Jump position: the FORWARD jump is inserted at the top (`-I FORWARD 1`) when it is missing, and so is
 * the POSTROUTING jump. flanneld appends (`-A FORWARD -j FLANNEL-FWD`), so any earlier DROP or REJECT
 * in FORWARD (ufw, firewalld's iptables backend, a hand-written `-A FORWARD -j DROP`) silently defeats
 * it. Our chain only accepts traffic of the Network and returns everything else, so running it first
 * changes nothing for other traffic. An existing jump is never moved: Docker re-inserts its own
 * DOCKER-USER jump at position 1 on every start, and fighting over the first slot would rewrite
 * FORWARD on every resync. Exactly one jump is kept; duplicates are removed.
 */
import { formatCidr, parseCidr } from "../net/ipv4.ts";

/** What the firewall is asked to enforce; changes come from the lease and the network config. */
export interface FirewallSpec {
  /** The cluster Network (N), e.g. `10.5.0.0/16`. Host bits are cleared. */
  readonly network: string;
  /** This host's lease subnet (P), e.g. `10.5.72.0/24`. Host bits are cleared. */
  readonly subnet: string;
  /** `--ip-masq`: install the postrouting (masquerade) rules. */
  readonly ipMasq: boolean;
  /** `--iptables-forward-rules`: install the forward accept rules. */
  readonly forwardRules: boolean;
}

/** Names and comments by which weft recognises its own firewall state. */
export const Owned = {
  forwardChain: "WEFT-FWD",
  postroutingChain: "WEFT-POSTRTG",
  forwardComment: "weft:fwd",
  masqComment: "weft:masq",
  nftTable: "weft",
  nftForwardChain: "forward",
  nftPostroutingChain: "postrouting",
} as const;

/** kube-proxy's masquerade mark (`--kube-proxy-mark`'s default bit 14). */
export const KUBE_PROXY_MARK = 0x4000;
/** IPv4 multicast, never masqueraded. */
export const MULTICAST = "224.0.0.0/4";

export const Verdict = { Accept: "accept", Return: "return", Masquerade: "masquerade" } as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** An address match: `-s cidr` / `! -s cidr`. */
export interface AddressMatch {
  readonly cidr: string;
  readonly negate: boolean;
}

/** One rule in dataplane-neutral form. */
export interface Rule {
  readonly src?: AddressMatch | undefined;
  readonly dst?: AddressMatch | undefined;
  /** `-m mark --mark value/mask`. */
  readonly mark?: { readonly value: number; readonly mask: number } | undefined;
  readonly verdict: Verdict;
  /** Masquerade with fully random source ports (dropped by the renderer when unsupported). */
  readonly fullyRandom?: boolean | undefined;
  readonly comment: string;
}

/** The desired content of weft's two chains; `null` means the chain (and its jump) must not exist. */
export interface DesiredRules {
  readonly forward: readonly Rule[] | null;
  readonly postrouting: readonly Rule[] | null;
}

/** The spec with its CIDRs in canonical network form (`10.5.72.1/24` → `10.5.72.0/24`). */
export function normalizeSpec(spec: FirewallSpec): FirewallSpec {
  return {
    ...spec,
    network: formatCidr(parseCidr(spec.network, "clear")),
    subnet: formatCidr(parseCidr(spec.subnet, "clear")),
  };
}

const is = (cidr: string): AddressMatch => ({ cidr, negate: false });
const not = (cidr: string): AddressMatch => ({ cidr, negate: true });

/** The rules flanneld would install for `spec`, in weft's chains. Throws ADDRESS_INVALID on a bad CIDR. */
export function desiredRules(spec: FirewallSpec): DesiredRules {
  const { network: n, subnet: p } = normalizeSpec(spec);
  const fwd = Owned.forwardComment;
  const masq = Owned.masqComment;
  const forward: Rule[] = [
    { src: is(n), verdict: Verdict.Accept, comment: fwd },
    { dst: is(n), verdict: Verdict.Accept, comment: fwd },
  ];
  const postrouting: Rule[] = [
    { mark: { value: KUBE_PROXY_MARK, mask: KUBE_PROXY_MARK }, verdict: Verdict.Return, comment: masq },
    { src: is(p), dst: is(n), verdict: Verdict.Return, comment: masq },
    { src: is(n), dst: is(p), verdict: Verdict.Return, comment: masq },
    { src: not(n), dst: is(p), verdict: Verdict.Return, comment: masq },
    { src: is(n), dst: not(MULTICAST), verdict: Verdict.Masquerade, fullyRandom: true, comment: masq },
    { src: not(n), dst: is(n), verdict: Verdict.Masquerade, fullyRandom: true, comment: masq },
  ];
  return {
    forward: spec.forwardRules ? forward : null,
    postrouting: spec.ipMasq ? postrouting : null,
  };
}

/** Nothing at all: what `remove()` converges to. */
export const NO_RULES: DesiredRules = { forward: null, postrouting: null };
