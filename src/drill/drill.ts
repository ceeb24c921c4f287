/**
 * The restore drill: proves, on a fresh host, that the newest backup restores and boots (Looker's guide asks for a
 * test restore every quarter). Order matters:
 *   verify + extract locally (integrity failure: exit 4, no host provisioned or touched)
 *   -> [provision] -> SSH answers -> looker user -> [MySQL dump into the drill's own database]
 *   -> home onto the target -> every file hashed on the target vs the catalog
 *   -> [restore_dr_backup with the key file and the target's new CMK] -> start, /alive -> [API login] -> [checks]
 *   -> teardown, always.
 * Every step is timed into the report; runDrill never throws, its report carries the verdict and exit code.
 */
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, posix } from "node:path";
import type { CatalogEntry } from "../archive/catalog.js";
import { decryptBuffer } from "../crypto/age.js";
import { sha256Hex } from "../crypto/digest.js";
import type { TrustedSigners } from "../crypto/ssh-keys.js";
import {
  DEFAULT_BOOT_TIMEOUT_SECONDS,
  DEFAULT_SSH_PORT,
  DEFAULT_SSH_TIMEOUT_SECONDS,
  DEFAULT_TARGET_USER,
} from "../defaults.js";
import { checkAuthenticity, type SignedDigest } from "../engine/authenticity.js";
import { type DecryptionKeys, extractToStaging } from "../engine/restore.js";
import {
  CancelledError,
  describeError,
  ExitCode,
  exitCodeOf,
  InputError,
  LookerBackupError,
  LookerError,
} from "../errors.js";
import { LookerNode } from "../looker/control.js";
import type { MasterKey } from "../looker/master-key.js";
import { readStartOptions } from "../looker/start-config.js";
import type { MysqlConnection } from "../mysql/connection.js";
import { runProcess } from "../remote/local-host.js";
import { keyfileNameFor } from "../store/archive-name.js";
import { LOOKER_DB_YML, restoreIntoDrillDatabase, stagedDumps } from "./drill-database.js";
import { checkApiLogin, runUrlChecks, type UrlCheck } from "./http-checks.js";
import { assertPortsFree, type DrillPort, portsStillOpen } from "./port-guard.js";
import type { DrillBackupInfo, DrillReport, DrillStep } from "./report.js";
import { type DrillTarget, LocalDirTarget, localStagingParent, SshTarget } from "./targets.js";
import { waitForSsh } from "./wait-for-ssh.js";

export type DrillTargetSpec =
  | {
      readonly kind: "ssh";
      /** The host; may be omitted when a provision command prints it. */
      readonly host?: string;
      readonly port?: number;
      /** Must be root: the drill creates the looker user and places the home (default root). */
      readonly user?: string;
      readonly privateKey: string;
      readonly knownHosts: string;
      /** How long a fresh host may take to answer SSH (default DEFAULT_SSH_TIMEOUT_SECONDS). */
      readonly sshTimeoutMs?: number;
    }
  | { readonly kind: "dir"; readonly dir: string };

