/**
 * Archive names: `<instance>-<UTC yyyymmddThhmmssZ>.tar.zst.age`, and the names of the files stored beside one. The
 * timestamp in the name is what restore and pruning sort by, so it must survive copies that lose file times.
 */
import { hostname } from "node:os";
import { InputError } from "../errors.js";

export const ARCHIVE_SUFFIX = ".tar.zst.age";
export const KEYFILE_SUFFIX = ".keyfile.age";
/**
 * `<instance>-<time>.catalog.age`: the catalog sidecar (archive/catalog-sidecar.ts), an age file like the key file
 * and named the same way.
 */
export const CATALOG_SUFFIX = ".catalog.age";
/** `<archive>.sig`, the whole archive name kept: what `ssh-keygen -Y verify -s X.sig < X` expects beside X. */
export const SIGNATURE_SUFFIX = ".sig";
const INSTANCE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const NAME_PATTERN = /^(.+)-(\d{8}T\d{6}Z)\.tar\.zst\.age$/;

export function validateInstanceName(instance: string, where = "--instance"): string {
  if (!INSTANCE_PATTERN.test(instance)) {
    throw new InputError(
      `${where}: '${instance}' is not a valid instance name`,
      "use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. looker-prod)",
    );
  }
  return instance;
}

/** The host name, made a valid instance name: what a single-host install is naturally called. */
export function defaultInstanceName(): string {
  return (
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, "-")
      .replace(/^[^A-Za-z0-9]+/, "") || "looker"
  );
}

export function archiveName(instance: string, at: Date): string {
  return `${instance}-${compactUtc(at)}${ARCHIVE_SUFFIX}`;
}

export function keyfileNameFor(archive: string): string {
  return archive.slice(0, -ARCHIVE_SUFFIX.length) + KEYFILE_SUFFIX;
}

/** The catalog sidecar of an archive; undefined for a file not named as archives are (a renamed copy). */
export function catalogNameFor(archive: string): string | undefined {
  return archive.endsWith(ARCHIVE_SUFFIX) && archive.length > ARCHIVE_SUFFIX.length
    ? archive.slice(0, -ARCHIVE_SUFFIX.length) + CATALOG_SUFFIX
    : undefined;
}

export function signatureNameFor(archive: string): string {
  return `${archive}${SIGNATURE_SUFFIX}`;
}

export interface ParsedArchiveName {
  readonly instance: string;
  readonly createdAt: Date;
}

export function parseArchiveName(name: string): ParsedArchiveName | undefined {
  const match = NAME_PATTERN.exec(name);
  if (!match) return undefined;
  const t = match[2]!;
  const iso = `${t.slice(0, 4)}-${t.slice(4, 6)}-${t.slice(6, 8)}T${t.slice(9, 11)}:${t.slice(11, 13)}:${t.slice(13, 15)}Z`;
  const createdAt = new Date(iso);
  return Number.isNaN(createdAt.getTime()) ? undefined : { instance: match[1]!, createdAt };
}

/** `yyyymmddThhmmssZ`: sorts as text, and carries no characters artifact or file names refuse. */
export function compactUtc(at: Date): string {
  return at
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z")
    .replace(/[-:]/g, "");
}
