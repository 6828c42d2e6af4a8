/**
 * Go `encoding/json` field matching for a JSON object decoded into a struct: a key matches a field by
 * exact name first, else case-insensitively; when several keys land on one field the last one wins;
 * `null` leaves the field as it was (a no-op, like Go for plain fields); unknown keys are ignored. weft reports the ignored and the
 * overridden keys as warnings instead of staying silent.
 */

/** The fields of one JSON object renamed to their canonical struct names. */
export interface MatchedFields<K extends string> {
  /** Canonical field name → value, without `null`s. */
  readonly fields: Partial<Record<K, unknown>>;
  /** The key each field was read from, as written (for messages). */
  readonly spelledAs: Partial<Record<K, string>>;
  readonly warnings: readonly string[];
}

/**
 * Rename the keys of `input` to the canonical names in `known` like Go's encoding/json does.
 * `where` prefixes warnings (`network config`, `network config: Backend`).
 */
export function matchFields<K extends string>(
  input: Readonly<Record<string, unknown>>,
  known: readonly K[],
  where: string,
): MatchedFields<K> {
  const fields: Partial<Record<K, unknown>> = {};
  const spelledAs: Partial<Record<K, string>> = {};
  const seen = new Map<K, string>();
  const warnings: string[] = [];
  for (const [key, value] of Object.entries(input)) {
    const field = known.find((name) => name === key) ?? known.find((name) => equalFold(name, key));
    if (field === undefined) {
      const hint = suggest(key, known);
      warnings.push(
        `${where}: unknown field "${key}" is ignored${hint === undefined ? "" : ` (did you mean "${hint}"?)`}`,
      );
      continue;
    }
    const earlier = seen.get(field);
    if (earlier !== undefined) {
      warnings.push(
        `${where}: field ${field} is given twice (as "${earlier}" and "${key}"); the last one wins`,
      );
    }
    seen.set(field, key);
    if (value === null) continue;
    fields[field] = value;
    spelledAs[field] = key;
  }
  return { fields, spelledAs, warnings };
}

function equalFold(a: string, b: string): boolean {
  return a.length === b.length && a.toLowerCase() === b.toLowerCase();
}

/** The candidate closest to `name` (edit distance ≤ 2, ignoring case), if any: for "did you mean". */
export function suggest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
