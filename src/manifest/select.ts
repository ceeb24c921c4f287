import { type Dirent, lstatSync, type Stats } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import { InputError, LookerBackupError } from "../errors.js";
import { fsPath, printableName, readdirNames, readdirNamesAsync } from "../runtime/byte-names.js";
import {
  type CompiledRule,
  compileRule,
  decidingRule,
  type Manifest,
  type ManifestRule,
  mustDescendExcluded,
  type OutsidePath,
} from "./rules.js";

export type EntryType = "file" | "directory" | "symlink";

/**
 * A path chosen for the archive, with the metadata seen when it was chosen: a file's header is written from it, and
 * pack compares it with the open file's after reading.
 */
export interface SelectedEntry {
  /** `home/<relative>` (the home itself is `home/`) or `rootfs/<absolute path without the leading slash>`. */
  readonly archivePath: string;
  readonly sourcePath: string;
  readonly type: EntryType;
  readonly stats: EntryStats;
  readonly ruleId: string;
  /** A required path whose read failure is an error, not a warning. */
  readonly required: boolean;
}

/**
 * The metadata an archive needs of a path, copied out of fs.Stats: a home can hold 100,000 entries, and a full Stats
 * object per entry (14 boxed numbers and more) made the selection alone cost about 1.2 KB of heap per path.
 */
export interface EntryStats {
  readonly size: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtimeMs: number;
  /** Changes with any change to the file, its metadata included: the backup tells by it that a file changed. */
  readonly ctimeMs: number;
  readonly dev: number;
  readonly ino: number;
  readonly nlink: number;
  /** 512-byte blocks allocated: fewer than the size needs means the file may have holes (archive/sparse.ts). */
  readonly blocks: number;
}

export interface RuleTally {
  readonly id: string;
  readonly action: "include" | "exclude" | "outside";
  readonly pattern: string;
  readonly reason: string;
  readonly required: boolean;
  files: number;
  bytes: number;
  /** Top-level paths this rule decided (for excludes: the paths left out). */
  readonly paths: string[];
}

export interface SkippedPath {
  readonly path: string;
  readonly reason: string;
}

export interface Selection {
  readonly home: string;
  readonly entries: SelectedEntry[];
  readonly tallies: RuleTally[];
  /** Paths that exist but cannot go into an archive (sockets, FIFOs, devices) or could not be read. */
  readonly skipped: SkippedPath[];
}

export interface SelectOptions {
  readonly home: string;
  readonly manifest: Manifest;
  /** Walk excluded subtrees to report their size (for `plan`; a backup need not pay for it). */
  readonly countExcluded?: boolean;
  /**
   * Home-relative directories read from elsewhere: a consistent copy of `looker/.db` taken while Looker was stopped
   * is archived under its real name while Looker already runs again.
   */
  readonly substitutes?: ReadonlyMap<string, string>;
}

const STAT_BATCH = 64;
/** Entries handed to the consumer at a time while the walk goes on (see streamSelection). */
const WALK_BATCH = 256;

/** What a selection found besides its entries; complete once the walk has ended. */
export interface SelectionSummary {
  readonly home: string;
  readonly tallies: RuleTally[];
  readonly skipped: SkippedPath[];
}

export interface SelectionStream {
  /** The entries in archive order, a batch at a time, walked as they are asked for. */
  readonly batches: AsyncIterable<readonly SelectedEntry[]>;
  /** Filled in as the walk goes; complete when `batches` has ended. */
  readonly summary: SelectionSummary;
}

/**
 * Walks the home as the consumer asks for entries, so a backup reads and compresses files while the rest of the
 * tree is still being listed, and holds a batch of entries rather than the whole tree (measured: walking 20,000
 * entries took ~0.25-0.3 s before the first byte was read, while the zstd threads had nothing to do).
 * A missing required path still fails the walk, and so the backup, before anything is stored.
 */
