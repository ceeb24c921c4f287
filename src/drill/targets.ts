/**
 * Where a drill restores to: a fresh host over SSH (the quarterly drill) or a local directory on the runner (the
 * pull-request drill). Both take the same locally staged and verified home, put it in place only when the target
 * home is empty or new, and prove what landed by hashing every file on the target against the catalog.
 */
import { mkdir, readdir, rename, rmdir, stat, writeFile } from "node:fs/promises";
import { dirname, join, posix, resolve } from "node:path";
import type { CatalogEntry } from "../archive/catalog.js";
import { stagedRoot } from "../engine/placement.js";
import { InputError, IntegrityError, LookerBackupError } from "../errors.js";
import type { Host } from "../remote/host.js";
import { LocalHost } from "../remote/local-host.js";
import type { SshHost } from "../remote/ssh-host.js";
import { nameBytes, nameFromBytes } from "../runtime/byte-names.js";
import { RunAsHost } from "./run-as-host.js";
import { createTarStream } from "./tar-stream.js";

export interface DrillTarget {
  /** For the report: "root@10.0.0.5:22" or "dir:/srv/drill/home". */
  readonly description: string;
  /** Where the runner reaches Looker's ports. */
  readonly address: string;
  /** The looker home on the target. */
  readonly home: string;
  /** Runs Looker's commands as the looker user. */
  readonly lookerHost: Host;
  /** Creates the looker user and group when missing; returns a line for the report. */
  ensureLookerUser(): Promise<string>;
  /**
   * Puts `<staging>/home` in place (and `rootfs/` files, where that makes sense); returns a line for the report.
   * `signal` kills the transfer; what was half sent is removed.
   */
  place(staging: string, catalog: ReadonlyMap<string, CatalogEntry>, signal?: AbortSignal): Promise<string>;
  /** sha256 of every regular file in the home (and of the placed rootfs files), compared with the catalog. */
  verify(catalog: ReadonlyMap<string, CatalogEntry>, signal?: AbortSignal): Promise<number>;
  close(): Promise<void>;
}

export const DEFAULT_LOOKER_USER = "looker";
const HOME_PREFIX = "home/";
const ROOTFS_PREFIX = "rootfs/";
/** tar/mv/chown/sha256sum on a big home take a while; they must still end. */
const TRANSFER_TIMEOUT_MS = 6 * 3600_000;
const COMMAND_TIMEOUT_MS = 3600_000;

// ------------------------------------------------------------------------------------------- over SSH

/** A host reached as root over SSH: root creates the user, places the home and runs Looker via runuser. */
export class SshTarget implements DrillTarget {
  readonly description: string;
  readonly lookerHost: Host;
  readonly home: string;

  constructor(
    private readonly root: SshHost,
    readonly address: string,
    private readonly user = DEFAULT_LOOKER_USER,
  ) {
    this.description = root.name;
    this.home = `/home/${user}`;
    this.lookerHost = new RunAsHost(root, user);
  }

  async ensureLookerUser(): Promise<string> {
    // -M: no skeleton files, so the home stays empty until the restored one arrives.
    const script = [
      'u="$1"; home="$2"',
      'getent group "$u" >/dev/null || groupadd "$u" || exit 1',
      'if id -u "$u" >/dev/null 2>&1; then state=existing; else useradd -M -d "$home" -g "$u" -s /bin/bash "$u" || exit 1; state=created; fi',
      'echo "$state $(id -u "$u"):$(id -g "$u")"',
    ].join("\n");
    const result = await this.root.run(["/bin/sh", "-c", script, "sh", this.user, this.home], {
      timeoutMs: COMMAND_TIMEOUT_MS,
    });
    if (result.code !== 0) {
      throw new LookerBackupError(
        `could not create the ${this.user} user on ${this.root.name}: ${(result.stderr || result.stdout).trim()}`,
        {
          hint: "the drill connects as root (--target-user root) so it can create the user",
        },
      );
    }
    const [state, ids] = result.stdout.trim().split(" ");
    return `${this.user} (${ids}) ${state}`;
  }