export interface DrillRequest {
  /** The archive file (`<instance>-<time>.tar.zst.age`). */
  readonly archive: string;
  /** The encrypted key file; default `<archive>.keyfile.age` beside the archive. */
  readonly keyfile?: string;
  readonly keys: DecryptionKeys;
  /** Keys whose signature the archive must carry (checked before it is decrypted); unset: not checked, a warning. */
  readonly trustedSigners?: TrustedSigners;
  /** The archive's signature; default `<archive>.sig` beside the archive. */
  readonly signature?: string;
  /** Identities for the key file; default `keys.identities`. */
  readonly keyfileIdentities?: readonly string[];
  readonly target: DrillTargetSpec;
  /** The drill host's own CMK (never production's). */
  readonly masterKey?: MasterKey;
  /**
   * The drill's web and API ports. Unset: what the restored lookerstart.cfg says (9999 and 19999 without one). Set:
   * the drill's copy of lookerstart.cfg is rewritten to them, so a drill can run beside another Looker.
   */
  readonly webPort?: number;
  readonly apiPort?: number;
  readonly bootTimeoutMs?: number;
  readonly api?: { readonly clientId: string; readonly clientSecret: string };
  readonly checks?: readonly UrlCheck[];
  /** The drill's own database for a MySQL-backend backup (host as the target reaches it, and this runner too). */
  readonly drillMysql?: MysqlConnection;
  /** Run locally before anything touches a host; the last line it prints on stdout is the target host. */
  readonly provisionCommand?: string;
  /** Run locally at the end, always (LOOKER_DRILL_TARGET and LOOKER_DRILL_RESULT in its environment). */
  readonly teardownCommand?: string;
  /** Leave Looker running on the target after the drill (default: stopped in teardown). */
  readonly keepRunning?: boolean;
  readonly log?: (line: string) => void;
  /** Where the drill shows its progress: each step as a phase, the archive's bytes read while it is extracted. */
  readonly progress?: DrillProgress;
  /**
   * SIGINT/SIGTERM of a CLI run: the step under way stops (its commands are killed, the extraction stops), no further
   * step starts, and the teardown runs as always; the report says cancelled, exit 130.
   */
  readonly signal?: AbortSignal;
  readonly now?: () => Date;
}

/** What the drill tells of its progress (report/progress.ts's ProgressReporter is one). */
export interface DrillProgress {
  phase(
    name: string,
    counting?: { readonly total?: number; readonly sample?: () => number; readonly alongside?: string },
  ): void;
  update(done: number, extra?: { readonly alongside?: number }): void;
}

const HOOK_TIMEOUT_MS = 3600_000;
/** The step that reads the archive: its phase also counts the archive's bytes (extractLocally). */
const EXTRACT_STEP = "verify and extract archive";

class StepLog {
  readonly steps: DrillStep[] = [];

  constructor(
    private readonly log: (line: string) => void,
    private readonly signal: AbortSignal | undefined,
    private readonly progress: DrillProgress | undefined,
  ) {}

  /**
   * Times `fn`; a failure is recorded (with its message) and rethrown. After a cancel no step starts, and the one
   * under way ends as cancelled however it ended (its commands were killed: their failure is not the cause).
   */
  async run<T>(name: string, fn: () => Promise<T>, describe?: (value: T) => string | undefined): Promise<T> {
    if (this.signal?.aborted) throw new CancelledError();
    const started = performance.now();
    this.progress?.phase(name);
    try {
      const value = await fn();
      if (this.signal?.aborted) throw new CancelledError();
      this.record({ name, ok: true, started, detail: describe?.(value) });
      return value;
    } catch (error) {
      const failure = this.signal?.aborted ? new CancelledError() : error;
      this.record({ name, ok: false, started, detail: describeError(failure).split("\n")[0] });
      throw failure;
    }
  }

  record(step: { name: string; ok: boolean; started: number; detail?: string | undefined }): void {
    const ms = Math.round(performance.now() - step.started);
    this.steps.push({ name: step.name, ms, ok: step.ok, ...(step.detail ? { detail: step.detail } : {}) });
    this.log(
      `${step.ok ? "ok    " : "FAILED"} ${step.name} (${ms} ms)${step.detail ? `: ${step.detail}` : ""}`,
    );
  }
}

interface Extracted {
  readonly staging: string;
  readonly catalog: ReadonlyMap<string, CatalogEntry>;
  readonly meta: Record<string, unknown>;
  readonly bytes: number;
  readonly members: number;
}

export function runDrill(request: DrillRequest): Promise<DrillReport> {
  return new Drill(request).run();
}

/**
 * One drill: a method per step, in the order run() calls them, and the state the steps leave for the report and for
 * teardown (which always runs: stop Looker unless kept, close the connection, remove staging, the teardown command).
 */
