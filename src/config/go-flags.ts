/**
 * Command-line and environment reading with the exact syntax of Go's `flag` package (which flanneld uses)
 * and coreos/pkg `flagutil.SetFlagsFromEnv`:
 * - `-name`, `--name`, `-name=value`, `--name=value`, `--name value` (not for booleans: `--ip-masq false`
 *   is not a value), `--` ends the flags; names are case-sensitive; a repeated scalar flag: last wins.
 * - Environment: a flag not given on the command line takes its variable's value when it is not empty;
 *   a repeatable flag takes exactly one value from the environment.
 * Unlike Go, a positional argument is an error (flanneld ignores it silently).
 * glog's flags of older flanneld releases (`-logtostderr=true` in old guides) are checked as Go would
 * and reported together in one notice; weft always logs to stderr.
 * Values are kept as text here; `flags.ts` converts and validates them.
 */

import { WeftError, WeftErrorCode } from "../errors.ts";
import { envName, FLAGS, type FlagSpec, UNSUPPORTED_FLAGS, type UnsupportedFlagSpec } from "./flag-table.ts";
import { suggest } from "./json-fields.ts";

/** Where a flag's value came from. */
export type FlagSource =
  | { readonly from: "default" }
  | { readonly from: "cli" }
  | { readonly from: "env"; readonly variable: string };

/** The flags as text, before conversion. */
export interface RawFlags {
  /** Values of the flags that were given, in order (scalars use the last). */
  readonly values: ReadonlyMap<string, readonly string[]>;
  /** Source of every given flag; absent means default. */
  readonly sources: ReadonlyMap<string, FlagSource>;
  /** `-h`, `-help` or `--help` was given (parsing stopped there, as in Go). */
  readonly help: boolean;
  readonly warnings: readonly string[];
}

/** Go's `strconv.ParseBool`: `1 t T TRUE true True` / `0 f F FALSE false False`, else undefined. */
export function parseGoBool(text: string): boolean | undefined {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(text)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(text)) return false;
  return undefined;
}

const SPECS = new Map<string, FlagSpec>(FLAGS.map((spec) => [spec.name, spec]));
const UNSUPPORTED = new Map<string, UnsupportedFlagSpec>(UNSUPPORTED_FLAGS.map((spec) => [spec.name, spec]));
/** flanneld checks --version before it reads the environment, so FLANNELD_VERSION does nothing. */
const NOT_FROM_ENV = new Set(["version"]);

function flagInvalid(message: string, field: string, value?: string): WeftError {
  return new WeftError(WeftErrorCode.FlagInvalid, message, { field, value });
}

