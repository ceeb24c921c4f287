/**
 * A job of GitHub's Actions runner (github.com/actions/runner), as far as a node action sees it, so end-to-end tests
 * can run the bundled entries the way a self-hosted runner does:
 *
 * - each step (main, and later post) is its own `node <entry>` process, started in GITHUB_WORKSPACE with the runner's
 *   environment (Handlers/NodeScriptActionHandler.cs, Handlers/Handler.cs, ActionRunner.cs, Sdk/ProcessInvoker.cs);
 * - each step gets fresh, empty GITHUB_OUTPUT, GITHUB_STATE, GITHUB_STEP_SUMMARY, GITHUB_ENV and GITHUB_PATH files,
 *   read after the step (FileCommandManager.cs): state comes back as STATE_<name> in the post step, GITHUB_ENV and
 *   GITHUB_PATH change the environment of later steps;
 * - workflow commands on stdout and stderr are consumed and everything else is logged through the SecretMasker
 *   (runner-commands.ts);
 * - cancelling a step sends SIGINT, after 7.5 s SIGTERM, after 2.5 s more SIGKILL (ProcessInvoker.cs,
 *   CancelAndKillProcessTree; NodeScriptActionHandler passes killProcessOnCancel: false);
 * - post steps run at the end of the job in reverse order of their main steps, under their `post-if` (default
 *   always(), so also after a failed or cancelled main step);
 * - "Complete job" kills every process started during the job whose environment carries this job's
 *   RUNNER_TRACKING_ID (JobExtension.cs, FinalizeJob: orphan process cleanup) and empties RUNNER_TEMP
 *   (TempDirectoryManager.cs).
 *
 * A job that a test does not complete (it failed or timed out) is cleaned up by cleanUpRunnerJobs() (call it in
 * afterEach) and, failing that, when the test process exits: every process carrying its tracking id is killed.
 * Only processes whose environment holds exactly this job's id are ever signalled.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bundledEntry } from "./bundle.js";
import { onProcessExit } from "./on-exit.js";
import {
  type ActionManifest,
  DEPRECATED_COMMANDS,
  inputEnvironment,
  parseFileCommand,
  readActionManifest,
  SecretMasker,
  StepOutput,
  type WorkflowCommand,
} from "./runner-commands.js";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** ProcessInvoker.cs: _sigintTimeout and _sigtermTimeout. */
export const SIGINT_TIMEOUT_MS = 7500;
export const SIGTERM_TIMEOUT_MS = 2500;
/** ProcessInvoker.cs ProcessExitedHandler: after exit, output streams still held open are given 5 s. */
const STREAM_DRAIN_MS = 5000;

// ---------------------------------------------------------------------------------------------------- actions

/** A node action: its manifest and the files its `runs.main` / `runs.post` name. */
export interface NodeAction {
  manifest: ActionManifest;
  main: string;
  post?: string;
}

/** An action from its action.yml, its entries resolved against the action's directory as the runner does. */
export function nodeAction(actionYml: string): NodeAction {
  const manifest = readActionManifest(actionYml);
  const dir = dirname(actionYml);
  return {
    manifest,
    main: resolve(dir, manifest.main),
    ...(manifest.post ? { post: resolve(dir, manifest.post) } : {}),
  };
}

/**
 * The repository's own action (`backup`: action.yml at the root, `restore`: restore/action.yml) with the entries it
 * names under dist/ bundled from the current sources (test/helpers/bundle.ts), so a test runs what would ship.
 */
export async function bundledAction(which: "backup" | "restore"): Promise<NodeAction> {
  const manifest = readActionManifest(
    join(REPO_ROOT, which === "backup" ? "action.yml" : join("restore", "action.yml")),
  );
  const entry = async (file: string) => {
    const name = basename(file, ".js");
    if (name !== "backup-main" && name !== "backup-post" && name !== "restore-main") {
      throw new Error(`${manifest.name}: runs names ${file}, which is not a bundled entry`);
    }
    return bundledEntry(name);
  };
  return {
    manifest,
    main: await entry(manifest.main),
    ...(manifest.post ? { post: await entry(manifest.post) } : {}),
  };
}