class Drill {
  private readonly log: (line: string) => void;
  private readonly steps: StepLog;
  private readonly startedAt: Date;
  private readonly clockStart = performance.now();
  private targetName: string;
  private backup: DrillBackupInfo = {};
  private rpoMs: number | undefined;
  private rtoMs: number | undefined;
  private bytesRestored = 0;
  private filesVerified = 0;
  private failure: unknown;
  private target: DrillTarget | undefined;
  private looker: LookerNode | undefined;
  private started = false;
  private staging: string | undefined;
  /** The host a provision command printed. */
  private address: string | undefined;
  private ports: DrillPort[] = [];

  constructor(private readonly request: DrillRequest) {
    this.log = request.log ?? (() => {});
    this.steps = new StepLog(this.log, request.signal, request.progress);
    this.startedAt = (request.now ?? (() => new Date()))();
    this.targetName = describeTargetSpec(request.target);
  }

  async run(): Promise<DrillReport> {
    try {
      await this.drill();
    } catch (error) {
      this.failure = error;
    }
    const teardownError = await this.teardown();
    if (this.failure === undefined && teardownError !== undefined) this.failure = teardownError;
    return this.report();
  }

  private async drill(): Promise<void> {
    const signed = await this.checkSignature();
    const extracted = await this.extract(signed);
    const dumps = await this.checkWhatItNeeds(extracted);
    const keyfile = this.backup.keystoreIndependent
      ? await this.steps
          .run("decrypt key file", () => decryptKeyfile(this.request))
          .catch((e: unknown) => e as Error)
      : undefined;
    if (this.request.provisionCommand) await this.provision(this.request.provisionCommand);
    const target = await this.connect();
    await this.steps.run(
      "looker user",
      () => target.ensureLookerUser(),
      (detail) => detail,
    );
    // What must arrive on the target: the archive's catalog, except for files the drill itself changed.
    const expected = dumps.length > 0 ? await this.loadDumps(extracted, dumps) : extracted.catalog;
    const { signal } = this.request;
    await this.steps.run(
      "place home",
      () => target.place(extracted.staging, expected, signal),
      (detail) => detail,
    );
    this.bytesRestored = extracted.bytes;
    this.filesVerified = await this.steps.run(
      "verify on target",
      () => target.verify(expected, signal),
      (n) => `${n} files match the catalog`,
    );
    const drillPorts = await this.steps.run(
      "drill ports",
      () => resolveDrillPorts(this.request, target),
      (p) => p.detail,
    );
    const looker = this.lookerOn(target, drillPorts.web);
    this.ports = [
      { name: "web", host: target.address, port: drillPorts.web },
      { name: "API", host: target.address, port: drillPorts.api },
    ];
    await this.steps.run(
      "ports free",
      () => assertPortsFree(this.ports),
      (detail) => detail,
    );
    const drFailure =
      keyfile === undefined ? undefined : await restoreDrBackup(this.steps, target, looker, keyfile);
    await this.startLooker(looker, drFailure);
    await this.checkApi(target, drillPorts.api);
    await this.checkUrls(target, drillPorts.web);
  }

  private async checkSignature(): Promise<SignedDigest | undefined> {
    const { request } = this;
    const authenticity = await this.steps.run(
      "check signature",
      () => checkAuthenticity(request.archive, request.trustedSigners, request.signature),
      (a) => (a.checked ? `signed by ${a.signer}` : a.warning),
    );
    if (!authenticity.checked) this.log(`warning: ${authenticity.warning}`);
    return authenticity.checked ? authenticity.signed : undefined;
  }

  private async extract(signed: SignedDigest | undefined): Promise<Extracted> {
    const { request } = this;
    const stagingParent = request.target.kind === "dir" ? localStagingParent(request.target.dir) : tmpdir();
    const staging = await mkdtemp(join(stagingParent, ".looker-drill-"));
    this.staging = staging;
    const extracted = await this.steps.run(
      EXTRACT_STEP,
      () => extractLocally(request, staging, signed),
      (x) => `${x.members} members, ${x.bytes} bytes, all match the catalog`,
    );
    this.backup = backupInfo(extracted.meta);
    return extracted;
  }