/** Read `argv` (without the program name) and `env` into text values per flag. */
export function readRawFlags(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): RawFlags {
  const values = new Map<string, string[]>();
  const sources = new Map<string, FlagSource>();
  const warnings: string[] = [];
  /** glog flags given, reported together in one notice. */
  const glog: string[] = [];

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") {
      const rest = argv.slice(i + 1);
      if (rest.length > 0) throw unexpectedArgument(rest[0] ?? "");
      break;
    }
    if (arg.length < 2 || !arg.startsWith("-")) throw unexpectedArgument(arg);
    const dashes = arg.startsWith("--") ? "--" : "-";
    const body = arg.slice(dashes.length);
    if (body === "" || body.startsWith("-") || body.startsWith("=")) {
      throw flagInvalid(`bad flag syntax: ${clip(arg)}`, clip(arg), arg);
    }
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    const inline = eq < 0 ? undefined : body.slice(eq + 1);
    if (name === "help" || name === "h") return { values, sources, help: true, warnings };

    const spec = SPECS.get(name);
    const unsupported = UNSUPPORTED.get(name);
    if (spec === undefined && unsupported === undefined) {
      const hint = suggest(name, [...SPECS.keys()]);
      throw new WeftError(
        WeftErrorCode.FlagUnknown,
        `unknown flag ${dashes}${clip(name)}${hint === undefined ? "" : ` (did you mean --${hint}?)`}; see weft --help`,
        { field: `${dashes}${clip(name)}` },
      );
    }
    const kind = spec?.kind ?? unsupported?.kind;
    let value = inline;
    if (value === undefined) {
      if (kind === "bool") value = "true";
      else {
        const next = argv[i + 1];
        if (next === undefined) throw flagInvalid(`flag ${dashes}${name} needs a value`, `--${name}`);
        value = next;
        i++;
      }
    }
    if (unsupported?.glog === true) {
      const rule = glogRule(unsupported, value);
      if (rule !== undefined)
        throw flagInvalid(`${dashes}${name}=${clip(value)}: ${rule}`, `--${name}`, value);
      glog.push(`${dashes}${name}${inline === undefined && kind === "bool" ? "" : `=${clip(value)}`}`);
      continue;
    }
    if (unsupported !== undefined) {
      warnings.push(...checkUnsupported(unsupported, value, `${dashes}${name}=${clip(value)}`));
      continue;
    }
    const list = values.get(name) ?? [];
    list.push(value);
    values.set(name, list);
    sources.set(name, { from: "cli" });
  }

  for (const spec of FLAGS) {
    if (values.has(spec.name) || NOT_FROM_ENV.has(spec.name)) continue;
    const variable = envName(spec.name, spec.origin);
    const value = env[variable];
    if (value === undefined || value === "") continue;
    values.set(spec.name, [value]);
    sources.set(spec.name, { from: "env", variable });
  }
  for (const spec of UNSUPPORTED_FLAGS) {
    const variable = envName(spec.name, "flanneld");
    const value = env[variable];
    if (value === undefined || value === "") continue;
    if (spec.glog === true) {
      const rule = glogRule(spec, value);
      if (rule === undefined) glog.push(`${variable}=${clip(value)}`);
      else warnings.push(`${variable}=${clip(value)} (--${spec.name}): ${rule}; ignored`);
      continue;
    }
    warnings.push(...checkUnsupported(spec, value, `${variable}=${clip(value)} (--${spec.name})`));
  }
  if (glog.length > 0) {
    warnings.push(
      `${glog.join(" ")}: accepted for older flanneld command lines and ignored; weft always logs to stderr`,
    );
  }
  return { values, sources, help: false, warnings };
}

/** Why a glog flag's value would stop Go's flag package, or `undefined` when it is valid. */
function glogRule(spec: UnsupportedFlagSpec, value: string): string | undefined {
  if (spec.kind === "bool") return parseGoBool(value) === undefined ? "must be true or false" : undefined;
  return spec.check?.(value);
}

/**
 * A Go (RE2) regular expression as a JavaScript RegExp, for `--iface-regex`. RE2's syntax is close to a
 * subset of JavaScript's; the difference people write is a leading flag group, `(?i)^ETH`, which becomes
 * RegExp flags. Throws SyntaxError for an invalid pattern or the ungreedy flag `U`.
 */
export function goRegExp(pattern: string): RegExp {
  const lead = /^\(\?([imsU]+)\)/.exec(pattern);
  if (lead === null) return new RegExp(pattern);
  const flags = lead[1] ?? "";
  if (flags.includes("U")) throw new SyntaxError("Go's ungreedy flag (?U) has no JavaScript equivalent");
  return new RegExp(pattern.slice(lead[0].length), [...new Set(flags)].join(""));
}

/** Warnings for a harmless use of an unsupported flag; throws FLAG_UNKNOWN for a use that matters. */
function checkUnsupported(spec: UnsupportedFlagSpec, value: string, shown: string): string[] {
  if (spec.ignored === true) return [`${shown}: ignored by weft (${spec.reason})`];
  const isDefault =
    spec.kind === "bool"
      ? parseGoBool(value) !== undefined && parseGoBool(value) === parseGoBool(spec.defaultValue)
      : value === spec.defaultValue;
  if (isDefault)
    return [`${shown}: weft does not support --${spec.name}; ignored since it is flanneld's default`];
  throw new WeftError(
    WeftErrorCode.FlagUnknown,
    `${shown}: --${spec.name} is a flanneld flag that weft does not support (${spec.reason})`,
    { field: `--${spec.name}`, value },
  );
}

function unexpectedArgument(arg: string): WeftError {
  return flagInvalid(
    `unexpected argument "${clip(arg)}": weft takes only flags (and the subcommand mk-docker-opts first); see weft --help`,
    clip(arg),
    arg,
  );
}

/** At most 200 characters of a command-line text, for a message (a value may be of any length). */
function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}… (${text.length} characters)` : text;
}
