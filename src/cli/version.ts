/** The version string: package.json's version, plus the build's git commit when the build sets it. */
import pkg from "../../package.json" with { type: "json" };

declare const WEFT_COMMIT: string | undefined;

const commit = typeof WEFT_COMMIT === "string" ? WEFT_COMMIT : "dev";
export const VERSION = `weft ${pkg.version} (${commit})`;