export function streamSelection(options: SelectOptions): SelectionStream {
  const rules = options.manifest.rules.map(compileRule);
  const tallies = new Map<string, RuleTally>();
  for (const rule of rules) tallies.set(rule.id, tallyFor(rule));
  for (const outside of options.manifest.outside) tallies.set(outside.id, outsideTally(outside));
  const walker = new Walker(
    options.home,
    rules,
    tallies,
    options.countExcluded ?? false,
    options.substitutes,
  );
  const summary = { home: options.home, tallies: [...tallies.values()], skipped: walker.skipped };
  async function* batches(): AsyncGenerator<readonly SelectedEntry[]> {
    yield* walker.walkHome();
    checkRequiredRules(rules, walker.seenPaths, options.home);
    for (const outside of options.manifest.outside) yield* walker.walkOutside(outside);
    const rest = walker.takeBatch();
    if (rest.length > 0) yield rest;
  }
  return { batches: batches(), summary };
}

/**
 * The selection measured without holding its entries, excluded subtrees included: what `plan` reports, and what a
 * backup's preflight knows before Looker is touched (the total its progress counts against, and the exclusions its
 * job summary lists, the same numbers as plan's).
 */
export interface SelectionMeasure extends SelectionSummary {
  /** The files a backup would read, and their bytes. */
  readonly files: number;
  readonly bytes: number;
}

export async function measureSelection(
  options: Omit<SelectOptions, "countExcluded">,
): Promise<SelectionMeasure> {
  const { batches, summary } = streamSelection({ ...options, countExcluded: true });
  let files = 0;
  let bytes = 0;
  for await (const batch of batches) {
    for (const entry of batch) {
      if (entry.type !== "file") continue;
      files++;
      bytes += entry.stats.size;
    }
  }
  return { ...summary, files, bytes };
}

/** The whole selection at once (for tests). */
export async function selectFiles(options: SelectOptions): Promise<Selection> {
  const { batches, summary } = streamSelection(options);
  const entries: SelectedEntry[] = [];
  for await (const batch of batches) entries.push(...batch);
  return { ...summary, entries };
}

function tallyFor(rule: ManifestRule): RuleTally {
  return { ...pick(rule), files: 0, bytes: 0, paths: [] };
}

function pick(rule: ManifestRule) {
  return {
    id: rule.id,
    action: rule.action,
    pattern: rule.pattern,
    reason: rule.reason,
    required: rule.required,
  };
}

function outsideTally(outside: OutsidePath): RuleTally {
  const base = { id: outside.id, action: "outside" as const, pattern: outside.path, reason: outside.reason };
  return { ...base, required: outside.required, files: 0, bytes: 0, paths: [] };
}

/** Where the walk goes after visiting a path: into it (with the rule that decided it), or not. */
type Descend = { readonly rule: CompiledRule | undefined } | undefined;

class Walker {
  private batch: SelectedEntry[] = [];
  readonly skipped: SkippedPath[] = [];
  /** Required include patterns that exist and were decided "include", for the required-path check. */
  readonly seenPaths = new Set<string>();
  /** The only paths seenPaths needs: remembering every included path cost ~100 bytes of heap a path. */
  private readonly requiredPatterns: ReadonlySet<string>;
  /** The home, normalised, and with a trailing "/" to put names after. */
  private readonly homeDir: string;
  private readonly homePrefix: string;

  constructor(
    private readonly home: string,
    private readonly rules: readonly CompiledRule[],
    private readonly tallies: Map<string, RuleTally>,
    private readonly countExcluded: boolean,
    private readonly substitutes: ReadonlyMap<string, string> = new Map(),
  ) {
    this.requiredPatterns = new Set(rules.filter((rule) => rule.required).map((rule) => rule.pattern));
    this.homeDir = join(home, ".");
    this.homePrefix = this.homeDir.endsWith("/") ? this.homeDir : `${this.homeDir}/`;
  }

  takeBatch(): SelectedEntry[] {
    const batch = this.batch;
    this.batch = [];
    return batch;
  }

  /** Where a home-relative path is read from: the home, or a substitute directory standing in for a subtree. */
  private absolute(relative: string): string {
    if (this.substitutes.size > 0) {
      for (const [dir, replacement] of this.substitutes) {
        if (relative === dir) return replacement;
        if (relative.startsWith(`${dir}/`)) return join(replacement, relative.slice(dir.length + 1));
      }
    }
    // Names from readdir hold no "/" or "..": a plain concatenation is what join would give, without its
    // normalising pass over the whole path (once per entry, a twentieth of the walk's allocations).
    if (relative === "") return this.homeDir;
    return `${this.homePrefix}${relative}`;
  }

