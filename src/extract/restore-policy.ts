/**
 * What restore is allowed to write, beyond the structural checks of member-safety.ts. Anyone holding the public
 * recipient can build an archive with a valid catalog, so these rules hold for every archive, ours or not, and run
 * in verify as well: verify passes exactly when restore would write the archive.
 *
 * - `rootfs/` members must lie at or below an outside path that the archive's own `meta/backup.json` records
 *   (`manifest.outside[].path`), and be regular files, directories or symlinks.
 * - `mysql/` holds only regular files directly below it (the dumps, `mysql/<db>.sql`).
 * - setuid, setgid (of files) and sticky bits and the world-writable bit are dropped from the modes written, unless
 *   asked to keep them; the catalog is still compared with the archive's own modes (see extract.ts).
 */
import { posix } from "node:path";
import type { TarHeader } from "../archive/tar-format.js";

/** setuid, setgid, sticky, and write for others. */
export const PRIVILEGED_MODE_BITS = 0o7002;
/**
 * On a directory setgid grants nothing: it only makes new entries take the directory's group, which group-shared
 * Looker directories rely on (2775), so it is kept there.
 */
const PRIVILEGED_DIRECTORY_BITS = 0o5002;

const ROOTFS_PREFIX = "rootfs/";
const MYSQL_PREFIX = "mysql/";
/** How many members a warning names; the count is always complete. */
const EXAMPLES = 20;

/**
 * The outside paths recorded in backup.json, normalized and absolute; an empty list when there are none (then no
 * `rootfs/` member is allowed). Entries that are not absolute paths allow nothing.
 */
export function outsidePathsOf(meta: Record<string, unknown>): string[] {
  const manifest = meta.manifest as { outside?: unknown } | undefined;
  const outside = typeof manifest === "object" && manifest !== null ? manifest.outside : undefined;
  if (!Array.isArray(outside)) return [];
  const paths: string[] = [];
  for (const item of outside) {
    const path = (item as { path?: unknown } | null)?.path;
    if (typeof path !== "string" || !path.startsWith("/") || path.includes("\0")) continue;
    const normalized = posix.normalize(path).replace(/\/+$/, "");
    // "/" would allow the whole filesystem: a backup never records it (select.ts would archive `rootfs//`).
    if (normalized !== "") paths.push(normalized);
  }
  return paths;
}

/**
 * Why restore must not write this member, or undefined. `outside` is undefined while backup.json has not been
 * read: a `rootfs/` member before it cannot be checked, and our archives always have backup.json first.
 */
export function placementProblem(
  header: TarHeader,
  outside: readonly string[] | undefined,
): string | undefined {
  if (header.path.startsWith(ROOTFS_PREFIX)) return rootfsProblem(header, outside);
  if (header.path.startsWith(MYSQL_PREFIX)) return mysqlProblem(header);
  return undefined;
}

function rootfsProblem(header: TarHeader, outside: readonly string[] | undefined): string | undefined {
  if (header.type !== "file" && header.type !== "directory" && header.type !== "symlink") {
    return `a ${header.type} in rootfs/ (only regular files, directories and symlinks are placed there)`;
  }
  if (outside === undefined) return "rootfs/ member before meta/backup.json";
  const absolute = `/${header.path.slice(ROOTFS_PREFIX.length).replace(/\/$/, "")}`;
  // The `rootfs/` directory itself holds nothing.
  if (absolute === "/") return undefined;
  const allowed = outside.some((path) => absolute === path || absolute.startsWith(`${path}/`));
  return allowed ? undefined : "not at or below an outside path that meta/backup.json records";
}

function mysqlProblem(header: TarHeader): string | undefined {
  const name = header.path.slice(MYSQL_PREFIX.length);
  if (name === "") return undefined; // the `mysql/` directory
  if (header.type !== "file" || name.includes("/")) {
    return "mysql/ holds only regular files directly below it (the dumps)";
  }
  return undefined;
}

const CAPABILITY_XATTR = "security.capability";

/** Privileged bits dropped from the modes restore writes, and which members lost them. */
export interface DroppedModes {
  readonly count: number;
  /** `path (mode 4755 written as 0755)`, for the first few members. */
  readonly examples: readonly string[];
}

/** Applies the mode rule to each member's header before it is written; tells what it dropped. */
export class ModePolicy {
  private count = 0;
  private readonly examples: string[] = [];

  constructor(private readonly keepPrivileged: boolean) {}

  /** The header to write: the same object when nothing is dropped (most members), a copy otherwise. */
  apply(header: TarHeader, describe: (path: string) => string): TarHeader {
    if (this.keepPrivileged || (header.type !== "file" && header.type !== "directory")) return header;
    const withoutCapabilities = this.withoutCapabilities(header, describe);
    const bits = header.type === "directory" ? PRIVILEGED_DIRECTORY_BITS : PRIVILEGED_MODE_BITS;
    if ((header.mode & bits) === 0) return withoutCapabilities;
    const mode = header.mode & ~bits;
    this.count++;
    if (this.examples.length < EXAMPLES) {
      this.examples.push(`${describe(header.path)} (mode ${octal(header.mode)} written as ${octal(mode)})`);
    }
    return { ...withoutCapabilities, mode };
  }

  /**
   * File capabilities (the security.capability attribute) grant a program privileges as setuid does
   * (cap_setuid+ep is root): the same rule drops them.
   */
  private withoutCapabilities(header: TarHeader, describe: (path: string) => string): TarHeader {
    if (!header.xattrs?.some(([name]) => name === CAPABILITY_XATTR)) return header;
    this.count++;
    if (this.examples.length < EXAMPLES) this.examples.push(`${describe(header.path)} (file capabilities)`);
    return { ...header, xattrs: header.xattrs.filter(([name]) => name !== CAPABILITY_XATTR) };
  }

  dropped(): DroppedModes {
    return { count: this.count, examples: [...this.examples] };
  }
}

/** The warning line for dropped modes, or undefined when nothing was dropped. */
export function droppedModesWarning(dropped: DroppedModes, verb: "dropped" | "would be dropped") {
  if (dropped.count === 0) return undefined;
  const more =
    dropped.count > dropped.examples.length ? `, and ${dropped.count - dropped.examples.length} more` : "";
  return (
    `setuid/setgid/sticky or world-writable bits, or file capabilities, ${verb} for ${dropped.count} member(s) ` +
    `(pass --keep-privileged-modes to keep them): ${dropped.examples.join(", ")}${more}`
  );
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}