  async place(
    staging: string,
    catalog: ReadonlyMap<string, CatalogEntry>,
    signal?: AbortSignal,
  ): Promise<string> {
    // Checked before anything is sent: tar would follow a staged `home` symlink given as its directory.
    const stagedHome = await stagedRoot(staging, "home", { create: true });
    if (rootfsFiles(catalog).length > 0) {
      await stagedRoot(staging, "rootfs");
      await this.checkRootfsDestinations(rootfsFiles(catalog));
    }
    const stage = await this.makeStage();
    try {
      await this.send(stagedHome, stage, signal);
      await this.swapIn(stage, signal);
    } catch (error) {
      await this.root.remove(stage).catch(() => undefined);
      throw error;
    }
    const rootfs = rootfsFiles(catalog);
    if (rootfs.length > 0) await this.sendRootfs(join(staging, "rootfs"), rootfs, signal);
    return `home placed at ${this.home}${rootfs.length > 0 ? `, ${rootfs.length} files outside the home` : ""}`;
  }

  async verify(catalog: ReadonlyMap<string, CatalogEntry>, signal?: AbortSignal): Promise<number> {
    return verifyOnHost(this.root, this.home, catalog, "/", signal);
  }

  close(): Promise<void> {
    return this.root.close();
  }

  /** A private directory beside the home, so the final move is a rename on one filesystem. */
  private async makeStage(): Promise<string> {
    const parent = posix.dirname(this.home);
    const result = await this.root.run([
      "/bin/sh",
      "-c",
      'mkdir -p "$1" && mktemp -d "$1/.looker-drill-XXXXXX"',
      "sh",
      parent,
    ]);
    const stage = result.stdout.trim();
    if (result.code !== 0 || !stage.startsWith("/")) {
      throw new LookerBackupError(
        `could not create a staging directory in ${parent} on ${this.root.name}: ${result.stderr.trim()}`,
      );
    }
    return stage;
  }

  private async send(localDir: string, remoteDir: string, signal: AbortSignal | undefined): Promise<void> {
    const tar = createTarStream(localDir);
    let result: Awaited<ReturnType<SshHost["runWithInput"]>>;
    try {
      result = await this.root.runWithInput(
        ["tar", "-xpf", "-", "--numeric-owner", "-C", remoteDir],
        tar.stream,
        { timeoutMs: TRANSFER_TIMEOUT_MS, ...(signal ? { signal } : {}) },
      );
    } catch (error) {
      tar.stop();
      throw error;
    }
    if (result.code !== 0) {
      tar.stop();
      throw new LookerBackupError(
        `extracting the home on ${this.root.name} failed (exit ${result.code}): ${result.stderr.trim()}`,
        {
          hint: "check free space on the target's /home and that GNU tar is installed there",
        },
      );
    }
    await tar.done;
  }

  /**
   * The looker user owns its home (its uid on the drill host may differ from production's); the home is used
   * only when it is new or empty, so nothing of the target's own is ever replaced.
   */
  private async swapIn(stage: string, signal: AbortSignal | undefined): Promise<void> {
    const script = [
      'stage="$1"; home="$2"; u="$3"',
      'chown -hR "$u:" "$stage" || exit 1',
      'if [ -e "$home" ] || [ -L "$home" ]; then',
      '  if [ -L "$home" ] || [ ! -d "$home" ]; then echo "$home exists and is not a directory" >&2; exit 3; fi',
      '  if [ -n "$(ls -A "$home")" ]; then echo "$home is not empty" >&2; exit 3; fi',
      '  chmod --reference="$stage" "$home" && chown "$u:" "$home" || exit 1',
      '  find "$stage" -mindepth 1 -maxdepth 1 -exec mv -t "$home" {} + || exit 1',
      '  rmdir "$stage"',
      "else",
      '  mv -T "$stage" "$home"',
      "fi",
    ].join("\n");
    const result = await this.root.run(["/bin/sh", "-c", script, "sh", stage, this.home, this.user], {
      timeoutMs: TRANSFER_TIMEOUT_MS,
      ...(signal ? { signal } : {}),
    });
    if (result.code === 3) {
      throw new InputError(
        `the drill target's ${this.home} on ${this.root.name}: ${result.stderr.trim()}`,
        NOT_EMPTY_HINT,
      );
    }
    if (result.code !== 0) {
      throw new LookerBackupError(
        `moving the restored home into ${this.home} on ${this.root.name} failed: ${result.stderr.trim()}`,
      );
    }
  }

