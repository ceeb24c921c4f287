import { readFile } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument, type YAMLMap } from "yaml";
import { InputError } from "../errors.js";
import { normalizePattern } from "./glob.js";
import type { Manifest, ManifestRule, OutsidePath } from "./rules.js";

/**
 * The user's manifest (YAML). Its schema, in full:
 *
 *   version: 1                       # optional; the only version so far
 *   backend: auto | internal | mysql # optional; auto = MySQL when looker/looker-db.yml exists
 *   include:  [ PATH | {path: PATH, required?: bool, reason?: text} ]   # relative to the looker home, globs allowed
 *   exclude:  [ PATH | {path: PATH, reason?: text} ]
 *   optional: [ PATH ]               # default-required paths that may be absent on this host
 *   outside:  [ ABSPATH | {path: ABSPATH, required?: bool, reason?: text} ]   # files outside the home
 *
 * Errors name the file, line and key and say how to fix it, because a manifest is edited by hand at 3 a.m.
 */
export type BackendChoice = "auto" | "internal" | "mysql";

export interface UserManifest {
  readonly file: string;
  readonly backend: BackendChoice;
  readonly include: readonly ManifestRule[];
  readonly exclude: readonly ManifestRule[];
  readonly optional: readonly { pattern: string; where: string }[];
  readonly outside: readonly OutsidePath[];
}

const TOP_LEVEL_KEYS = ["version", "backend", "include", "exclude", "optional", "outside"] as const;
const SCHEMA_HINT = "see the manifest schema in the README (section 'Manifest')";

export async function loadUserManifest(file: string): Promise<UserManifest> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new InputError(
      `cannot read manifest ${file}: ${(error as Error).message}`,
      "check the --manifest path",
      error,
    );
  }
  return parseUserManifest(text, file);
}

export function parseUserManifest(text: string, file: string): UserManifest {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const firstError = doc.errors[0];
  if (firstError) {
    const pos = lineCounter.linePos(firstError.pos[0]);
    throw new InputError(
      `${file}:${pos.line}:${pos.col}: invalid YAML: ${firstError.message.split("\n")[0]}`,
      "fix the YAML syntax (indentation, quotes, colons)",
    );
  }
  const at = (node: Node | null | undefined, key: string) => locate(file, lineCounter, node, key);
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) return emptyManifest(file);
  if (!isMap(root))
    throw new InputError(`${at(root, "(top level)")}: expected a mapping of keys`, SCHEMA_HINT);
  checkKeys(root, TOP_LEVEL_KEYS, at, "");

  const version = scalarOf(root, "version");
  if (version !== undefined && version.value !== 1) {
    throw new InputError(
      `${at(version, "version")}: unsupported version ${String(version.value)}`,
      "use `version: 1`",
    );
  }
  return {
    file,
    backend: readBackend(root, at),
    include: listOf(root, "include", at).map(({ node, where, index }) => {
      const item = readPathItem(node, where, at, ["path", "required", "reason"]);
      return manifestRule("include", item, `${file}:include[${index}]`, false);
    }),
    exclude: listOf(root, "exclude", at).map(({ node, where, index }) => {
      const item = readPathItem(node, where, at, ["path", "reason"]);
      return manifestRule("exclude", item, `${file}:exclude[${index}]`, false);
    }),
    optional: listOf(root, "optional", at).map(({ node, where }) => ({
      pattern: readRelativePath(node, where, at),
      where: at(node, where),
    })),
    outside: listOf(root, "outside", at).map(({ node, where, index }) => {
      const item = readPathItem(node, where, at, ["path", "required", "reason"], "absolute");
      return {
        id: `${file}:outside[${index}]`,
        path: item.path,
        required: item.required ?? true,
        reason: item.reason ?? "listed in the manifest",
        origin: "manifest",
      } satisfies OutsidePath;
    }),
  };
}

/** The default manifest with the user's rules laid over it. */
export function applyUserManifest(defaults: Manifest, user: UserManifest | undefined): Manifest {
  if (!user) return defaults;
  const optionalPatterns = new Set(user.optional.map((o) => o.pattern));
  for (const optional of user.optional) {
    const known = defaults.rules.some((r) => r.required && r.pattern === optional.pattern);
    if (!known) {
      const required = defaults.rules.filter((r) => r.required).map((r) => r.pattern);
      throw new InputError(
        `${optional.where}: '${optional.pattern}' is not a required default path`,
        `'optional' relaxes one of: ${required.join(", ")}`,
      );
    }
  }
  const rules = defaults.rules.map((r) => (optionalPatterns.has(r.pattern) ? { ...r, required: false } : r));
  return {
    rules: [...rules, ...user.include, ...user.exclude],
    outside: [...defaults.outside, ...user.outside],
  };
}

type Locator = (node: Node | null | undefined, key: string) => string;

