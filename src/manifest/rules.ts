import { compilePattern, normalizePattern, type PathPattern } from "./glob.js";

export type RuleAction = "include" | "exclude";
export type RuleOrigin = "default" | "manifest";

/** One line of the effective manifest: what it selects under the looker home and why. */
export interface ManifestRule {
  /** Stable name used in reports, e.g. `default:looker/log` or `manifest.yml:include[1]`. */
  readonly id: string;
  readonly action: RuleAction;
  /** Relative to the looker home; `.` is the whole home. */
  readonly pattern: string;
  /** An include rule whose path must exist (a glob must be readable where it matches; it may match nothing). */
  readonly required: boolean;
  readonly reason: string;
  readonly origin: RuleOrigin;
  /** Fixed rules cannot be overridden by a user manifest (e.g. the lock file of a running Looker). */
  readonly fixed?: boolean;
}

/** A file or directory outside the home (init script, CA-signed certificates), archived under `rootfs/`. */
export interface OutsidePath {
  readonly id: string;
  readonly path: string;
  /** Missing is an error when required; an existing but unreadable path is an error either way. */
  readonly required: boolean;
  readonly reason: string;
  readonly origin: RuleOrigin;
}

export interface Manifest {
  readonly rules: readonly ManifestRule[];
  readonly outside: readonly OutsidePath[];
}

export interface CompiledRule extends ManifestRule {
  readonly matcher: PathPattern;
  /** Depth of the literal part of the pattern: deeper rules are more specific and win. */
  readonly specificity: number;
}

export function compileRule(rule: ManifestRule): CompiledRule {
  const pattern = normalizePattern(rule.pattern);
  const isWholeHome = pattern === "." || pattern === "" || pattern === "**";
  const matcher = isWholeHome ? wholeHome : compilePattern(pattern);
  const specificity = isWholeHome ? 0 : pattern.split("/").filter((s) => s !== "**").length;
  return { ...rule, pattern: isWholeHome ? "." : pattern, matcher, specificity };
}

const wholeHome: PathPattern = {
  source: ".",
  hasWildcards: false,
  matches: () => true,
  mayMatchBelow: () => true,
};

/**
 * The rule that decides a path: fixed rules first, then the most specific pattern; on a tie the user's manifest beats
 * the defaults and, within one origin, an exclude beats an include (the cautious reading of a contradiction is
 * "the user asked for less", which never adds a file the user tried to keep out).
 */
export function decidingRule(rules: readonly CompiledRule[], path: string): CompiledRule | undefined {
  let best: CompiledRule | undefined;
  for (const rule of rules) {
    if (!rule.matcher.matches(path)) continue;
    if (best === undefined || outranks(rule, best)) best = rule;
  }
  return best;
}

function outranks(a: CompiledRule, b: CompiledRule): boolean {
  if (Boolean(a.fixed) !== Boolean(b.fixed)) return Boolean(a.fixed);
  if (a.specificity !== b.specificity) return a.specificity > b.specificity;
  if (a.origin !== b.origin) return a.origin === "manifest";
  if (a.action !== b.action) return a.action === "exclude";
  return false;
}

/** An excluded directory must still be walked when a rule that outranks its exclusion could select something inside. */
export function mustDescendExcluded(
  rules: readonly CompiledRule[],
  dir: string,
  excludedBy: CompiledRule,
): boolean {
  return rules.some(
    (rule) => rule.action === "include" && outranks(rule, excludedBy) && rule.matcher.mayMatchBelow(dir),
  );
}
