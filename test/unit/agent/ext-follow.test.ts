// The external interface chosen again after start: a change is reported (and logged) once with what
// moved, a failed choice keeps the last one and is logged once, not on every netlink event.
import { expect, test } from "bun:test";
import { ExternalFollower, externalChanges } from "../../../src/agent/ext-follow.ts";
import type { ExternalChoice } from "../../../src/agent/ext-iface.ts";
import { createLogger } from "../../../src/log.ts";
import { parseCidr } from "../../../src/net/ipv4.ts";

const choice = (index: number, address: string): ExternalChoice => ({
  ext: { index, name: "eth0", mtu: 1500, addresses: [parseCidr(`${address}/24`, "keep")] },
  publicIP: address,
  ifaceIP: address,
});

test("ext follow - a new index or address is a change naming what moved; the same choice is none", async () => {
  expect(externalChanges(choice(2, "192.0.2.1"), choice(2, "192.0.2.1"))).toEqual([]);
  expect(externalChanges(choice(2, "192.0.2.1"), choice(7, "192.0.2.1"))).toEqual(["index 2 → 7"]);
  expect(externalChanges(choice(2, "192.0.2.1"), choice(2, "192.0.2.9"))).toEqual([
    "addresses 192.0.2.1/24 → 192.0.2.9/24",
    "interface IP 192.0.2.1 → 192.0.2.9",
    "PublicIP 192.0.2.1 → 192.0.2.9",
  ]);
});

test("ext follow - a failed choice keeps the last one and is logged once; the change after it is reported", async () => {
  const lines: string[] = [];
  const answers: (ExternalChoice | Error)[] = [
    new Error("no interface is named eth0"),
    new Error("no interface is named eth0"),
    choice(9, "192.0.2.1"),
    choice(9, "192.0.2.1"),
  ];
  const follower = new ExternalFollower(
    choice(2, "192.0.2.1"),
    async () => {
      const next = answers.shift();
      if (next === undefined || next instanceof Error) throw next;
      return next;
    },
    createLogger({ format: "json", write: (l) => lines.push(l) }),
  );
  expect(await follower.refresh()).toBeUndefined();
  expect(await follower.refresh()).toBeUndefined();
  expect(follower.current.ext.index).toBe(2);
  const change = await follower.refresh();
  expect(change?.changes).toEqual(["index 2 → 9"]);
  expect(follower.current.ext.index).toBe(9);
  expect(await follower.refresh()).toBeUndefined();
  const msgs = lines.map((l) => JSON.parse(l).msg as string);
  expect(msgs).toEqual([
    "cannot choose the external interface now; keeping the last choice",
    "external interface changed; routes and devices follow",
  ]);
});