// ------------------------------------------------------------------------------------------------------- jobs

export interface RunnerJobOptions {
  /**
   * The job's environment as the workflow and the job message give it: the workflow's job-level `env:` and the
   * values the runner takes from the service (ACTIONS_RESULTS_URL, ACTIONS_RUNTIME_TOKEN, ACTIONS_CACHE_SERVICE_V2,
   * GITHUB_RUN_ID, GITHUB_REPOSITORY, ...), which replace this harness's defaults.
   */
  env?: Record<string, string>;
  /** Values of `secrets.*` the workflow uses: masked from the start (Worker.cs, InitializeSecretMasker). */
  secrets?: string[];
  /** github.token (a secret, so masked); `${{ github.token }}` in an input default resolves to it. */
  token?: string;
  /** RUNNER_TEMP; emptied at the start and at the end of the job, as the runner does. Default: a new directory. */
  runnerTemp?: string;
  /** ACTIONS_STEP_DEBUG: `::debug::` lines appear in the log. */
  stepDebug?: boolean;
}

export type StepCondition = "success()" | "always()" | "failure()" | "cancelled()";

export interface StepOptions {
  /** The step's `with:` values; every other input of the manifest gets its default. */
  with?: Record<string, string>;
  /** The step's `env:`. */
  env?: Record<string, string>;
  /** The step's `if:`; default success(). */
  if?: StepCondition;
  /**
   * Cancels the job (as the Cancel button or a timeout does) when the returned promise resolves while this step
   * still runs; the step's process then gets the runner's SIGINT / SIGTERM / SIGKILL sequence.
   */
  cancelWhen?: (step: RunningStep) => Promise<unknown>;
}

export interface RunningStep {
  readonly pid: number;
  /** The visible log so far. */
  log(): string;
  running(): boolean;
  /** Resolves true once `check` passes, polling every `intervalMs`; false if the step ends first. */
  until(check: () => boolean | Promise<boolean>, intervalMs?: number): Promise<boolean>;
}

export interface StepResult {
  action: string;
  stage: "main" | "post";
  conclusion: "success" | "failure" | "cancelled" | "skipped";
  pid?: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The signals the cancellation sent, in order (empty when not cancelled). */
  cancelSignals: NodeJS.Signals[];
  /** Exactly what the process wrote, unmasked: for assertions on the action's own output. */
  stdout: string;
  stderr: string;
  /** The step log a user sees: masked, workflow commands consumed, annotations as `##[error]...`. */
  log: string;
  commands: WorkflowCommand[];
  /** Uses of set-output, save-state, set-env or add-path. */
  deprecatedCommands: WorkflowCommand[];
  outputs: Record<string, string>;
  /** What this step saved for its post step. */
  state: Record<string, string>;
  /** The GITHUB_STEP_SUMMARY file as written, and as the runner uploads it (masked line by line). */
  summary: string;
  visibleSummary: string;
  /** GITHUB_ENV pairs and GITHUB_PATH entries this step added. */
  env: Record<string, string>;
  path: string[];
  /** The environment the step's process was started with. */
  environment: Record<string, string>;
  /** Why the runner failed the step despite its exit code (a file command it could not read, a bad command). */
  runnerErrors: string[];
}

export interface CompleteOptions {
  /** Called after the post steps, before the orphan clean-up: to look at what the steps left running. */
  beforeOrphanCleanup?: () => unknown;
}

export interface JobCompletion {
  posts: StepResult[];
  /** The processes "Complete job" killed: pid and name. */
  orphans: { pid: number; name: string }[];
}