  /**
   * What local placement refuses (engine/placement.ts), checked on the target before anything is sent: tar -x would
   * write through a directory that is a symlink on the target, or fail half-way on a destination that is a directory.
   */
  private async checkRootfsDestinations(files: readonly string[]): Promise<void> {
    const directories = new Set<string>();
    for (const file of files) {
      for (let dir = posix.dirname(`/${file}`); dir !== "/"; dir = posix.dirname(dir)) directories.add(dir);
    }
    const script = [
      'while [ "$1" != -- ]; do',
      '  if [ -L "$1" ]; then echo "cannot place files below $1: it is a symlink" >&2; exit 3; fi',
      '  if [ -e "$1" ] && [ ! -d "$1" ]; then echo "cannot place files below $1: it is not a directory" >&2; exit 3; fi',
      "  shift",
      "done",
      "shift",
      'for f in "$@"; do',
      '  if [ -d "$f" ] && [ ! -L "$f" ]; then echo "cannot place $f: it is a directory" >&2; exit 3; fi',
      "done",
    ].join("\n");
    const argv = [
      "/bin/sh",
      "-c",
      script,
      "sh",
      ...[...directories].sort(),
      "--",
      ...files.map((f) => `/${f}`),
    ];
    const result = await this.root.run(argv, { timeoutMs: COMMAND_TIMEOUT_MS });
    if (result.code === 3) {
      throw new InputError(
        `on the drill target ${this.root.name}: ${result.stderr.trim()}`,
        "the files from outside the home go to the same paths on the target: make them plain directories there, or drill without them",
      );
    }
    if (result.code !== 0) {
      throw new LookerBackupError(
        `checking where files outside the home go on ${this.root.name} failed: ${result.stderr.trim()}`,
      );
    }
  }

  private async sendRootfs(
    stagedRootfs: string,
    files: readonly string[],
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const listFile = join(stagedRootfs, "..", "rootfs.list");
    // Names are bytes (runtime/byte-names.ts): the list holds each name's own bytes, as tar reads them.
    const list = Buffer.concat(files.flatMap((f) => [nameBytes(f), Buffer.of(0)]));
    await writeFile(listFile, list, { mode: 0o600 });
    const tar = createTarStream(stagedRootfs, { listFile });
    const result = await this.root
      .runWithInput(["tar", "-xpf", "-", "--numeric-owner", "-C", "/"], tar.stream, {
        timeoutMs: COMMAND_TIMEOUT_MS,
        ...(signal ? { signal } : {}),
      })
      .catch((error: unknown) => {
        tar.stop();
        throw error;
      });
    if (result.code !== 0) {
      tar.stop();
      throw new LookerBackupError(
        `placing files outside the home on ${this.root.name} failed: ${result.stderr.trim()}`,
      );
    }
    await tar.done;
  }
}

// ------------------------------------------------------------------------------------ local directory

/**
 * A directory on this runner. As root, Looker runs as the looker user (who then owns the restored home) when that
 * user exists; otherwise as the runner's own user. Files from outside the home are never written to the runner.
 */
export class LocalDirTarget implements DrillTarget {
  readonly description: string;
  readonly address = "127.0.0.1";
  readonly home: string;
  readonly lookerHost: Host;
  private readonly user: string | undefined;

