/**
 * The extended attributes of the paths a backup reads (user.*, security.*, trusted.* as root, system.* ACLs), read
 * once before packing with one `getfattr --recursive --dump` over each root, so the packer can put a member's
 * attributes in its pax header (SCHILY.xattr.*, as GNU tar --xattrs). Only files that have attributes are kept,
 * keyed by their path as the selection spells it.
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join, normalize } from "node:path";
import { InputError } from "../errors.js";
import { AttrDumpParser, type Xattr } from "../runtime/attr-dump.js";
import { childEnvironment } from "../runtime/child-env.js";

/** auto: archive them where getfattr is installed, say so where not; true: getfattr is required; false: skip. */
export type XattrMode = "auto" | "true" | "false";

export interface XattrIndex {
  /** The attributes of a path, as the selection spells it; undefined when it has none. */
  get(path: string): readonly Xattr[] | undefined;
  readonly files: number;
}

export interface XattrReading {
  readonly index: XattrIndex;
  /** Said in the report: why no attributes were read, or what getfattr could not read. */
  readonly notices: string[];
  readonly warnings: string[];
}

const NONE: XattrIndex = { get: () => undefined, files: 0 };
const MISSING_HINT = "install the attr package (Debian/Ubuntu: apt-get install attr), or set xattrs to false";

/**
 * For the preflight: with xattrs true, a missing getfattr fails before Looker is stopped, not after. A PATH lookup
 * of the same PATH the child gets (child-env.ts).
 */
export function checkXattrTools(mode: XattrMode): string {
  if (mode === "false") return "extended attributes left out";
  const found = (childEnvironment().PATH ?? "")
    .split(delimiter)
    .some((dir) => dir !== "" && isExecutable(join(dir, "getfattr")));
  if (found) return "extended attributes archived";
  if (mode === "true") throw new InputError("xattrs is true but getfattr is not installed", MISSING_HINT);
  return "extended attributes not archived (no getfattr)";
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Reads the attributes under each root; `mode` says what a missing getfattr means. */
export async function readXattrIndex(roots: readonly string[], mode: XattrMode): Promise<XattrReading> {
  if (mode === "false" || roots.length === 0) return { index: NONE, notices: [], warnings: [] };
  const found = new Map<string, readonly Xattr[]>();
  const parser = new AttrDumpParser((path, attrs) => found.set(keyOf(path), attrs));
  const result = await runGetfattr(roots, parser);
  if (result === "missing") {
    if (mode === "true") throw new InputError("xattrs is true but getfattr is not installed", MISSING_HINT);
    return {
      index: NONE,
      notices: [`extended attributes were not archived: getfattr is not installed (${MISSING_HINT})`],
      warnings: [],
    };
  }
  const warnings = result.errors.map((line) => `extended attributes: ${line}`);
  // Looked up once per member: a home without attributes pays nothing more.
  const index: XattrIndex =
    found.size === 0 ? NONE : { get: (path) => found.get(keyOf(path)), files: found.size };
  return { index, notices: [], warnings };
}

/**
 * getfattr -R -P (never through a symlink) -h (a symlink's own attributes) over the roots. It exits 1 when some path
 * could not be read (gone, or no permission); its stderr says which, and the rest of its output stands.
 */
function runGetfattr(
  roots: readonly string[],
  parser: AttrDumpParser,
): Promise<"missing" | { errors: string[] }> {
  const args = ["--recursive", "--physical", "--no-dereference", "--dump", "--match=-", "--encoding=base64"];
  args.push("--absolute-names", "--", ...roots);
  return new Promise((resolve, reject) => {
    const child = spawn("getfattr", args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: childEnvironment(),
    });
    let pending: Buffer = Buffer.alloc(0);
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let start = 0;
      for (let end = pending.indexOf(0x0a); end !== -1; end = pending.indexOf(0x0a, start)) {
        parser.line(pending.subarray(start, end));
        start = end + 1;
      }
      pending = pending.subarray(start);
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-16_384);
    });
    child.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") resolve("missing");
      else reject(error);
    });
    child.once("close", (code) => {
      if (pending.length > 0) parser.line(pending);
      parser.end();
      const errors = stderr.split("\n").filter((line) => line.trim() !== "");
      if (code !== 0 && errors.length === 0) errors.push(`getfattr exited ${code}`);
      resolve({ errors: errors.slice(0, 20) });
    });
  });
}

/** One spelling per path: the selection names the home "/home/looker" or "/home/looker/." alike. */
function keyOf(path: string): string {
  const normal = normalize(path);
  return normal.length > 1 && normal.endsWith("/") ? normal.slice(0, -1) : normal;
}
