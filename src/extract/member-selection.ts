/**
 * Partial restore: which members `restore --include/--exclude` writes. Patterns are the manifest's (manifest/glob.ts:
 * `*` and `?` within a segment, `**` across segments, and a pattern names its whole subtree), spelled as the user
 * knows the paths rather than as the archive stores them:
 *
 * - `looker/models-user-7`: relative to the Looker home (the archive's `home/looker/models-user-7` and below);
 * - `/etc/ssl/looker`: absolute, a file from outside the home (the archive's `rootfs/etc/ssl/looker`);
 * - `mysql:looker`: the dump of MySQL database `looker` (the archive's `mysql/looker.sql`).
 *
 * A member is selected when some include pattern matches it (every member when there is none) and no exclude
 * pattern does: an exclude wins. The selection never shortens what is read: SelectingSink hashes every member it
 * does not write, so the catalog comparison covers the whole archive and a partial restore proves it intact too.
 */
import { display } from "../archive/display.js";
import type { TarHeader } from "../archive/tar-format.js";
import { InputError } from "../errors.js";
import { compilePattern, normalizePattern, type PathPattern } from "../manifest/glob.js";
import { type MemberSink, VerifySink } from "./extract.js";
import type { TarBody } from "./tar-reader.js";

/** The archive's three places a member can be restored from, and the prefix of each. */
type Space = "home" | "rootfs" | "mysql";
const SPACES: readonly Space[] = ["home", "rootfs", "mysql"];

interface Rule {
  readonly source: string;
  readonly space: Space;
  readonly pattern: PathPattern;
  matched: boolean;
}

export interface SelectionPatterns {
  readonly include?: readonly string[];
  readonly exclude?: readonly string[];
}

const PATTERN_HINT =
  "patterns are paths relative to the Looker home (e.g. looker/models-user-7, looker/models-user-*), absolute paths for files from outside it (/etc/ssl/looker), or mysql:NAME for a database's dump; * and ? match within a name, ** across directories";

/** One restore's selection: the patterns, and which of them matched a member so far. */
export class MemberSelection {
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  private readonly includes: Rule[];
  private readonly excludes: Rule[];

  /** Throws an InputError (exit 2) naming a pattern that cannot match any member. */
  constructor(patterns: SelectionPatterns = {}) {
    this.include = [...(patterns.include ?? [])];
    this.exclude = [...(patterns.exclude ?? [])];
    this.includes = this.include.map((source) => parseRule(source, "include"));
    this.excludes = this.exclude.map((source) => parseRule(source, "exclude"));
  }

  /** True when a pattern was given: the restore writes part of the archive only. */
  get partial(): boolean {
    return this.includes.length > 0 || this.excludes.length > 0;
  }

  /** Whether the member at this archive path is restored; remembers the patterns that matched it. */
  selects(archivePath: string): boolean {
    const at = locate(archivePath);
    if (at === undefined) return false;
    let included = this.includes.length === 0;
    for (const rule of this.includes) {
      if (rule.space === at.space && rule.pattern.matches(at.relative)) {
        rule.matched = true;
        included = true;
      }
    }
    if (!included) return false;
    let excluded = false;
    for (const rule of this.excludes) {
      if (rule.space === at.space && rule.pattern.matches(at.relative)) {
        rule.matched = true;
        excluded = true;
      }
    }
    return !excluded;
  }

  /**
   * Whether a member below this directory could be selected (the directory itself is not): it is then kept, to be
   * written as a parent with its archived owner, mode and times if a selected member below it comes.
   */
  mayHoldSelected(directoryPath: string): boolean {
    const at = locate(directoryPath);
    if (at === undefined) return false;
    if (this.includes.length === 0) return true;
    return this.includes.some(
      (rule) => rule.space === at.space && (at.relative === "" || rule.pattern.mayMatchBelow(at.relative)),
    );
  }

  /**
   * After the whole archive was read: an include pattern that matched no member (a typo, or a path the backup did
   * not hold) fails the restore before anything is placed. Returns warnings for exclude patterns that matched
   * nothing (they change nothing, but may be a typo of what was meant to be kept out).
   */
  check(selectedMembers: number): string[] {
    const unmatched = this.includes.filter((rule) => !rule.matched);
    if (unmatched.length > 0) {
      const names = unmatched.map((rule) => `'${rule.source}'`).join(", ");
      const archiveSpelling = unmatched.some((rule) =>
        /^(home|rootfs)\//.test(normalizePattern(rule.source)),
      );
      throw new InputError(
        `--include ${names} matched nothing in the archive; nothing was restored`,
        `${archiveSpelling ? "write home paths without the archive's home/ prefix, e.g. looker/models-user-7; " : ""}check the spelling (\`looker-backup ls\` lists the archive's paths); ${PATTERN_HINT}`,
      );
    }
    if (selectedMembers === 0) {
      throw new InputError(
        "the --include and --exclude patterns together select nothing in the archive; nothing was restored",
        "an --exclude wins over an --include: exclude less, or include more",
      );
    }
    return this.excludes
      .filter((rule) => !rule.matched)
      .map((rule) => `--exclude '${rule.source}' matched nothing in the archive`);
  }
}