/** The host environment a runner service passes on to its jobs (svc.sh's .env/.path): the basics only. */
const HOST_VARIABLES = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "SHELL", "TZ"];
/** Set by the runner itself; a test that tries to set them is wrong about what it tests. */
const RUNNER_OWNED = [
  "RUNNER_TRACKING_ID",
  "RUNNER_TEMP",
  "GITHUB_ACTIONS",
  "GITHUB_OUTPUT",
  "GITHUB_STATE",
  "GITHUB_STEP_SUMMARY",
  "GITHUB_ENV",
  "GITHUB_PATH",
  "GITHUB_WORKSPACE",
];
/** FileCommandManager.cs: the file each command extension creates per step, under RUNNER_TEMP. */
const FILE_COMMANDS = {
  GITHUB_PATH: "add_path_",
  GITHUB_ENV: "set_env_",
  GITHUB_STEP_SUMMARY: "step_summary_",
  GITHUB_STATE: "save_state_",
  GITHUB_OUTPUT: "set_output_",
} as const;
type FileCommand = keyof typeof FILE_COMMANDS;

const openJobs = new Set<RunnerJob>();
let exitHookInstalled = false;

export async function startRunnerJob(options: RunnerJobOptions = {}): Promise<RunnerJob> {
  const root = await mkdtemp(join(tmpdir(), "lb-runner-job-"));
  const job = new RunnerJob(root, options);
  await job.initialize();
  openJobs.add(job);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // Synchronous: a killed test process runs no async clean-up.
    onProcessExit(() => {
      for (const open of openJobs) killJobProcesses(open.id);
    });
  }
  return job;
}

/**
 * For afterEach/afterAll: every job a test started and did not complete is ended now: all processes carrying its
 * tracking id are killed (SIGKILL), its directories removed. Never touches processes of other jobs.
 */
export async function cleanUpRunnerJobs(): Promise<{ pid: number; name: string }[]> {
  const killed: { pid: number; name: string }[] = [];
  for (const job of [...openJobs]) killed.push(...(await job.abandon()));
  return killed;
}

interface PostStep {
  action: NodeAction;
  options: StepOptions;
  state: Record<string, string>;
  condition: string;
}

export class RunnerJob {
  /** RUNNER_TRACKING_ID: JobExtension.cs, `github_` + a new GUID per job. */
  readonly id = `github_${randomUUID()}`;
  readonly runnerTemp: string;
  readonly workspace: string;
  readonly token: string;
  readonly masker = new SecretMasker();
  readonly steps: StepResult[] = [];
  private readonly fileCommandDir: string;
  private readonly jobEnv: Record<string, string>;
  /** GITHUB_ENV values set by earlier steps (Global.EnvironmentVariables). */
  private readonly addedEnv: Record<string, string> = {};
  /** GITHUB_PATH entries, newest last (Global.PrependPath). */
  private readonly prependPath: string[] = [];
  private readonly posts: PostStep[] = [];
  private readonly existingProcesses = new Set<string>();
  private running: { cancel: () => void } | undefined;
  private previousFiles: string[] = [];
  private failed = false;
  private cancelled = false;
  private done = false;

