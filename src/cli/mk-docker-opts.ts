/**
 * `weft mk-docker-opts`: flannel's `dist/mk-docker-opts.sh` — turns subnet.env into Docker daemon options.
 * ```
 * weft mk-docker-opts [-f FLANNEL-ENV-FILE] [-d DOCKER-ENV-FILE] [-i] [-c] [-m] [-k COMBINED-KEY]
 * DOCKER_OPT_BIP="--bip=10.1.74.1/24"
 * DOCKER_OPT_IPMASQ="--ip-masq=true"
 * DOCKER_OPT_MTU="--mtu=1472"
 * DOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"
 * ```
 * Same options, defaults and output as the script, including its quirks: `--ip-masq` is the inverse of
 * FLANNEL_IPMASQ (flannel masquerades, so docker must not), the combined value starts with a space, and
 * a combined variable already set (in subnet.env or the environment) is kept in front.
 * Differences: a missing subnet.env is an error (the script silently writes empty options), the output is
 * written atomically, and the script's final `ip route | grep via` check (exit 1 when the routing table
 * already holds a via route for the subnet) is not replicated — it is a heuristic on the host's routes
 * that weft's own reconciler owns.
 */

import { readFile } from "node:fs/promises";
import { errorMessage, WeftError, WeftErrorCode } from "../errors.ts";
import { parseEnvText, writeFileAtomic } from "../subnet/subnet-env.ts";

/** Options of `renderDockerOpts`; with neither `individual` nor `combined`, both are written. */
export interface DockerOptsOptions {
  /** `-i`: one `DOCKER_OPT_*` variable per option. */
  readonly individual: boolean;
  /** `-c`: the combined variable. */
  readonly combined: boolean;
  /** False with `-m`: leave out `--ip-masq` (older Docker versions). */
  readonly ipMasq: boolean;
  /** `-k`: name of the combined variable. */
  readonly combinedKey: string;
  /** The combined variable's value before the script ran (the shell's `$DOCKER_OPTS`), if any. */
  readonly existingCombined?: string | undefined;
}

export const DEFAULT_SUBNET_ENV = "/run/flannel/subnet.env";
export const DEFAULT_DOCKER_ENV = "/run/docker_opts.env";

export const DEFAULT_DOCKER_OPTS_OPTIONS: DockerOptsOptions = {
  individual: false,
  combined: false,
  ipMasq: true,
  combinedKey: "DOCKER_OPTS",
};

const USAGE = `weft mk-docker-opts [-f FLANNEL-ENV-FILE] [-d DOCKER-ENV-FILE] [-i] [-c] [-m] [-k COMBINED-KEY]

Generate Docker daemon options based on flannel env file
OPTIONS:
	-f	Path to flannel env file. Defaults to ${DEFAULT_SUBNET_ENV}
	-d	Path to Docker env file to write to. Defaults to ${DEFAULT_DOCKER_ENV}
	-i	Output each Docker option as individual var. e.g. DOCKER_OPT_MTU=1500
	-c	Output combined Docker options into DOCKER_OPTS var
	-k	Set the combined options key to this value (default DOCKER_OPTS=)
	-m	Do not output --ip-masq (useful for older Docker version)
`;

/**
 * The Docker env file for the variables of a subnet.env (values as the shell would see them after
 * sourcing it). Throws `WeftError` SUBNET_ENV_INVALID when FLANNEL_IPMASQ is neither true nor false.
 */
export function renderDockerOpts(
  env: Readonly<Record<string, string | undefined>>,
  options: DockerOptsOptions = DEFAULT_DOCKER_OPTS_OPTIONS,
): string {
  const both = !options.individual && !options.combined;
  const opts: [string, string][] = [];
  const subnet = env.FLANNEL_SUBNET ?? "";
  if (subnet !== "") opts.push(["DOCKER_OPT_BIP", `--bip=${subnet}`]);
  const masq = env.FLANNEL_IPMASQ ?? "";
  if (masq !== "" && options.ipMasq) {
    if (masq !== "true" && masq !== "false") {
      throw new WeftError(WeftErrorCode.SubnetEnvInvalid, `Invalid value of FLANNEL_IPMASQ: ${masq}`, {
        field: "FLANNEL_IPMASQ",
        value: masq,
      });
    }
    opts.push(["DOCKER_OPT_IPMASQ", `--ip-masq=${masq === "true" ? "false" : "true"}`]);
  }
  const mtu = env.FLANNEL_MTU ?? "";
  if (mtu !== "") opts.push(["DOCKER_OPT_MTU", `--mtu=${mtu}`]);

  let combined = options.existingCombined ? `${options.existingCombined} ` : "";
  let out = "";
  for (const [name, value] of opts) {
    if (options.individual || both) out += `${name}="${value}"\n`;
    combined += ` ${value}`;
  }
  if (options.combined || both) out += `${options.combinedKey}="${combined}"\n`;
  return out;
}

