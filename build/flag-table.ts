/**
 * Prints the README's flag compatibility table from the flag definitions (src/config/flag-table.ts),
 * so the table cannot drift from what `weft` accepts: `bun build/flag-table.ts`. A test compares the
 * README against this output.
 */
import { envName, FLAGS, UNSUPPORTED_FLAGS } from "../src/config/flag-table.ts";

export function flagTable(): string {
  const rows = [
    "| flag | environment | weft |",
    "|---|---|---|",
    ...FLAGS.filter((f) => f.origin === "flanneld").map(
      (f) =>
        `| \`--${f.name}\` | \`${envName(f.name, f.origin)}\` | as flanneld${f.defaultValue === "" ? "" : ` (default \`${f.defaultValue}\`)`} |`,
    ),
    ...UNSUPPORTED_FLAGS.map(
      (f) =>
        `| \`--${f.name}\` | \`${envName(f.name, "flanneld")}\` | ${f.ignored === true ? "accepted and ignored with a warning" : "refused with an error naming it (flanneld's default value only warns)"}: ${f.reason} |`,
    ),
    ...FLAGS.filter((f) => f.origin === "weft").map(
      (f) =>
        `| \`--${f.name}\` | \`${envName(f.name, f.origin)}\` | weft only: ${f.help}${f.defaultValue === "" ? "" : ` (default \`${f.defaultValue}\`)`} |`,
    ),
  ];
  return `${rows.join("\n")}\n`;
}

if (import.meta.main) process.stdout.write(flagTable());