  constructor(
    private readonly root: string,
    private readonly options: RunnerJobOptions,
  ) {
    this.runnerTemp = options.runnerTemp ?? join(root, "_work", "_temp");
    this.workspace = join(root, "_work", "looker-backup", "looker-backup");
    this.fileCommandDir = join(this.runnerTemp, "_runner_file_commands");
    this.token = options.token ?? `ghs_${randomBytes(18).toString("base64url")}`;
    for (const [name, value] of Object.entries(options.env ?? {})) {
      // GITHUB_ACTIONS=true is harmless (ProcessInvoker sets it anyway); the others would defeat the harness.
      if (RUNNER_OWNED.includes(name) && !(name === "GITHUB_ACTIONS" && value === "true")) {
        throw new Error(`${name} is set by the runner, not by the job's env`);
      }
    }
    const runId = String(1_000_000 + Math.floor(Math.random() * 1_000_000));
    this.jobEnv = {
      GITHUB_ACTION: "__looker-backup",
      GITHUB_ACTOR: "octocat",
      GITHUB_API_URL: "https://api.github.com",
      GITHUB_EVENT_NAME: "workflow_dispatch",
      GITHUB_EVENT_PATH: join(this.runnerTemp, "_github_workflow", "event.json"),
      GITHUB_GRAPHQL_URL: "https://api.github.com/graphql",
      GITHUB_JOB: "backup",
      GITHUB_REF: "refs/heads/main",
      GITHUB_REF_NAME: "main",
      GITHUB_REF_TYPE: "branch",
      GITHUB_REPOSITORY: "octo-org/looker-ops",
      GITHUB_REPOSITORY_OWNER: "octo-org",
      GITHUB_RETENTION_DAYS: "90",
      GITHUB_RUN_ATTEMPT: "1",
      GITHUB_RUN_ID: runId,
      GITHUB_RUN_NUMBER: "1",
      GITHUB_SERVER_URL: "https://github.com",
      GITHUB_SHA: "0".repeat(40),
      GITHUB_WORKFLOW: "backup",
      GITHUB_WORKFLOW_REF: "octo-org/looker-ops/.github/workflows/backup.yml@refs/heads/main",
      RUNNER_ARCH: "X64",
      RUNNER_ENVIRONMENT: "self-hosted",
      RUNNER_NAME: "looker-host",
      RUNNER_OS: "Linux",
      RUNNER_TOOL_CACHE: join(root, "_work", "_tool"),
      // NodeScriptActionHandler always sets the runtime URL and token; this URL answers nothing (discard port).
      ACTIONS_RUNTIME_URL: "http://127.0.0.1:9/",
      ACTIONS_RUNTIME_TOKEN: randomBytes(24).toString("base64url"),
      ...options.env,
    };
    // Worker.cs InitializeSecretMasker: secret variables (github.token among them) and the endpoint's token.
    for (const secret of [...(options.secrets ?? []), this.token, this.jobEnv["ACTIONS_RUNTIME_TOKEN"]!]) {
      this.masker.addWithLines(secret.trim());
    }
  }

  async initialize(): Promise<void> {
    // TempDirectoryManager.InitializeTempDirectory: RUNNER_TEMP's contents are deleted at the start of each job.
    await mkdir(this.runnerTemp, { recursive: true });
    await emptyDirectory(this.runnerTemp);
    await mkdir(this.fileCommandDir, { recursive: true });
    await mkdir(this.workspace, { recursive: true });
    await mkdir(this.jobEnv["RUNNER_TOOL_CACHE"]!, { recursive: true });
    await mkdir(dirname(this.jobEnv["GITHUB_EVENT_PATH"]!), { recursive: true });
    await writeFile(this.jobEnv["GITHUB_EVENT_PATH"]!, "{}\n");
    // JobExtension.InitializeJob: the processes running before the job are never orphans of it.
    for (const proc of listProcesses()) this.existingProcesses.add(`${proc.pid}_${proc.name}`);
  }

  /** success / failure / cancelled, as the status functions of `if:` see the job. */
  get status(): "success" | "failure" | "cancelled" {
    return this.cancelled ? "cancelled" : this.failed ? "failure" : "success";
  }

  /** The processes on this machine that carry this job's tracking id now. */
  processes(): { pid: number; name: string }[] {
    return processesOfJob(this.id);
  }

  /** Cancels the job: the running step (if any) gets the runner's signal sequence, later main steps are skipped. */
  cancel(): void {
    this.cancelled = true;
    this.running?.cancel();
  }

  /** Runs the main step of `action` (a `uses:` step of the job) and registers its post step. */
  async run(action: NodeAction, options: StepOptions = {}): Promise<StepResult> {
    if (this.done) throw new Error("the job is complete");
    if (!this.conditionHolds(options.if ?? "success()")) {
      return this.record(skipped(action, "main"));
    }
    // ActionRunner.RunAsync registers the post step before the main step runs: it runs even if main is cancelled.
    // The post step gets the same `with:` and `env:`; cancelWhen belongs to this main step only.
    const { cancelWhen: _mainOnly, ...postOptions } = options;
    const post: PostStep | undefined = action.post
      ? { action, options: postOptions, state: {}, condition: action.manifest.postIf }
      : undefined;
    if (post) this.posts.push(post);
    const result = await this.runStep(action, action.main, "main", options, {});
    if (post) post.state = result.state;
    return result;
  }