function parseRule(source: string, flag: "include" | "exclude"): Rule {
  const text = source.trim();
  const bad = (why: string) => new InputError(`--${flag} '${source}': ${why}`, PATTERN_HINT);
  let space: Space;
  let relative: string;
  if (text.startsWith("mysql:")) {
    space = "mysql";
    relative = text.slice("mysql:".length).replace(/\.sql$/, "");
    if (relative === "" || relative.includes("/"))
      throw bad("mysql: takes a database name, e.g. mysql:looker");
  } else if (text.startsWith("/")) {
    space = "rootfs";
    relative = normalizePattern(text).replace(/^\/+/, "");
  } else {
    space = "home";
    relative = normalizePattern(text);
    if (relative === "." || relative === "") throw bad("empty; to restore the whole home, give no --include");
  }
  if (relative === "") relative = "**"; // `/`: every file from outside the home
  if (relative.split("/").some((segment) => segment === ".." || segment === ".")) {
    throw bad("'.' and '..' segments never match a member (archive paths are normalized)");
  }
  return { source, space, pattern: compilePattern(relative), matched: false };
}

/** The archive path as the patterns see it: its place and its path there ("" for the place's own directory). */
function locate(archivePath: string): { space: Space; relative: string } | undefined {
  for (const space of SPACES) {
    const prefix = `${space}/`;
    if (archivePath !== prefix && !archivePath.startsWith(prefix)) continue;
    let relative = archivePath.slice(prefix.length).replace(/\/$/, "");
    if (space === "mysql") relative = relative.replace(/\.sql$/, "");
    return { space, relative };
  }
  return undefined;
}

/** How much a partial restore wrote. */
export interface RestoredCount {
  /** Members written: the selected ones and the parent directories created for them. */
  readonly members: number;
  /** Their bytes (the files' sizes). */
  readonly bytes: number;
  /** The selected members alone (without the parent directories). */
  readonly selected: number;
}

const EMPTY_BODY: TarBody = {
  takeBuffered: () => Buffer.alloc(0),
  async *[Symbol.asyncIterator]() {},
};

/**
 * Writes the selected members through `inner` (the staging sink) and only hashes the others, as verify does, for
 * the catalog comparison. A directory that is not selected but may hold selected members is kept back and written
 * (with its archived owner, mode and times) just before the first selected member below it, so parents exist as
 * archived and nothing else is written.
 */
export class SelectingSink implements MemberSink {
  private readonly verify = new VerifySink();
  /** Directories not written yet that a selected member may still need as a parent, by archive path. */
  private readonly pending = new Map<string, TarHeader>();
  /** Directories written or created as parents, by archive path (ending in "/"). */
  private readonly written = new Set<string>();
  /** The decision writes() made for the member that member() receives next. */
  private last: { readonly path: string; readonly selected: boolean } | undefined;
  private members = 0;
  private bytes = 0;
  private selected = 0;

  constructor(
    private readonly inner: MemberSink,
    private readonly selection: MemberSelection,
  ) {}

  get restored(): RestoredCount {
    return { members: this.members, bytes: this.bytes, selected: this.selected };
  }

  writes(header: TarHeader): boolean {
    const selected = this.selection.selects(header.path);
    this.last = { path: header.path, selected };
    if (selected) return true;
    return (
      header.type === "directory" &&
      (this.written.has(header.path) || this.selection.mayHoldSelected(header.path))
    );
  }

  member(header: TarHeader, body: TarBody): ReturnType<MemberSink["member"]> {
    const selected =
      this.last?.path === header.path ? this.last.selected : this.selection.selects(header.path);
    this.last = undefined;
    if (!selected) {
      if (header.type === "directory") {
        // Created already as the parent of an earlier member (an archive listing a directory after its
        // contents): it still gets its archived metadata.
        if (this.written.has(header.path)) return this.write(header, body);
        if (this.selection.mayHoldSelected(header.path)) this.pending.set(header.path, header);
      }
      return this.verify.member(header, body);
    }
    if (header.type === "hardlink" && !this.selection.selects(header.linkTarget!)) {
      throw new InputError(
        `${display(header.path)} is a hard link to ${display(header.linkTarget!)}, which the patterns leave out: a link cannot be restored without its file`,
        `add --include for ${display(userPath(header.linkTarget!))} (or exclude the link too)`,
      );
    }
    this.writeParents(header.path);
    this.selected++;
    return this.write(header, body);
  }

  private write(header: TarHeader, body: TarBody): ReturnType<MemberSink["member"]> {
    if (header.type === "directory") this.written.add(header.path);
    this.members++;
    if (header.type === "file") this.bytes += header.size;
    return this.inner.member(header, body);
  }

  /** Writes the kept-back directories above `path`, outermost first. */
  private writeParents(path: string): void {
    const missing: string[] = [];
    for (let parent = parentOf(path); parent !== undefined; parent = parentOf(parent)) {
      if (this.written.has(parent)) break;
      missing.push(parent);
    }
    for (const parent of missing.reverse()) {
      const header = this.pending.get(parent);
      if (header === undefined) {
        this.written.add(parent); // not listed (yet): the inner sink creates it as a plain parent
        continue;
      }
      this.pending.delete(parent);
      // A directory's member() is synchronous in every sink, and reads no body.
      void this.write(header, EMPTY_BODY);
    }
  }
}

/** `home/a/b` -> `home/a/`; `home/` -> undefined. */
function parentOf(path: string): string | undefined {
  const trimmed = path.endsWith("/") ? path.slice(0, -1) : path;
  const slash = trimmed.lastIndexOf("/");
  return slash < 0 ? undefined : trimmed.slice(0, slash + 1);
}

/** An archive path as an --include would name it. */
export function userPath(archivePath: string): string {
  const at = locate(archivePath);
  if (at === undefined) return archivePath;
  if (at.space === "rootfs") return `/${at.relative}`;
  if (at.space === "mysql") return `mysql:${at.relative}`;
  return at.relative;
}