/** Where `runMkDockerOpts` reads the environment and writes messages; the process's by default. */
export interface MkDockerOptsIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stderr: (text: string) => void;
}

interface Invocation {
  readonly subnetEnv: string;
  readonly dockerEnv: string;
  readonly options: DockerOptsOptions;
  readonly help: boolean;
}

/** getopts "f:d:icmk:?h": clustered (`-ic`), attached (`-fFILE`) or separate (`-f FILE`) values. */
function parseArgs(argv: readonly string[]): Invocation {
  let subnetEnv = DEFAULT_SUBNET_ENV;
  let dockerEnv = DEFAULT_DOCKER_ENV;
  let options: DockerOptsOptions = DEFAULT_DOCKER_OPTS_OPTIONS;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") {
      if (i + 1 < argv.length) throw usageError(`unexpected argument "${argv[i + 1]}"`);
      break;
    }
    if (!arg.startsWith("-") || arg === "-") throw usageError(`unexpected argument "${arg}"`);
    for (let j = 1; j < arg.length; j++) {
      const letter = arg[j] ?? "";
      if (letter === "h" || letter === "?") return { subnetEnv, dockerEnv, options, help: true };
      if (letter === "i") options = { ...options, individual: true };
      else if (letter === "c") options = { ...options, combined: true };
      else if (letter === "m") options = { ...options, ipMasq: false };
      else if (letter === "f" || letter === "d" || letter === "k") {
        let value = arg.slice(j + 1);
        if (value === "") {
          const next = argv[i + 1];
          if (next === undefined) throw usageError(`option requires an argument -- ${letter}`);
          value = next;
          i++;
        }
        if (letter === "f") subnetEnv = value;
        else if (letter === "d") dockerEnv = value;
        else if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(value)) {
          throw usageError(`-k ${JSON.stringify(value)}: the combined key must be a shell variable name`);
        } else options = { ...options, combinedKey: value };
        break;
      } else throw usageError(`illegal option -- ${letter}`);
    }
  }
  return { subnetEnv, dockerEnv, options, help: false };
}

function usageError(message: string): WeftError {
  return new WeftError(WeftErrorCode.FlagInvalid, `mk-docker-opts: ${message}`);
}

const processIo: MkDockerOptsIo = {
  env: process.env,
  stderr: (text) => {
    process.stderr.write(text);
  },
};

/**
 * Run `weft mk-docker-opts` with `argv` (the arguments after the subcommand). Returns the exit code:
 * 0 on success (and for -h), 1 on a usage error, a missing or unusable subnet.env, or a write failure.
 */
export async function runMkDockerOpts(
  argv: readonly string[],
  io: MkDockerOptsIo = processIo,
): Promise<number> {
  let invocation: Invocation;
  try {
    invocation = parseArgs(argv);
  } catch (err) {
    io.stderr(`${errorMessage(err)}\n\n${USAGE}`);
    return 1;
  }
  if (invocation.help) {
    io.stderr(USAGE);
    return 0;
  }
  const { subnetEnv, dockerEnv, options } = invocation;
  let text: string;
  try {
    text = await readFile(subnetEnv, "utf8");
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
    io.stderr(
      missing
        ? `mk-docker-opts: ${subnetEnv} does not exist; start weft first (it writes this file once it holds a subnet lease), or pass -f <file>\n`
        : `mk-docker-opts: cannot read ${subnetEnv}: ${errorMessage(err)}\n`,
    );
    return 1;
  }
  const file = parseEnvText(text);
  for (const issue of file.ignored) {
    io.stderr(`mk-docker-opts: ${subnetEnv} line ${issue.line} ignored: ${issue.reason}\n`);
  }
  if ((file.values.FLANNEL_SUBNET ?? "") === "") {
    io.stderr(`mk-docker-opts: warning: ${subnetEnv} has no FLANNEL_SUBNET; docker gets no --bip\n`);
  }
  try {
    const existing = file.values[options.combinedKey] ?? io.env[options.combinedKey];
    const output = renderDockerOpts(file.values, { ...options, existingCombined: existing });
    await writeFileAtomic(dockerEnv, output, 0o644);
  } catch (err) {
    io.stderr(`mk-docker-opts: ${errorMessage(err)}\n`);
    return 1;
  }
  return 0;
}