  /**
   * "Complete job": the post steps (reverse order, each under its post-if), then the orphan process clean-up, then
   * RUNNER_TEMP emptied and the harness's directories removed.
   */
  async complete(options: CompleteOptions = {}): Promise<JobCompletion> {
    if (this.done) throw new Error("the job is complete");
    const posts: StepResult[] = [];
    for (const post of [...this.posts].reverse()) {
      posts.push(
        this.conditionHolds(post.condition)
          ? await this.runStep(post.action, post.action.post!, "post", post.options, post.state)
          : this.record(skipped(post.action, "post")),
      );
    }
    await options.beforeOrphanCleanup?.();
    const orphans = killJobProcesses(this.id, this.existingProcesses);
    await waitUntilGone(orphans);
    await this.finish();
    return { posts, orphans };
  }

  /** Ends a job that was not completed: kills every process of this job (no post steps). */
  async abandon(): Promise<{ pid: number; name: string }[]> {
    if (this.done) return [];
    this.cancel();
    const killed = killJobProcesses(this.id);
    await waitUntilGone(killed);
    await this.finish();
    return killed;
  }

  private async finish(): Promise<void> {
    this.done = true;
    openJobs.delete(this);
    // TempDirectoryManager.CleanupTempDirectory: emptied after the job.
    await emptyDirectory(this.runnerTemp);
    await rm(this.root, { recursive: true, force: true });
  }

  private conditionHolds(condition: string): boolean {
    switch (condition.replace(/^\$\{\{\s*|\s*\}\}$/g, "").trim()) {
      case "always()":
        return true;
      case "success()":
        return this.status === "success";
      case "failure()":
        return this.status === "failure";
      case "cancelled()":
        return this.status === "cancelled";
      default:
        throw new Error(`condition not modelled by the harness: ${condition}`);
    }
  }

  private record(result: StepResult): StepResult {
    this.steps.push(result);
    if (result.conclusion === "failure") this.failed = true;
    return result;
  }

  private async initializeFiles(): Promise<Record<FileCommand, string>> {
    // FileCommandManager.InitializeFiles: the previous step's files are deleted, new empty ones created.
    for (const file of this.previousFiles) await rm(file, { force: true });
    const suffix = randomUUID();
    const files = {} as Record<FileCommand, string>;
    for (const [name, prefix] of Object.entries(FILE_COMMANDS) as [FileCommand, string][]) {
      files[name] = join(this.fileCommandDir, prefix + suffix);
      await writeFile(files[name], "");
    }
    this.previousFiles = Object.values(files);
    return files;
  }

  private stepEnvironment(
    action: NodeAction,
    options: StepOptions,
    state: Record<string, string>,
    files: Record<FileCommand, string>,
  ): Record<string, string> {
    const env: Record<string, string> = {};
    // The worker's own environment, inherited by every process it starts; JobExtension.InitializeJob adds
    // RUNNER_TRACKING_ID to it (Environment.SetEnvironmentVariable).
    for (const name of HOST_VARIABLES) if (process.env[name] !== undefined) env[name] = process.env[name]!;
    env["RUNNER_TRACKING_ID"] = this.id;
    // ActionRunner: the env context (job env, GITHUB_ENV additions, step env), then STATE_<name>.
    Object.assign(env, this.jobEnv, this.addedEnv, options.env ?? {});
    for (const [name, value] of Object.entries(state)) env[`STATE_${name}`] = value;
    // Handler.AddInputsToEnvironment.
    Object.assign(
      env,
      inputEnvironment(action.manifest, options.with ?? {}, {
        "github.token": this.token,
        "github.run_id": this.jobEnv["GITHUB_RUN_ID"]!,
        "github.repository": this.jobEnv["GITHUB_REPOSITORY"]!,
        "runner.temp": this.runnerTemp,
      }),
    );
    // Handler.AddPrependPathToEnvironment: GITHUB_PATH entries, newest first, before PATH.
    if (this.prependPath.length > 0) {
      env["PATH"] = [...this.prependPath].reverse().join(":") + (env["PATH"] ? `:${env["PATH"]}` : "");
    }
    // The github and runner contexts' runtime variables, which win over an env of the same name.
    Object.assign(env, files, { GITHUB_WORKSPACE: this.workspace, RUNNER_TEMP: this.runnerTemp });
    // NodeScriptActionHandler removes NODE_ICU_DATA; ProcessInvoker sets GITHUB_ACTIONS, and CI unless set.
    delete env["NODE_ICU_DATA"];
    env["GITHUB_ACTIONS"] = "true";
    env["CI"] ??= "true";
    return env;
  }