  async *walkHome(): AsyncGenerator<SelectedEntry[]> {
    let stats: Stats;
    try {
      stats = await lstat(this.home);
    } catch (error) {
      throw new InputError(
        `cannot read the looker home ${this.home}: ${(error as Error).message}`,
        "pass the home of the looker user (e.g. /home/looker) with --home",
      );
    }
    if (!stats.isDirectory())
      throw new InputError(`the looker home ${this.home} is not a directory`, "check --home");
    const homeRule = decidingRule(this.rules, ".");
    this.batch.push(entry("home/", this.home, "directory", stats, homeRule?.id ?? "default:.", false));
    yield* this.walkDirectory("", homeRule);
  }

  private async *walkDirectory(
    relativeDir: string,
    parentRule: CompiledRule | undefined,
  ): AsyncGenerator<SelectedEntry[]> {
    const absoluteDir = this.absolute(relativeDir);
    let names: string[];
    try {
      names = readdirNames(absoluteDir);
    } catch (error) {
      this.unreadable(relativeDir || ".", absoluteDir, parentRule, error);
      return;
    }
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of names) {
      const relative = relativeDir ? `${relativeDir}/${name}` : name;
      const absolute = this.absolute(relative);
      const descend = await this.visit(relative, absolute, lstatOrError(absolute), parentRule);
      if (this.batch.length >= WALK_BATCH) yield this.takeBatch();
      if (descend !== undefined) yield* this.walkDirectory(relative, descend.rule);
    }
  }

  private async visit(
    relative: string,
    absolute: string,
    stats: Stats | Error,
    parentRule: CompiledRule | undefined,
  ): Promise<Descend> {
    const rule = decidingRule(this.rules, relative);
    if (stats instanceof Error) {
      // Vanished between readdir and lstat: a live home changes under us; the report says so. Anything else means a
      // name listed cannot be read back, and a backup that leaves it out would lose it silently.
      if ((stats as NodeJS.ErrnoException).code === "ENOENT") {
        this.skipped.push({
          path: `home/${relative}`,
          reason: "vanished while listing (deleted during the backup)",
        });
        return undefined;
      }
      throw new LookerBackupError(`cannot archive home/${printableName(relative)}: ${stats.message}`, {
        hint: "the backup stops rather than leave this path out; fix its permissions or name, or exclude it in the manifest",
      });
    }
    if (rule?.action === "exclude") return this.excluded(relative, stats, rule);
    const type = entryType(stats);
    if (type === undefined) {
      this.skipped.push({ path: `home/${relative}`, reason: `${describeSpecial(stats)} cannot be archived` });
      return undefined;
    }
    const ruleId = rule?.id ?? "default:.";
    const required = Boolean(rule?.required);
    const archivePath = type === "directory" ? `home/${relative}/` : `home/${relative}`;
    this.batch.push(entry(archivePath, absolute, type, stats, ruleId, required));
    if (this.requiredPatterns.has(relative)) this.seenPaths.add(relative);
    this.count(ruleId, relative, parentRule, type === "file" ? stats.size : 0, type !== "directory");
    return type === "directory" ? { rule } : undefined;
  }

  private async excluded(relative: string, stats: Stats, rule: CompiledRule): Promise<Descend> {
    const tally = this.tallies.get(rule.id);
    tally?.paths.push(relative);
    if (stats.isDirectory()) {
      if (mustDescendExcluded(this.rules, relative, rule)) return { rule };
      if (this.countExcluded && tally) {
        const size = await measureTree(this.absolute(relative));
        tally.files += size.files;
        tally.bytes += size.bytes;
      }
    } else if (tally) {
      tally.files += 1;
      tally.bytes += stats.isFile() ? stats.size : 0;
    }
    return undefined;
  }

  private count(
    ruleId: string,
    relative: string,
    parentRule: CompiledRule | undefined,
    bytes: number,
    isFile: boolean,
  ) {
    const tally = this.tallies.get(ruleId);
    if (!tally) return;
    if (parentRule?.id !== ruleId) tally.paths.push(relative);
    if (isFile) {
      tally.files += 1;
      tally.bytes += bytes;
    }
  }

  private unreadable(
    relative: string,
    absolute: string,
    rule: CompiledRule | undefined,
    error: unknown,
  ): void {
    const message = `cannot read ${absolute}: ${(error as Error).message}`;
    if (rule?.required) {
      throw new InputError(message, "run the backup as root or as the looker user, or fix the permissions");
    }
    this.skipped.push({ path: `home/${relative}`, reason: message });
  }

  async *walkOutside(outside: OutsidePath): AsyncGenerator<SelectedEntry[]> {
    let stats: Stats;
    try {
      stats = await lstat(outside.path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" && !outside.required) return;
      throw new InputError(
        `cannot read ${outside.path} (${outside.id}): ${(error as Error).message}`,
        outside.required
          ? "restore the file, correct the path, or mark it `required: false` in the manifest"
          : "fix the permissions or remove it from the manifest",
        error,
      );
    }
    const tally = this.tallies.get(outside.id)!;
    tally.paths.push(outside.path);
    yield* this.addOutsideTree(outside, outside.path, stats, tally);
  }

  private async *addOutsideTree(
    outside: OutsidePath,
    path: string,
    stats: Stats,
    tally: RuleTally,
  ): AsyncGenerator<SelectedEntry[]> {
    const type = entryType(stats);
    const archiveBase = `rootfs/${path.replace(/^\/+/, "")}`;
    if (type === undefined) {
      this.skipped.push({ path: archiveBase, reason: `${describeSpecial(stats)} cannot be archived` });
      return;
    }
    const archivePath = type === "directory" ? `${archiveBase}/` : archiveBase;
    this.batch.push(entry(archivePath, path, type, stats, outside.id, outside.required));
    if (type !== "directory") {
      tally.files += 1;
      tally.bytes += type === "file" ? stats.size : 0;
      return;
    }
    const names = (await readdirNamesAsync(path)).sort();
    for (const name of names) {
      const child = join(path, name);
      yield* this.addOutsideTree(outside, child, await lstat(fsPath(child)), tally);
      if (this.batch.length >= WALK_BATCH) yield this.takeBatch();
    }
  }
}