  /** What the backup needs of the drill's settings; returns the staged MySQL dumps. */
  private async checkWhatItNeeds(extracted: Extracted): Promise<string[]> {
    // The drill host's CMK comes only from the drill's own settings: never inherited from the runner (where it
    // would be production's), so a keystore-independent backup without one cannot be proven and is bad input.
    if (this.backup.keystoreIndependent && this.request.masterKey === undefined) {
      throw new InputError(
        "this backup is keystore-independent, and the drill has no CMK of its own for restore_dr_backup and the start",
        "pass the drill host's CMK (master-key / --master-key-env, or master-key-file): a new key, never production's",
      );
    }
    const backupStart = this.backup.startedAt;
    this.rpoMs = backupStart ? Math.max(0, this.startedAt.getTime() - Date.parse(backupStart)) : undefined;
    const dumps = await stagedDumps(extracted.staging);
    if (dumps.length > 0 && this.request.drillMysql === undefined) {
      throw new InputError(
        "the backup uses the MySQL backend but no drill database is configured",
        "pass --drill-mysql-host, --drill-mysql-user, --drill-mysql-database (and --drill-mysql-password-env): a database of the drill's own, never production",
      );
    }
    return dumps;
  }

  private async provision(command: string): Promise<void> {
    this.address = await this.steps.run(
      "provision",
      () => provision(command, this.request.signal),
      (host) => `target ${host}`,
    );
  }

  private async connect(): Promise<DrillTarget> {
    const target = await this.steps.run(
      "connect",
      () => connectTarget(this.request, this.address),
      (t) => t.description,
    );
    this.target = target;
    this.targetName = target.description;
    return target;
  }

  /** Loads the dumps into the drill's database; returns the catalog with the drill's rewritten connection file. */
  private async loadDumps(extracted: Extracted, dumps: string[]): Promise<ReadonlyMap<string, CatalogEntry>> {
    await this.steps.run(
      "load mysql dump",
      () =>
        restoreIntoDrillDatabase(
          this.request.drillMysql!,
          join(extracted.staging, "home"),
          dumps,
          this.request.signal,
        ),
      (detail) => detail,
    );
    return withRestagedFile(extracted.catalog, extracted.staging, `home/${LOOKER_DB_YML}`);
  }

  private lookerOn(target: DrillTarget, webPort: number): LookerNode {
    const { request } = this;
    this.looker = new LookerNode({
      host: target.lookerHost,
      lookerDir: posix.join(target.home, "looker"),
      alive: { host: target.address, port: webPort },
      ...(request.masterKey ? { masterKey: request.masterKey } : {}),
      bootTimeoutMs: request.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_SECONDS * 1000,
    });
    return this.looker;
  }

  private async startLooker(looker: LookerNode, drFailure: Error | undefined): Promise<void> {
    try {
      await this.steps.run(
        "start looker",
        () => looker.start(this.request.signal),
        () => "/alive answered 200",
      );
      this.started = true;
      this.rtoMs = Math.round(performance.now() - this.clockStart);
    } catch (error) {
      this.started = true; // a half-started Looker is stopped in teardown too
      throw drFailure ? withCause(error, drFailure) : error;
    }
    if (drFailure)
      throw new LookerError(`Looker started although restore_dr_backup failed: ${drFailure.message}`);
  }

  private async checkApi(target: DrillTarget, apiPort: number): Promise<void> {
    if (!this.request.api) return;
    const { clientId, clientSecret } = this.request.api;
    const api = { host: target.address, port: apiPort };
    await this.steps.run(
      "api login",
      () => checkApiLogin(api, clientId, clientSecret),
      () => "access token issued",
    );
  }

  private async checkUrls(target: DrillTarget, webPort: number): Promise<void> {
    const checks = this.request.checks;
    if (!checks || checks.length === 0) return;
    const web = { host: target.address, port: webPort };
    await this.steps.run(
      "url checks",
      () => runUrlChecks(web, checks),
      () => `${checks.length} passed`,
    );
  }