  private constructor(home: string, user: string | undefined) {
    this.home = home;
    this.user = user;
    this.description = `dir:${home}`;
    this.lookerHost = user ? new RunAsHost(new LocalHost(), user) : new LocalHost();
  }

  static async create(dir: string, lookerUser = DEFAULT_LOOKER_USER): Promise<LocalDirTarget> {
    const home = resolve(dir);
    const asRoot = process.getuid?.() === 0;
    const userExists = asRoot && (await new LocalHost().run(["id", "-u", lookerUser])).code === 0;
    return new LocalDirTarget(home, userExists ? lookerUser : undefined);
  }

  async ensureLookerUser(): Promise<string> {
    if (!this.user) return "runs as this runner's user";
    // Looker runs as that user: every directory above the home must let it through, or nothing will start.
    const parent = dirname(this.home);
    const reachable = await this.lookerHost.run(["test", "-x", parent]);
    if (reachable.code !== 0) {
      throw new InputError(
        `the ${this.user} user cannot reach ${parent}`,
        `choose a --target-dir whose parent directories ${this.user} may enter (chmod o+x), e.g. under /srv`,
      );
    }
    return `${this.user} (existing)`;
  }

  async place(
    staging: string,
    catalog: ReadonlyMap<string, CatalogEntry>,
    signal?: AbortSignal,
  ): Promise<string> {
    // A staged `home` that is not a directory (a symlink to /) must never become the drill's home.
    const staged = await stagedRoot(staging, "home", { create: true });
    const state = await directoryState(this.home);
    if (state === "non-empty")
      throw new InputError(`the drill target ${this.home} is not empty`, NOT_EMPTY_HINT);
    if (this.user) {
      const owned = await new LocalHost().run(["chown", "-hR", `${this.user}:`, staged], {
        ...(signal ? { signal } : {}),
      });
      if (owned.code !== 0)
        throw new LookerBackupError(`could not give ${staged} to ${this.user}: ${owned.stderr.trim()}`);
    }
    await mkdir(dirname(this.home), { recursive: true });
    if (state === "empty") await rmdir(this.home);
    await rename(staged, this.home);
    const skipped = rootfsFiles(catalog).length;
    return `home placed at ${this.home}${skipped > 0 ? `; ${skipped} files outside the home not placed (local mode)` : ""}`;
  }

  async verify(catalog: ReadonlyMap<string, CatalogEntry>, signal?: AbortSignal): Promise<number> {
    return verifyOnHost(new LocalHost(), this.home, catalog, undefined, signal);
  }

  async close(): Promise<void> {}
}

/** Staging must sit on the target's filesystem for the final rename: beside the target directory. */
export function localStagingParent(targetDir: string): string {
  return dirname(resolve(targetDir));
}

const NOT_EMPTY_HINT =
  "a drill restores into a fresh host or an empty directory; give it a new VM or an empty --target-dir";

async function directoryState(dir: string): Promise<"missing" | "empty" | "non-empty"> {
  try {
    if (!(await stat(dir)).isDirectory())
      throw new InputError(`the drill target ${dir} is not a directory`, NOT_EMPTY_HINT);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    throw error;
  }
  return (await readdir(dir)).length === 0 ? "empty" : "non-empty";
}

// ---------------------------------------------------------------------------------------- verification

/** Catalog paths of regular files (and symlinks) outside the home, relative to the root. */
function rootfsFiles(catalog: ReadonlyMap<string, CatalogEntry>): string[] {
  return [...catalog.values()]
    .filter((e) => e.path.startsWith(ROOTFS_PREFIX) && e.type !== "directory")
    .map((e) => e.path.slice(ROOTFS_PREFIX.length));
}

/**
 * `sha256sum -z` (NUL-terminated, no escaping of odd names) over every regular file in the home, plus the rootfs
 * files when they were placed under `rootfsBase`. Any missing, extra or different file is an integrity failure.
 */