  private async runStep(
    action: NodeAction,
    entry: string,
    stage: "main" | "post",
    options: StepOptions,
    state: Record<string, string>,
  ): Promise<StepResult> {
    const files = await this.initializeFiles();
    const environment = this.stepEnvironment(action, options, state, files);
    const output = new StepOutput(this.masker, this.options.stepDebug ?? false);
    const child = spawn(process.execPath, [entry], {
      cwd: this.workspace,
      env: environment,
      // ProcessInvoker redirects stdin and closes it at once when there is no input.
      stdio: ["pipe", "pipe", "pipe"],
    });
    child.stdin!.end();
    const raw = { stdout: "", stderr: "" };
    const streams = (["stdout", "stderr"] as const).map((name) => {
      const stream = child[name]!;
      stream.setEncoding("utf8");
      const lines = new LineSplitter((line) => output.line(line, name));
      stream.on("data", (chunk: string) => {
        raw[name] += chunk;
        lines.push(chunk);
      });
      return new Promise<void>((resolveStream) =>
        stream.on("close", () => {
          lines.end();
          resolveStream();
        }),
      );
    });
    const finished = waitForStep(child, streams);
    let stepCancelled = false;
    const cancelSignals: NodeJS.Signals[] = [];
    let ended = false;
    void finished.then(() => {
      ended = true;
    });
    const cancel = () => {
      if (stepCancelled || ended) return;
      stepCancelled = true;
      this.cancelled = true;
      void cancelSequence(child, finished, cancelSignals);
    };
    this.running = { cancel };
    if (options.cancelWhen) {
      const step: RunningStep = {
        pid: child.pid!,
        log: () => output.log,
        running: () => !ended,
        until: async (check, intervalMs = 50) => {
          while (!ended) {
            if (await check()) return !ended;
            await new Promise((r) => setTimeout(r, intervalMs));
          }
          return false;
        },
      };
      void options.cancelWhen(step).then(cancel, cancel);
    }
    // A job cancelled before this step started (e.g. while an earlier step's post ran) does not cancel it: only
    // main steps under success() are skipped, which run() already checked.
    const { code, signal } = await finished;
    this.running = undefined;

    // FileCommandManager.ProcessFiles after the step, whatever its result.
    const runnerErrors: string[] = [];
    const read = async (name: FileCommand) => readFile(files[name], "utf8").catch(() => "");
    const pairs = async (name: FileCommand) => {
      try {
        return parseFileCommand(await read(name));
      } catch (error) {
        runnerErrors.push(
          `Unable to process file command '${name}' successfully: ${(error as Error).message}`,
        );
        return [];
      }
    };
    const outputs = { ...output.commandOutputs, ...Object.fromEntries(await pairs("GITHUB_OUTPUT")) };
    const stepState = { ...output.commandState, ...Object.fromEntries(await pairs("GITHUB_STATE")) };
    const envPairs = (await pairs("GITHUB_ENV")).filter(([name]) => {
      // SetEnvFileCommand's block list.
      if (name.toUpperCase() !== "NODE_OPTIONS") return true;
      runnerErrors.push("Can't store NODE_OPTIONS output parameter using '$GITHUB_ENV' command.");
      return false;
    });
    const env = Object.fromEntries(envPairs);
    Object.assign(this.addedEnv, env);
    const path = (await read("GITHUB_PATH")).split("\n").filter((line) => line !== "");
    for (const entryPath of path) {
      const at = this.prependPath.indexOf(entryPath);
      if (at >= 0) this.prependPath.splice(at, 1);
      this.prependPath.push(entryPath);
    }
    const summary = await read("GITHUB_STEP_SUMMARY");
    const visibleSummary = summary
      .split("\n")
      .map((line) => this.masker.mask(line))
      .join("\n");
    const failed = code !== 0 || output.commandFailed || runnerErrors.length > 0;
    return this.record({
      action: action.manifest.name,
      stage,
      conclusion: stepCancelled ? "cancelled" : failed ? "failure" : "success",
      pid: child.pid!,
      code,
      signal,
      cancelSignals,
      stdout: raw.stdout,
      stderr: raw.stderr,
      log: output.log,
      commands: output.commands,
      deprecatedCommands: output.commands.filter((c) => DEPRECATED_COMMANDS.has(c.command.toLowerCase())),
      outputs,
      state: stepState,
      summary,
      visibleSummary,
      env,
      path,
      environment,
      runnerErrors,
    });
  }
}