  /**
   * Always, after a failure or a cancel too, and never cancelled itself: stop Looker (unless kept), close the
   * connection, remove local staging, run the teardown command (a provisioned host must not be left running).
   */
  private async teardown(): Promise<Error | undefined> {
    const { request } = this;
    const begun = performance.now();
    request.progress?.phase("teardown");
    const problems: string[] = [];
    if (this.looker && this.started && !request.keepRunning) {
      await this.looker.stop().catch((e: unknown) => problems.push(`stop looker: ${messageOf(e)}`));
      // Proof that the drill's own Looker was the one answering, and that nothing of it is left running.
      for (const open of await portsStillOpen(this.ports)) {
        problems.push(
          `${open.name} port ${open.host}:${open.port} still answers after the drill stopped Looker`,
        );
      }
    }
    await this.target?.close().catch((e: unknown) => problems.push(`close: ${messageOf(e)}`));
    if (this.staging)
      await rm(this.staging, { recursive: true, force: true }).catch((e: unknown) =>
        problems.push(messageOf(e)),
      );
    if (request.teardownCommand) {
      const result = await runProcess("/bin/sh", ["-c", request.teardownCommand], {
        env: {
          LOOKER_DRILL_TARGET:
            this.address ??
            (request.target.kind === "ssh" ? (request.target.host ?? "") : request.target.dir),
          LOOKER_DRILL_RESULT: this.failure === undefined ? "passed" : "failed",
        },
        jobEnvironment: true,
        timeoutMs: HOOK_TIMEOUT_MS,
        onLine: (line) => this.log(`teardown> ${line}`),
      }).catch((e: unknown) => ({ code: -1, stdout: "", stderr: messageOf(e) }));
      if (result.code !== 0)
        problems.push(`teardown command exited ${result.code}: ${lastLine(result.stderr)}`);
    }
    const detail = problems.join("; ");
    this.steps.record({
      name: "teardown",
      ok: problems.length === 0,
      started: begun,
      detail: detail || undefined,
    });
    return problems.length === 0
      ? undefined
      : new LookerBackupError(`drill teardown failed: ${detail}`, {
          hint: "remove the drill host by hand; it may still cost money",
        });
  }

  private report(): DrillReport {
    const { failure } = this;
    const exitCode = failure === undefined ? ExitCode.Ok : exitCodeOf(failure);
    const logTail = failure instanceof LookerError && failure.logTail ? failure.logTail : undefined;
    return {
      result: failure === undefined ? "passed" : "failed",
      exitCode,
      ...(failure === undefined ? {} : { error: messageOf(failure) }),
      ...(failure instanceof LookerBackupError && failure.hint ? { hint: failure.hint } : {}),
      archive: this.request.archive,
      target: this.targetName,
      backup: this.backup,
      startedAt: this.startedAt.toISOString(),
      ...(this.rtoMs === undefined ? {} : { rtoMs: this.rtoMs }),
      ...(this.rpoMs === undefined ? {} : { rpoMs: this.rpoMs }),
      steps: this.steps.steps,
      bytesRestored: this.bytesRestored,
      filesVerified: this.filesVerified,
      ...(logTail ? { logTail } : {}),
    };
  }
}

/**
 * The ports the restored Looker will use. By default what the restored lookerstart.cfg says (read as Looker's script
 * reads it). With webPort/apiPort given, the drill's own copy of lookerstart.cfg gets them appended (a later --port
 * wins), after the home was verified against the catalog: a drill on a host where production runs on 9999 can run
 * beside it. Read back to prove the script will see them.
 */
