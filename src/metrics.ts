/**
 * A small Prometheus registry: counters, gauges and histograms with labels, rendered in the text
 * exposition format (version 0.0.4) for `/metrics`. No dependency; only what the agent uses.
 */
type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const names = Object.keys(labels).sort();
  if (names.length === 0) return "";
  const quote = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
  return `{${names.map((n) => `${n}="${quote(labels[n] ?? "")}"`).join(",")}}`;
}

interface Metric {
  render(): string;
}

export class Counter implements Metric {
  readonly #values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const key = labelKey(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.#values.size === 0) lines.push(`${this.name} 0`);
    for (const [key, value] of this.#values) lines.push(`${this.name}${key} ${value}`);
    return lines.join("\n");
  }
}

export class Gauge implements Metric {
  readonly #values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  set(value: number, labels: Labels = {}): void {
    this.#values.set(labelKey(labels), value);
  }
  get(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    if (this.#values.size === 0) lines.push(`${this.name} 0`);
    for (const [key, value] of this.#values) lines.push(`${this.name}${key} ${value}`);
    return lines.join("\n");
  }
}

export class Histogram implements Metric {
  readonly #counts: number[];
  #sum = 0;
  #count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {
    this.#counts = buckets.map(() => 0);
  }
  observe(value: number): void {
    this.#sum += value;
    this.#count += 1;
    for (const [i, bound] of this.buckets.entries())
      if (value <= bound) this.#counts[i] = (this.#counts[i] ?? 0) + 1;
  }
  get count(): number {
    return this.#count;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [i, bound] of this.buckets.entries()) {
      lines.push(`${this.name}_bucket{le="${bound}"} ${this.#counts[i] ?? 0}`);
    }
    lines.push(
      `${this.name}_bucket{le="+Inf"} ${this.#count}`,
      `${this.name}_sum ${this.#sum}`,
      `${this.name}_count ${this.#count}`,
    );
    return lines.join("\n");
  }
}

/** The agent's metrics, created once and passed to the parts that record them. */
export class Metrics {
  readonly leaseHeld = new Gauge("weft_lease_held", "1 while this host holds its subnet lease");
  readonly leaseExpiry = new Gauge(
    "weft_lease_expiry_timestamp_seconds",
    "When the own lease expires (0: never)",
  );
  readonly leaseAcquisitions = new Counter("weft_lease_acquisitions_total", "Subnet leases acquired, by how");
  readonly leaseRenewals = new Counter("weft_lease_renewals_total", "Lease renewals, by result");
  readonly peers = new Gauge("weft_peers", "Valid peer leases currently known");
  readonly leasesRejected = new Counter(
    "weft_leases_rejected_total",
    "Peer leases ignored as invalid, by reason",
  );
  readonly routes = new Gauge("weft_routes", "Routes weft keeps in the kernel");
  readonly peersUnreachable = new Gauge(
    "weft_peers_unreachable",
    "Peers whose PublicIP is not on a directly connected network",
  );
  readonly refused = new Gauge(
    "weft_entries_refused",
    "Desired kernel entries the kernel refuses as they are (retried every 10 s), by kind",
  );
  readonly applies = new Counter("weft_applies_total", "Reconciler apply runs, by result");
  readonly applySeconds = new Histogram(
    "weft_apply_duration_seconds",
    "Duration of reconciler applies",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  );
  readonly driftRepairs = new Counter(
    "weft_drift_repairs_total",
    "Kernel objects repaired after outside changes, by kind",
  );
  readonly storeErrors = new Counter(
    "weft_store_errors_total",
    "Store operations that failed, by operation and code",
  );
  readonly watchResyncs = new Counter(
    "weft_watch_resyncs_total",
    "Full resyncs of the lease watch, by cause",
  );
  readonly firewallApplies = new Counter("weft_firewall_applies_total", "Firewall transactions, by result");
  readonly storeConnected = new Gauge(
    "weft_store_connected",
    "1 while the store answers (probed every 5 s); 0 during an outage, when leases are not synced",
  );
  readonly ready = new Gauge("weft_ready", "1 when the lease is held and the first full apply succeeded");

  render(): string {
    const all: Metric[] = Object.values(this).filter(
      (m): m is Metric => typeof (m as Metric).render === "function",
    );
    return `${all.map((m) => m.render()).join("\n")}\n`;
  }
}