function skipped(action: NodeAction, stage: "main" | "post"): StepResult {
  return {
    action: action.manifest.name,
    stage,
    conclusion: "skipped",
    code: null,
    signal: null,
    cancelSignals: [],
    stdout: "",
    stderr: "",
    log: "",
    commands: [],
    deprecatedCommands: [],
    outputs: {},
    state: {},
    summary: "",
    visibleSummary: "",
    env: {},
    path: [],
    environment: {},
    runnerErrors: [],
  };
}

/**
 * The step is over when its process exited and its output streams closed, or 5 s after the exit if something the
 * step started still holds them open (ProcessInvoker.cs ProcessExitedHandler); the runner then stops reading.
 */
function waitForStep(
  child: ChildProcess,
  streams: Promise<void>[],
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolveStep, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      let timer: NodeJS.Timeout | undefined;
      const drained = new Promise<void>((r) => {
        timer = setTimeout(r, STREAM_DRAIN_MS);
      });
      void Promise.race([Promise.all(streams), drained]).then(() => {
        clearTimeout(timer);
        child.stdout?.destroy();
        child.stderr?.destroy();
        resolveStep({ code, signal });
      });
    });
  });
}

/**
 * ProcessInvoker.CancelAndKillProcessTree with killProcessOnCancel false: SIGINT, up to 7.5 s for the process to
 * end, SIGTERM, up to 2.5 s, then KillProcessTree, which on Linux is NixKillProcessTree: Process.Kill() of the step's
 * own process (SIGKILL). Its descendants are left to the orphan clean-up at the end of the job, as on the runner.
 */
async function cancelSequence(
  child: ChildProcess,
  finished: Promise<unknown>,
  sent: NodeJS.Signals[],
): Promise<void> {
  const endsWithin = async (ms: number) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((r) => {
      timer = setTimeout(() => r(false), ms);
    });
    const ended = await Promise.race([finished.then(() => true as const), timeout]);
    clearTimeout(timer);
    return ended;
  };
  for (const [signal, wait] of [
    ["SIGINT", SIGINT_TIMEOUT_MS],
    ["SIGTERM", SIGTERM_TIMEOUT_MS],
  ] as const) {
    let delivered = false;
    try {
      delivered = process.kill(child.pid!, signal);
    } catch {
      // SendSignal: a failed kill() moves on to the next step of the sequence.
    }
    if (delivered) {
      sent.push(signal);
      if (await endsWithin(wait)) return;
    }
  }
  if (child.exitCode === null && child.signalCode === null) {
    sent.push("SIGKILL");
    child.kill("SIGKILL");
  }
}