async function resolveDrillPorts(
  request: DrillRequest,
  target: DrillTarget,
): Promise<{ web: number; api: number; detail: string }> {
  const lookerDir = posix.join(target.home, "looker");
  const source = { name: target.description, config: { host: target.lookerHost, lookerDir } };
  const restored = await readStartOptions(source);
  if (request.webPort === undefined && request.apiPort === undefined) {
    return {
      web: restored.port,
      api: restored.corePort,
      detail: `web ${restored.port}, API ${restored.corePort}, as the restored lookerstart.cfg says`,
    };
  }
  const web = request.webPort ?? restored.port;
  const api = request.apiPort ?? restored.corePort;
  const file = posix.join(lookerDir, "lookerstart.cfg");
  const before = await target.lookerHost.readFile(file).then(
    (content) => content.toString("utf8"),
    (error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return "";
      throw error;
    },
  );
  const override = [
    "# looker-backup drill: this drill's ports (the backup's own lookerstart.cfg is the part above)",
    `LOOKERPORT=${web}`,
    `LOOKERARGS="\${LOOKERARGS} --port=${web} --core-port=${api}"`,
  ].join("\n");
  await target.lookerHost.writeFile(
    file,
    `${before}${before === "" || before.endsWith("\n") ? "" : "\n"}${override}\n`,
    0o644,
  );
  const after = await readStartOptions(source);
  if (after.port !== web || after.corePort !== api) {
    throw new LookerBackupError(
      `the drill's lookerstart.cfg still gives web ${after.port}, API ${after.corePort} after setting ${web}, ${api}`,
      {
        hint: "check the restored lookerstart.cfg for settings made after LOOKERARGS, and the drill's web-port/api-port",
      },
    );
  }
  return { web, api, detail: `web ${web}, API ${api}: lookerstart.cfg rewritten for this drill` };
}

async function extractLocally(
  request: DrillRequest,
  staging: string,
  signed: SignedDigest | undefined,
): Promise<Extracted> {
  const source = createReadStream(request.archive, { highWaterMark: 1 << 20 });
  const { progress } = request;
  // The archive's bytes read against its size, as restore shows them (the step is the phase already).
  progress?.phase(EXTRACT_STEP, {
    total: (await stat(request.archive)).size,
    sample: () => source.bytesRead,
    alongside: "plaintext",
  });
  const onProgress =
    progress && ((p: { bytes: number }) => progress.update(source.bytesRead, { alongside: p.bytes }));
  // The home travels to the target through GNU tar without them: extended attributes are not part of a drill.
  const outcome = await extractToStaging(source, request.keys, staging, onProgress, {
    xattrs: false,
    ...(signed ? { signed } : {}),
    // Its writer threads have stopped when it returns: the teardown's removal of staging does not race them.
    ...(request.signal ? { signal: request.signal } : {}),
  });
  return {
    staging,
    catalog: outcome.catalog,
    meta: outcome.meta,
    bytes: outcome.bytes,
    members: outcome.members,
  };
}

/** The catalog with one staged file's digest and size as they are now (the drill rewrote looker-db.yml). */
async function withRestagedFile(
  catalog: ReadonlyMap<string, CatalogEntry>,
  staging: string,
  archivePath: string,
): Promise<ReadonlyMap<string, CatalogEntry>> {
  const entry = catalog.get(archivePath);
  if (entry === undefined) return catalog;
  const content = await readFile(join(staging, archivePath));
  const updated = new Map(catalog);
  updated.set(archivePath, {
    ...entry,
    size: content.length,
    sha256: sha256Hex(content),
  });
  return updated;
}

async function decryptKeyfile(request: DrillRequest): Promise<Buffer> {
  const path = request.keyfile ?? join(dirname(request.archive), keyfileNameFor(basename(request.archive)));
  let ciphertext: Buffer;
  try {
    ciphertext = await readFile(path);
  } catch (error) {
    throw new InputError(
      `no key file ${path} for this keystore-independent backup`,
      "store the key file beside the archive or pass --keyfile",
      error,
    );
  }
  const identities = [...(request.keyfileIdentities ?? request.keys.identities)];
  return decryptBuffer(ciphertext, { identities });
}

/**
 * The key file goes to a private temp dir of the looker user (0600), lives only as long as restore_dr_backup runs,
 * and is removed whatever happens. A failure is returned, not thrown: the boot that follows gives the verdict, and
 * its refusal (with Looker's log) is what the report must show.
 */
