/**
 * Path patterns of the manifest: paths relative to the looker home (or absolute outside it) whose segments may use
 * `*` and `?` (within one segment) and `**` (any number of segments). A pattern names a subtree: it matches the path
 * itself and everything below it, as in Looker's guide ("back up `looker/deploy_keys`").
 */
export interface PathPattern {
  readonly source: string;
  /** Matches the pattern's own paths and anything below them. */
  readonly matches: (path: string) => boolean;
  /** True when some path below `dir` could match, so a walker must descend into `dir` to find it. */
  readonly mayMatchBelow: (dir: string) => boolean;
  readonly hasWildcards: boolean;
}

export function compilePattern(source: string): PathPattern {
  const normalized = normalizePattern(source);
  const segments = normalized.split("/");
  const body = segments
    .map(segmentToRegex)
    .join("/")
    .replace(/\/\(\?:\.\*\)$/, "(?:/.*)?");
  const subtree = new RegExp(`^${body}(?:/.*)?$`, "s");
  const hasWildcards = /[*?]/.test(normalized);
  return {
    source,
    hasWildcards,
    matches: (path) => subtree.test(path),
    mayMatchBelow: (dir) => prefixCouldMatch(segments, dir.split("/")),
  };
}

/** Strips `./`, duplicate and trailing slashes; manifest authors write paths in many ways. */
export function normalizePattern(source: string): string {
  return source
    .trim()
    .replace(/^\.\//, "")
    .replace(/\/{2,}/g, "/")
    .replace(/(.)\/$/, "$1");
}

function segmentToRegex(segment: string): string {
  if (segment === "**") return "(?:.*)";
  let out = "";
  for (const ch of segment) {
    if (ch === "*") out += "[^/]*";
    else if (ch === "?") out += "[^/]";
    else out += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return out;
}

/** Whether the first segments of a pattern can match all of `dirSegments`, so deeper paths may still match. */
function prefixCouldMatch(patternSegments: string[], dirSegments: string[]): boolean {
  for (let i = 0; i < dirSegments.length; i++) {
    const pattern = patternSegments[i];
    if (pattern === undefined) return true; // the pattern's subtree contains dir
    if (pattern === "**") return true;
    const re = new RegExp(`^${segmentToRegex(pattern)}$`, "s");
    if (!re.test(dirSegments[i] ?? "")) return false;
  }
  return true;
}