/**
 * Synchronous on purpose: a home is walked from the page cache (dentries), where lstat costs a couple of
 * microseconds; through the libuv thread pool each one costs several times that in thread hand-offs.
 */
function lstatOrError(path: string): Stats | Error {
  try {
    return lstatSync(fsPath(path));
  } catch (error) {
    return error as Error;
  }
}

function entry(
  archivePath: string,
  sourcePath: string,
  type: EntryType,
  stats: Stats,
  ruleId: string,
  required: boolean,
): SelectedEntry {
  const { size, mode, uid, gid, mtimeMs, ctimeMs, dev, ino, nlink, blocks } = stats;
  return {
    archivePath,
    sourcePath,
    type,
    stats: { size, mode, uid, gid, mtimeMs, ctimeMs, dev, ino, nlink, blocks },
    ruleId,
    required,
  };
}

function entryType(stats: Stats): EntryType | undefined {
  if (stats.isFile()) return "file";
  if (stats.isDirectory()) return "directory";
  if (stats.isSymbolicLink()) return "symlink";
  return undefined;
}

function describeSpecial(stats: Stats): string {
  if (stats.isSocket()) return "a socket";
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isBlockDevice() || stats.isCharacterDevice()) return "a device node";
  return "a special file";
}

/** Required include rules without wildcards must exist, unless the user's own manifest excluded them. */
function checkRequiredRules(rules: readonly CompiledRule[], seen: Set<string>, home: string): void {
  for (const rule of rules) {
    if (rule.action !== "include" || !rule.required || rule.matcher.hasWildcards || rule.pattern === ".")
      continue;
    if (seen.has(rule.pattern)) continue;
    const decider = decidingRule(rules, rule.pattern);
    if (decider?.action === "exclude" && decider.origin === "manifest") continue;
    throw new InputError(
      `required path ${rule.pattern} is missing in ${home} (${rule.reason})`,
      `check --home; if this host truly has no ${rule.pattern}, list it under 'optional:' in the manifest`,
    );
  }
}

async function measureTree(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const dirents = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [] as Dirent[]);
  for (let i = 0; i < dirents.length; i += STAT_BATCH) {
    const batch = dirents.slice(i, i + STAT_BATCH).filter((d) => !d.isDirectory());
    const stats = await Promise.all(
      batch.map((d) => lstat(join(d.parentPath, d.name)).catch(() => undefined)),
    );
    for (const s of stats) {
      if (!s) continue;
      files += 1;
      if (s.isFile()) bytes += s.size;
    }
  }
  return { files, bytes };
}
