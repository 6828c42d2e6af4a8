/**
 * Server answers quoted in error messages: at most a couple of hundred characters, whatever the server
 * sent. The JSON preview writes only as much as it shows, so an answer nested 100,000 levels deep or a
 * list of a million entries costs no more than a small one (JSON.stringify would recurse through all
 * of it, overflow the stack and take most of a second doing so).
 */

/** At most `max` characters of `text`. */
export function preview(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** At most `max` characters of `value` as JSON. */
export function previewJson(value: unknown, max = 200): string {
  let out = "";
  // Each level writes at least one character, so this stops within `max` levels.
  const write = (v: unknown): boolean => {
    if (typeof v === "string") out += JSON.stringify(v.slice(0, max + 1));
    else if (typeof v !== "object" || v === null) out += String(JSON.stringify(v));
    else if (Array.isArray(v)) {
      out += "[";
      for (let i = 0; i < v.length && out.length <= max; i++) {
        if (i > 0) out += ",";
        if (!write(v[i])) return false;
      }
      out += "]";
    } else {
      out += "{";
      let first = true;
      for (const key of Object.keys(v)) {
        if (out.length > max) return false;
        out += `${first ? "" : ","}${JSON.stringify(key.slice(0, max + 1))}:`;
        first = false;
        if (!write((v as Record<string, unknown>)[key])) return false;
      }
      out += "}";
    }
    return out.length <= max;
  };
  write(value);
  return preview(out, max);
}
