#!/usr/bin/env bun
/**
 * weft's entry point: `weft [flags]` runs the agent; subcommands are the operator's tools. Errors
 * nothing else caught are logged by the handlers of `fault-handlers.ts` (a rejection: logged, weft
 * keeps running; an uncaught exception: logged, exit 70).
 */
import { runConfig } from "./cli/config-set.ts";
import { runDoctor } from "./cli/doctor.ts";
import { runMkDockerOpts } from "./cli/mk-docker-opts.ts";
import { runAgent } from "./cli/run-agent.ts";
import { runStatus } from "./cli/status.ts";
import { VERSION } from "./cli/version.ts";
import { installFaultHandlers } from "./fault-handlers.ts";

const [command, ...rest] = process.argv.slice(2);
const env = process.env;
const faults = installFaultHandlers();

async function main(): Promise<number> {
  switch (command) {
    case "version":
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case "mk-docker-opts":
      return runMkDockerOpts(rest);
    case "config":
      return runConfig(rest, env);
    case "status":
      return runStatus(rest, env);
    case "doctor":
      return runDoctor(rest, env);
    case "plan":
      return runAgent(["--dry-run", ...rest], env, faults);
    case "demo": {
      const { runDemo } = await import("./demo/demo.ts");
      return runDemo(rest);
    }
    default:
      return runAgent(process.argv.slice(2), env, faults);
  }
}

process.exitCode = await main();
