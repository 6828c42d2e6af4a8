/**
 * `weft config set [store flags] < net-conf.json`: validates a network config and writes it to
 * `<prefix>/config` (like `etcdctl put /coreos.com/network/config`), so an invalid config never reaches
 * the agents. `weft config get` prints the stored one.
 */
import { parseFlags } from "../config/flags.ts";
import { parseNetworkConfig } from "../config/network-config.ts";
import { errorMessage } from "../errors.ts";
import { configKey, storeFromFlags } from "./store-from-flags.ts";

export async function runConfig(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb !== "set" && verb !== "get") {
    process.stderr.write(
      "usage: weft config set [--store=… --store-endpoints=… --etcd-prefix=…] < net-conf.json\n       weft config get [store flags]\n",
    );
    return verb === "-h" || verb === "--help" ? 0 : 1;
  }
  let store: ReturnType<typeof storeFromFlags> | undefined;
  try {
    const flags = parseFlags(rest, env);
    const key = configKey(flags.etcdPrefix);
    store = storeFromFlags(flags);
    if (verb === "get") {
      const kv = await store.get(key);
      if (kv === undefined) {
        process.stderr.write(`no network config at ${key}\n`);
        return 1;
      }
      process.stdout.write(`${kv.value}\n`);
      return 0;
    }
    const text = await Bun.stdin.text();
    const { warnings } = parseNetworkConfig(text);
    for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
    const value = text.trim();
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await store.get(key);
      try {
        if (current === undefined) await store.create(key, value);
        else await store.update(key, value, { expectRevision: current.revision });
        process.stderr.write(`wrote network config to ${key}\n`);
        return 0;
      } catch (err) {
        if (attempt === 4) throw err;
      }
    }
    return 1;
  } catch (err) {
    process.stderr.write(`weft config ${verb}: ${errorMessage(err)}\n`);
    return 1;
  } finally {
    await store?.close();
  }
}
