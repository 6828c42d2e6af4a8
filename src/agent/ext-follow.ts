/**
 * Follows the external interface after start. flanneld chooses it once; weft chooses again (same
 * flags, `chooseExternal`) whenever the netlink monitor reports a link or address change, so an
 * interface deleted and re-created (a new index) or re-addressed does not leave routes on a dead
 * index, a vxlan device on a vanished link, or a lease naming an old PublicIP until a restart.
 *
 * While no interface matches (eth0 deleted, not back yet), the last choice is kept and the reason is
 * logged once; the next change tries again.
 */

import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import { formatCidr } from "../net/ipv4.ts";
import type { ExternalChoice } from "./ext-iface.ts";

/** What differs between two choices, as `what old → new` phrases; empty when nothing does. */
export function externalChanges(before: ExternalChoice, after: ExternalChoice): string[] {
  const changes: string[] = [];
  const note = (what: string, a: unknown, b: unknown) => {
    if (a !== b) changes.push(`${what} ${String(a)} → ${String(b)}`);
  };
  note("interface", before.ext.name, after.ext.name);
  note("index", before.ext.index, after.ext.index);
  note("mtu", before.ext.mtu, after.ext.mtu);
  const addrs = (c: ExternalChoice) => c.ext.addresses.map(formatCidr).join(",") || "none";
  note("addresses", addrs(before), addrs(after));
  note("interface IP", before.ifaceIP, after.ifaceIP);
  note("PublicIP", before.publicIP, after.publicIP);
  return changes;
}

export interface ExternalChange {
  readonly before: ExternalChoice;
  readonly after: ExternalChoice;
  readonly changes: readonly string[];
}

export class ExternalFollower {
  readonly #choose: () => Promise<ExternalChoice>;
  readonly #log: Logger;
  #current: ExternalChoice;
  /** The last reason no interface could be chosen, so it is logged once, not on every event. */
  #failing: string | undefined;

  constructor(initial: ExternalChoice, choose: () => Promise<ExternalChoice>, log: Logger) {
    this.#current = initial;
    this.#choose = choose;
    this.#log = log;
  }

  get current(): ExternalChoice {
    return this.#current;
  }

  /** Chooses again; returns the change when the interface, its index, addresses or MTU moved. */
  async refresh(): Promise<ExternalChange | undefined> {
    let after: ExternalChoice;
    try {
      after = await this.#choose();
    } catch (err) {
      const reason = errorMessage(err);
      if (reason !== this.#failing)
        this.#log.warn("cannot choose the external interface now; keeping the last choice", {
          iface: this.#current.ext.name,
          index: this.#current.ext.index,
          reason,
        });
      this.#failing = reason;
      return undefined;
    }
    const before = this.#current;
    const changes = externalChanges(before, after);
    if (this.#failing !== undefined && changes.length === 0)
      this.#log.info("the external interface is back as it was", { iface: after.ext.name });
    this.#failing = undefined;
    if (changes.length === 0) return undefined;
    this.#current = after;
    this.#log.info("external interface changed; routes and devices follow", {
      iface: after.ext.name,
      index: after.ext.index,
      ifaceIP: after.ifaceIP,
      publicIP: after.publicIP,
      changes: changes.join("; "),
    });
    return { before, after, changes };
  }
}