/**
 * Splits a text stream into lines as .NET's StreamReader.ReadLine does (ProcessInvoker reads the step's output with
 * it): "\n", "\r\n" and a lone "\r" end a line; a last line without a terminator is still a line.
 */
export class LineSplitter {
  private pending = "";

  constructor(private readonly onLine: (line: string) => void) {}

  push(chunk: string): void {
    let text = this.pending + chunk;
    this.pending = "";
    for (;;) {
      const at = text.search(/[\r\n]/);
      if (at < 0) break;
      if (text[at] === "\r" && at === text.length - 1) {
        // A "\r" at the end of a chunk may be the first half of "\r\n": wait for the next chunk.
        break;
      }
      this.onLine(text.slice(0, at));
      text = text.slice(at + (text[at] === "\r" && text[at + 1] === "\n" ? 2 : 1));
    }
    this.pending = text;
  }

  end(): void {
    if (this.pending.endsWith("\r")) this.pending = this.pending.slice(0, -1);
    else if (this.pending === "") return;
    this.onLine(this.pending);
    this.pending = "";
  }
}

async function emptyDirectory(dir: string): Promise<void> {
  for (const entry of await readdir(dir).catch(() => [] as string[])) {
    await rm(join(dir, entry), { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------------ processes

/** Every process on this machine with its name, as Process.GetProcesses() sees them (/proc/<pid>/stat's comm). */
export function listProcesses(): { pid: number; name: string }[] {
  const processes: { pid: number; name: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      processes.push({ pid: Number(entry), name: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")) });
    } catch {
      // gone meanwhile
    }
  }
  return processes;
}

/**
 * A process's environment as LinuxProcessExtensions.GetEnvironmentVariable reads it: /proc/<pid>/environ, split on
 * NUL, each entry on its first `=`. Undefined when it cannot be read (gone, a zombie, another user's).
 */
export function processEnvironment(pid: number): Map<string, string> | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/environ`, "utf8");
  } catch {
    return undefined;
  }
  const env = new Map<string, string>();
  for (const entry of text.split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

/** The processes (other than this one) whose RUNNER_TRACKING_ID equals `trackingId`, ignoring case as the runner. */
export function processesOfJob(
  trackingId: string,
  skip?: ReadonlySet<string>,
): { pid: number; name: string }[] {
  return listProcesses().filter(
    (proc) =>
      proc.pid !== process.pid &&
      !skip?.has(`${proc.pid}_${proc.name}`) &&
      processEnvironment(proc.pid)?.get("RUNNER_TRACKING_ID")?.toLowerCase() === trackingId.toLowerCase(),
  );
}

/**
 * JobExtension.FinalizeJob's orphan process clean-up: Process.Kill() (SIGKILL) of every process started during the
 * job (not in `existing`, the `<pid>_<name>` snapshot taken at its start) that carries the job's tracking id.
 * Synchronous, so it can run in an exit handler. Returns what it killed.
 */
export function killJobProcesses(
  trackingId: string,
  existing?: ReadonlySet<string>,
): { pid: number; name: string }[] {
  const killed: { pid: number; name: string }[] = [];
  for (const proc of processesOfJob(trackingId, existing)) {
    try {
      process.kill(proc.pid, "SIGKILL");
      killed.push(proc);
    } catch {
      // ended meanwhile
    }
  }
  return killed;
}

/**
 * Waits until the given processes are gone or zombies. The runner does not wait after Process.Kill(); the harness
 * does so that what a test checks next cannot see a process in the middle of dying.
 */
async function waitUntilGone(processes: { pid: number }[]): Promise<void> {
  const alive = (pid: number) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
    } catch {
      return false;
    }
  };
  for (let round = 0; round < 100 && processes.some((p) => alive(p.pid)); round++) {
    await new Promise((r) => setTimeout(r, 50));
  }
}