async function verifyOnHost(
  host: Host,
  home: string,
  catalog: ReadonlyMap<string, CatalogEntry>,
  rootfsBase: string | undefined,
  signal: AbortSignal | undefined,
): Promise<number> {
  const homeScript = 'cd "$1" && find . -type f -print0 | xargs -0r sha256sum -z --';
  const listed = await host.run(["/bin/sh", "-c", homeScript, "sh", home], {
    timeoutMs: TRANSFER_TIMEOUT_MS,
    stdoutEncoding: "latin1",
    ...(signal ? { signal } : {}),
  });
  if (listed.code !== 0) {
    throw new LookerBackupError(
      `could not hash the restored files in ${home} on ${host.name}: ${listed.stderr.trim()}`,
    );
  }
  // Every byte as one latin1 character, turned back into the name as the catalog holds it (runtime/byte-names.ts).
  const found = parseSha256sumZ(listed.stdout, (name) =>
    nameFromBytes(Buffer.from(name.startsWith("./") ? name.slice(2) : name, "latin1")),
  );
  let verified = compareHome(catalog, found, home, host.name);
  if (rootfsBase !== undefined) {
    const outside = [...catalog.values()].filter(
      (e) => e.path.startsWith(ROOTFS_PREFIX) && e.type === "file",
    );
    if (outside.length > 0) {
      const paths = outside.map((e) => posix.join(rootfsBase, e.path.slice(ROOTFS_PREFIX.length)));
      const hashed = await host.run(["sha256sum", "-z", "--", ...paths], {
        timeoutMs: COMMAND_TIMEOUT_MS,
        ...(signal ? { signal } : {}),
      });
      const digests = parseSha256sumZ(hashed.stdout, (name) => name);
      for (const [index, entry] of outside.entries()) {
        const actual = digests.get(paths[index]!);
        if (actual !== entry.sha256) {
          throw new IntegrityError(
            `${paths[index]} on ${host.name} ${actual ? "differs from" : "is missing from"} the catalog`,
            TARGET_HINT,
          );
        }
        verified++;
      }
    }
  }
  return verified;
}

const TARGET_HINT =
  "the copy on the target is not what the archive holds: check the target's disk and anything writing to it";

function compareHome(
  catalog: ReadonlyMap<string, CatalogEntry>,
  found: Map<string, string>,
  home: string,
  hostName: string,
): number {
  let verified = 0;
  for (const entry of catalog.values()) {
    if (!entry.path.startsWith(HOME_PREFIX) || (entry.type !== "file" && entry.type !== "hardlink")) continue;
    const relative = entry.path.slice(HOME_PREFIX.length);
    const actual = found.get(relative);
    if (actual === undefined)
      throw new IntegrityError(`${posix.join(home, relative)} is missing on ${hostName}`, TARGET_HINT);
    if (entry.sha256 !== undefined && actual !== entry.sha256) {
      throw new IntegrityError(
        `${posix.join(home, relative)} on ${hostName} differs from the catalog (sha256)`,
        TARGET_HINT,
      );
    }
    found.delete(relative);
    verified++;
  }
  const extra = [...found.keys()];
  if (extra.length > 0) {
    throw new IntegrityError(
      `${extra.length} file(s) in ${home} on ${hostName} are not in the archive, e.g. ${extra[0]}`,
      "something else wrote into the home while the drill restored it",
    );
  }
  return verified;
}

/** `<64 hex>  <name>\0` records (or `<hex> *<name>` in binary mode) -> name -> digest. */
export function parseSha256sumZ(output: string, normalize: (name: string) => string): Map<string, string> {
  const digests = new Map<string, string>();
  for (const record of output.split("\0")) {
    if (record === "") continue;
    const match = /^([0-9a-f]{64}) [ *](.*)$/s.exec(record);
    if (!match) throw new LookerBackupError(`unexpected sha256sum output: ${record.slice(0, 120)}`);
    digests.set(normalize(match[2]!), match[1]!);
  }
  return digests;
}
