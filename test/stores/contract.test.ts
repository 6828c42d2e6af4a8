/**
 * Runs the store contract suite against every driver on a real server. `STORES=etcd,sqlite` narrows
 * the run to those drivers.
 */

import { describe } from "bun:test";
import { type StoreName, storeNames } from "../../stores/store.ts";
import { type ContractFixture, runStoreContract } from "./contract.ts";
import { consulFixture } from "./fixtures/consul-fixture.ts";
import { etcd2Fixture, etcdFixture, etcdGatewayFixture } from "./fixtures/etcd-fixture.ts";
import { nats29Fixture, natsFixture } from "./fixtures/nats-fixture.ts";
import { sqliteFixture } from "./fixtures/sqlite-fixture.ts";

const selected = (process.env.STORES ?? storeNames.join(","))
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "");
for (const name of selected) {
  if (!(storeNames as readonly string[]).includes(name)) {
    throw new Error(`STORES names unknown store "${name}"; known: ${storeNames.join(", ")}`);
  }
}

/** One fixture per store; a new driver adds its own file under fixtures/ and a line here. */
const fixtures: Record<StoreName, () => Promise<ContractFixture>> = {
  etcd: etcdFixture,
  etcd2: etcd2Fixture,
  consul: consulFixture,
  nats: natsFixture,
  sqlite: sqliteFixture,
};

for (const name of selected as StoreName[]) runStoreContract(name, fixtures[name]);
// etcd again with lists through the JSON gateway only (the default lists over gRPC).
if (selected.includes("etcd")) describe("etcd-gateway", () => runStoreContract("etcd", etcdGatewayFixture));
// NATS again on Debian's 2.9 (agents sweep expiry); the label stays "nats", the store it opens.
if (selected.includes("nats")) describe("nats-2.9", () => runStoreContract("nats", nats29Fixture));