async function restoreDrBackup(
  steps: StepLog,
  target: DrillTarget,
  looker: LookerNode,
  keyfile: Buffer | Error,
): Promise<Error | undefined> {
  return steps
    .run(
      "restore_dr_backup",
      async () => {
        if (keyfile instanceof Error) throw keyfile;
        const dir = await target.lookerHost.makeTempDir("looker-drill-keyfile-");
        try {
          const path = posix.join(dir, "keyfile.json");
          await target.lookerHost.writeFile(path, keyfile, 0o600);
          await looker.restoreDrBackup(path);
        } finally {
          await target.lookerHost.remove(dir).catch(() => undefined);
          keyfile.fill(0);
        }
      },
      () => "KEK re-encrypted under the drill host's CMK",
    )
    .then(
      () => undefined,
      (error: unknown) => error as Error,
    );
}

async function provision(command: string, signal: AbortSignal | undefined): Promise<string> {
  const result = await runProcess("/bin/sh", ["-c", command], {
    jobEnvironment: true,
    timeoutMs: HOOK_TIMEOUT_MS,
    ...(signal ? { signal } : {}),
  });
  if (result.code !== 0) {
    throw new LookerBackupError(`provision command exited ${result.code}: ${lastLine(result.stderr)}`, {
      hint: "run the command by hand; it must print the new host's address as its last line",
    });
  }
  const host = lastLine(result.stdout);
  if (host === "")
    throw new LookerBackupError("provision command printed no host", {
      hint: "print the address as the last line of stdout",
    });
  return host;
}

async function connectTarget(request: DrillRequest, provisioned: string | undefined): Promise<DrillTarget> {
  const spec = request.target;
  if (spec.kind === "dir") return LocalDirTarget.create(spec.dir);
  const host = provisioned ?? spec.host;
  if (!host)
    throw new InputError("no target host", "pass --target-host, or a --provision-command that prints it");
  const user = spec.user ?? DEFAULT_TARGET_USER;
  if (user !== DEFAULT_TARGET_USER) {
    throw new InputError(
      `--target-user ${user}: the drill must connect as root`,
      "it creates the looker user and places /home/looker; use root",
    );
  }
  const ssh = await waitForSsh(
    {
      host,
      port: spec.port ?? DEFAULT_SSH_PORT,
      username: user,
      privateKey: spec.privateKey,
      knownHosts: spec.knownHosts,
    },
    {
      timeoutMs: spec.sshTimeoutMs ?? DEFAULT_SSH_TIMEOUT_SECONDS * 1000,
      ...(request.signal ? { signal: request.signal } : {}),
    },
  );
  return new SshTarget(ssh, host);
}

function backupInfo(meta: Record<string, unknown>): DrillBackupInfo {
  const text = (key: string) => (typeof meta[key] === "string" ? (meta[key] as string) : undefined);
  return {
    ...(text("instance") ? { instance: text("instance") } : {}),
    ...(text("startedAt") ? { startedAt: text("startedAt") } : {}),
    ...(text("backend") ? { backend: text("backend") } : {}),
    keystoreIndependent: meta.keystoreIndependent === true,
    ...(text("backupUid") ? { backupUid: text("backupUid") } : {}),
  };
}

function describeTargetSpec(spec: DrillTargetSpec): string {
  return spec.kind === "dir"
    ? `dir:${spec.dir}`
    : `${spec.user ?? DEFAULT_TARGET_USER}@${spec.host ?? "(provisioned)"}:${spec.port ?? DEFAULT_SSH_PORT}`;
}

/** The boot failure stays the error (exit 5, log tail); the earlier restore_dr_backup failure explains it. */
function withCause(error: unknown, drFailure: Error): unknown {
  if (!(error instanceof LookerError)) return error;
  return new LookerError(`${error.message} (after restore_dr_backup failed: ${messageOf(drFailure)})`, {
    ...(error.hint ? { hint: error.hint } : {}),
    ...(error.logTail ? { logTail: error.logTail } : {}),
    cause: error,
  });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function lastLine(text: string): string {
  return (
    text
      .split("\n")
      .map((line) => line.trim())
      .filter(Boolean)
      .pop() ?? ""
  );
}