function locate(file: string, lineCounter: LineCounter, node: Node | null | undefined, key: string): string {
  const offset = node?.range?.[0];
  if (offset === undefined) return `${file}: ${key}`;
  const pos = lineCounter.linePos(offset);
  return `${file}:${pos.line}:${pos.col}: ${key}`;
}

function emptyManifest(file: string): UserManifest {
  return { file, backend: "auto", include: [], exclude: [], optional: [], outside: [] };
}

function checkKeys(map: YAMLMap, allowed: readonly string[], at: Locator, prefix: string): void {
  for (const pair of map.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    if (!allowed.includes(key)) {
      throw new InputError(
        `${at(pair.key as Node, `${prefix}${key}`)}: unknown key '${key}'`,
        `allowed keys here: ${allowed.join(", ")}`,
      );
    }
  }
}

function scalarOf(map: YAMLMap, key: string) {
  const node = map.get(key, true);
  if (node === undefined) return undefined;
  if (!isScalar(node)) throw new InputError(`expected a single value for '${key}'`, SCHEMA_HINT);
  return node;
}

function readBackend(root: YAMLMap, at: Locator): BackendChoice {
  const node = scalarOf(root, "backend");
  if (node === undefined || node.value === null) return "auto";
  if (node.value === "auto" || node.value === "internal" || node.value === "mysql") return node.value;
  throw new InputError(
    `${at(node, "backend")}: '${String(node.value)}' is not a backend`,
    "use auto, internal or mysql",
  );
}

function listOf(root: YAMLMap, key: string, at: Locator): { node: Node; where: string; index: number }[] {
  const node = root.get(key, true) as Node | undefined;
  if (node === undefined || (isScalar(node) && node.value === null)) return [];
  if (!isSeq(node))
    throw new InputError(`${at(node, key)}: expected a list (lines starting with '- ')`, SCHEMA_HINT);
  return node.items.map((item, index) => ({ node: item as Node, where: `${key}[${index}]`, index }));
}

interface PathItem {
  path: string;
  required?: boolean;
  reason?: string;
}

function readPathItem(
  node: Node,
  where: string,
  at: Locator,
  keys: readonly string[],
  kind: "relative" | "absolute" = "relative",
): PathItem {
  const readPath = kind === "relative" ? readRelativePath : readAbsolutePath;
  if (isScalar(node)) return { path: readPath(node, where, at) };
  if (!isMap(node)) {
    throw new InputError(`${at(node, where)}: expected a path or a mapping with 'path'`, SCHEMA_HINT);
  }
  checkKeys(node, keys, at, `${where}.`);
  const pathNode = node.get("path", true) as Node | undefined;
  if (pathNode === undefined)
    throw new InputError(`${at(node, where)}: missing 'path'`, "add `path: <path>`");
  const item: PathItem = { path: readPath(pathNode, `${where}.path`, at) };
  const required = node.get("required", true) as Node | undefined;
  if (required !== undefined) {
    if (!isScalar(required) || typeof required.value !== "boolean") {
      throw new InputError(`${at(required, `${where}.required`)}: expected true or false`, SCHEMA_HINT);
    }
    item.required = required.value;
  }
  const reason = node.get("reason", true) as Node | undefined;
  if (reason !== undefined) {
    if (!isScalar(reason) || typeof reason.value !== "string") {
      throw new InputError(`${at(reason, `${where}.reason`)}: expected text`, SCHEMA_HINT);
    }
    item.reason = reason.value;
  }
  return item;
}

function readRelativePath(node: Node, where: string, at: Locator): string {
  const value = isScalar(node) ? node.value : undefined;
  if (typeof value !== "string" || value.trim() === "") {
    throw new InputError(`${at(node, where)}: expected a path relative to the looker home`, SCHEMA_HINT);
  }
  const path = normalizePattern(value);
  if (isAbsolute(path) || path.split("/").includes("..")) {
    throw new InputError(
      `${at(node, where)}: '${value}' must be relative to the looker home and stay inside it`,
      "write e.g. `looker/log`; files outside the home belong under `outside:`",
    );
  }
  return path;
}

function readAbsolutePath(node: Node, where: string, at: Locator): string {
  const value = isScalar(node) ? node.value : undefined;
  if (typeof value !== "string" || !isAbsolute(value) || value.split("/").includes("..")) {
    throw new InputError(
      `${at(node, where)}: expected an absolute path without '..'`,
      "e.g. /etc/ssl/looker/cert.pem",
    );
  }
  return normalizePattern(value);
}

function manifestRule(
  action: "include" | "exclude",
  item: PathItem,
  id: string,
  fixed: boolean,
): ManifestRule {
  return {
    id,
    action,
    pattern: item.path,
    required: action === "include" && (item.required ?? false),
    reason: item.reason ?? (action === "include" ? "included by the manifest" : "excluded by the manifest"),
    origin: "manifest",
    fixed,
  };
}
