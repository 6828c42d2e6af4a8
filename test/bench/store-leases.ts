/**
 * flanneld-shaped host-gw leases for the store benchmarks (etcd-transport.bench.ts,
 * store-events.bench.ts), the same shape as test/bench/stores.ts: key `<prefix>/subnets/10.a.b.0-24`,
 * value `{"PublicIP":"172.16.x.y","PublicIPv6":null,"BackendType":"host-gw"}`, each written with a
 * 24 h TTL (an etcd lease, a Consul session, …) as flanneld's are. Up to 65,536 distinct leases.
 */
import type { Store } from "../../stores/store.ts";

export const NETWORK_PREFIX = "/coreos.com/network";
export const SUBNETS = `${NETWORK_PREFIX}/subnets/`;
/** 10.0.0.0/8 in /24s: every lease below lies inside it. */
export const NETWORK = { ip: 10 << 24, prefixLen: 8 } as const;
export const SUBNET_LEN = 24;
export const LEASE_TTL_SECONDS = 86_400;

export function leaseKey(i: number): string {
  return `${SUBNETS}10.${5 + (i >> 8)}.${i & 255}.0-24`;
}

/** Lease `i`'s value; `generation` changes its PublicIP so a rewrite is a real change. */
export function leaseValue(i: number, generation = 0): string {
  const host = (i + generation * 7_919) & 0xffff;
  return JSON.stringify({
    PublicIP: `172.16.${host >> 8}.${host & 255}`,
    PublicIPv6: null,
    BackendType: "host-gw",
  });
}

/** Creates leases [from, to) with the 24 h TTL, `parallel` at a time. */
export async function seedLeases(store: Store, from: number, to: number, parallel = 64): Promise<void> {
  let next = from;
  const worker = async () => {
    for (let i = next++; i < to; i = next++) {
      await store.create(leaseKey(i), leaseValue(i), { ttlSeconds: LEASE_TTL_SECONDS });
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, to - from) }, worker));
}

/** "0.42 0.51 0.47": the 1, 5 and 15 minute load averages. */
export async function loadavg(): Promise<string> {
  return (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
}
