/**
 * The pure parts of the Actions runner (github.com/actions/runner) that the job harness in runner-job.ts needs: how
 * it turns an action's inputs into INPUT_* variables, parses workflow commands on a step's output, masks secrets in
 * the log and reads the file commands (GITHUB_OUTPUT, GITHUB_STATE, GITHUB_ENV, GITHUB_PATH) after a step.
 * Each piece names the runner source it follows; where this stand-in differs, it is stricter for the tests.
 */
import { readFileSync } from "node:fs";
import { parse } from "yaml";

// ------------------------------------------------------------------------------------------------ action.yml

export interface ActionManifest {
  name: string;
  /** Input name -> default (the raw string, expressions unevaluated); "" when the manifest gives none. */
  inputs: Map<string, string>;
  using: string;
  main: string;
  post?: string;
  /** The post step's condition; the runner's default is always() (ActionManifestManager.cs, CleanupCondition). */
  postIf: string;
}

/** Reads an action.yml the way ActionManifestManager.ConvertInputs and ConvertRuns do, for node actions only. */
export function readActionManifest(path: string): ActionManifest {
  const doc = parse(readFileSync(path, "utf8")) as {
    name?: string;
    inputs?: Record<string, { default?: unknown } | null>;
    runs?: { using?: string; main?: string; post?: string; "post-if"?: string };
  };
  const runs = doc.runs ?? {};
  if (!runs.using || !/^node\d+$/.test(runs.using) || !runs.main) {
    throw new Error(`${path}: not a node action (runs.using ${runs.using}, runs.main ${runs.main})`);
  }
  const inputs = new Map<string, string>();
  for (const [name, metadata] of Object.entries(doc.inputs ?? {})) {
    // ConvertInputs: an input without `default` gets the empty string.
    const value = metadata?.default;
    inputs.set(name, value === undefined || value === null ? "" : String(value));
  }
  return {
    name: doc.name ?? path,
    inputs,
    using: runs.using,
    main: runs.main,
    ...(runs.post ? { post: runs.post } : {}),
    postIf: runs["post-if"] ?? "always()",
  };
}

/** Values for the `${{ ... }}` expressions an input default may hold (`github.token`, `github.run_id`, ...). */
export type ExpressionContext = Record<string, string>;

/**
 * Evaluates an input default. The runner evaluates a full expression language (ActionManifestManager.cs,
 * EvaluateDefaultInput); this stand-in knows plain context lookups such as `${{ github.token }}` and refuses
 * anything else, so a default it cannot evaluate fails the test instead of passing a wrong value.
 */
export function evaluateDefault(raw: string, context: ExpressionContext): string {
  return raw.replace(/\$\{\{\s*([^}]*?)\s*\}\}/g, (_, expression: string) => {
    const value = context[expression.toLowerCase()];
    if (value === undefined)
      throw new Error(`input default uses an expression this harness cannot evaluate: ${raw}`);
    return value;
  });
}

/**
 * The INPUT_* variables of a step, as ActionRunner.RunAsync merges them (every input of the manifest; a `with:` value
 * wins over the evaluated default) and Handler.AddInputsToEnvironment names them (`INPUT_` + the name with spaces
 * replaced by `_`, upper-cased; hyphens stay). The runner only warns about a `with:` key the manifest does not
 * declare; this stand-in throws, so a misspelt input cannot go unnoticed.
 */
export function inputEnvironment(
  manifest: Pick<ActionManifest, "inputs" | "name">,
  withValues: Record<string, string>,
  context: ExpressionContext,
): Record<string, string> {
  const declared = new Map([...manifest.inputs.keys()].map((name) => [name.toLowerCase(), name]));
  const unexpected = Object.keys(withValues).filter((name) => !declared.has(name.toLowerCase()));
  if (unexpected.length > 0) {
    throw new Error(`Unexpected input(s) '${unexpected.join("', '")}' for ${manifest.name}`);
  }
  const merged = new Map<string, string>();
  // Input names compare case-insensitively in the runner (userInputs/validInputs use OrdinalIgnoreCase).
  for (const [name, value] of Object.entries(withValues)) merged.set(name.toLowerCase(), value);
  for (const [name, raw] of manifest.inputs) {
    if (!merged.has(name.toLowerCase())) merged.set(name.toLowerCase(), evaluateDefault(raw, context));
  }
  const env: Record<string, string> = {};
  for (const [name, value] of merged) env[`INPUT_${name.replaceAll(" ", "_").toUpperCase()}`] = value;
  return env;
}

// --------------------------------------------------------------------------------------------- secret masker

/**
 * The runner's SecretMasker (src/Sdk/DTLogging/Logging/SecretMasker.cs): every occurrence of every registered value
 * (ordinal, case-sensitive) is found, overlapping or touching ranges are merged, and each range becomes `***`.
 * The runner also registers encoded forms of each value (base64, JSON, URI and XML escapes: HostContext.cs
 * AddValueEncoder); this stand-in masks only the values themselves, so a leak test here is stricter.
 */
export class SecretMasker {
  private readonly values = new Set<string>();

  add(value: string): void {
    if (value) this.values.add(value);
  }

  get secrets(): readonly string[] {
    return [...this.values];
  }

  mask(input: string): string {
    const ranges: [number, number][] = [];
    for (const value of this.values) {
      for (let at = input.indexOf(value); at >= 0; at = input.indexOf(value, at + 1)) {
        ranges.push([at, at + value.length]);
      }
    }
    if (ranges.length === 0) return input;
    ranges.sort((a, b) => a[0] - b[0]);
    const merged: [number, number][] = [];
    for (const range of ranges) {
      const last = merged.at(-1);
      if (last && range[0] <= last[1]) last[1] = Math.max(last[1], range[1]);
      else merged.push([...range]);
    }
    let out = "";
    let from = 0;
    for (const [start, end] of merged) {
      out += `${input.slice(from, start)}***`;
      from = end;
    }
    return out + input.slice(from);
  }

  /**
   * What AddMaskCommandExtension does with `::add-mask::` data (ActionCommandManager.cs), and Worker.cs with secret
   * variables: the whole value, then each of its lines trimmed, empty ones dropped.
   */
  addWithLines(value: string): void {
    this.add(value);
    for (const line of value.split(/[\r\n]/)) {
      const trimmed = line.trim();
      if (trimmed) this.add(trimmed);
    }
  }
}

// ---------------------------------------------------------------------------------------- workflow commands

export interface WorkflowCommand {
  command: string;
  properties: Record<string, string>;
  data: string;
  /** `::name::` (ActionCommand.TryParseV2) or the older `##[name]` (ActionCommand.TryParse). */
  syntax: "::" | "##[";
  stream: "stdout" | "stderr";
}

/** The commands the runner registers (ActionCommandManager.cs, each IActionCommandExtension's Command). */
export const REGISTERED_COMMANDS = [
  "add-mask",
  "add-matcher",
  "add-path",
  "debug",
  "echo",
  "endgroup",
  "error",
  "group",
  "notice",
  "remove-matcher",
  "save-state",
  "set-env",
  "set-output",
  "warning",
] as const;

/**
 * Commands GitHub deprecated in favour of the file commands (set-output, save-state) or disabled for security
 * (set-env, add-path: they fail the step unless ACTIONS_ALLOW_UNSECURE_COMMANDS is set).
 */
export const DEPRECATED_COMMANDS: ReadonlySet<string> = new Set([
  "set-output",
  "save-state",
  "set-env",
  "add-path",
]);

const unescapeWith = (text: string, mappings: [string, string][]) =>
  mappings.reduce((value, [token, replacement]) => value.replaceAll(replacement, token), text);
// ActionCommand.cs: _escapeDataMappings, _escapePropertyMappings and _escapeMappings, applied in this order.
const DATA_ESCAPES: [string, string][] = [
  ["\r", "%0D"],
  ["\n", "%0A"],
  ["%", "%25"],
];
const PROPERTY_ESCAPES: [string, string][] = [
  ["\r", "%0D"],
  ["\n", "%0A"],
  [":", "%3A"],
  [",", "%2C"],
  ["%", "%25"],
];
const LEGACY_ESCAPES: [string, string][] = [
  [";", "%3B"],
  ["\r", "%0D"],
  ["\n", "%0A"],
  ["]", "%5D"],
  ["%", "%25"],
];

/**
 * Parses one output line as ActionCommand.TryParseV2 (`::name k=v,k=v::data`, after trimming leading space) and,
 * failing that, ActionCommand.TryParse (`##[name k=v;k=v]data` anywhere in the line). Unregistered names are not
 * commands: the line is plain output.
 */
export function parseWorkflowCommand(
  line: string,
  stream: WorkflowCommand["stream"],
  registered: ReadonlySet<string>,
): WorkflowCommand | undefined {
  const isRegistered = (name: string) => [...registered].some((r) => r.toLowerCase() === name.toLowerCase());
  const trimmed = line.trimStart();
  if (trimmed.startsWith("::")) {
    const end = trimmed.indexOf("::", 2);
    if (end >= 0) {
      const info = trimmed.slice(2, end);
      const space = info.indexOf(" ");
      const command = space < 0 ? info : info.slice(0, space);
      if (isRegistered(command)) {
        const properties: Record<string, string> = {};
        if (space > 0) {
          for (const part of info
            .slice(space + 1)
            .trim()
            .split(",")
            .filter(Boolean)) {
            const eq = part.indexOf("=");
            if (eq > 0 && eq < part.length - 1) {
              properties[part.slice(0, eq)] = unescapeWith(part.slice(eq + 1), PROPERTY_ESCAPES);
            }
          }
        }
        return {
          command,
          properties,
          data: unescapeWith(trimmed.slice(end + 2), DATA_ESCAPES),
          syntax: "::",
          stream,
        };
      }
    }
  }
  const prefix = line.indexOf("##[");
  if (prefix < 0) return undefined;
  const close = line.indexOf("]", prefix);
  if (close < 0) return undefined;
  const info = line.slice(prefix + 3, close);
  const space = info.indexOf(" ");
  const command = space < 0 ? info : info.slice(0, space);
  if (!isRegistered(command)) return undefined;
  const properties: Record<string, string> = {};
  if (space > 0) {
    for (const part of info
      .slice(space + 1)
      .split(";")
      .filter(Boolean)) {
      const eq = part.indexOf("=");
      if (eq > 0 && eq < part.length - 1)
        properties[part.slice(0, eq)] = unescapeWith(part.slice(eq + 1), LEGACY_ESCAPES);
    }
  }
  return {
    command,
    properties,
    data: unescapeWith(line.slice(close + 1), LEGACY_ESCAPES),
    syntax: "##[",
    stream,
  };
}

// ------------------------------------------------------------------------------------------- file commands

/**
 * The pairs of a GITHUB_OUTPUT / GITHUB_STATE / GITHUB_ENV file, exactly as FileCommandManager.cs
 * EnvFileKeyValuePairs reads them: `NAME=VALUE` lines (the first `=` splits) and heredocs `NAME<<DELIM` ... `DELIM`
 * (the value excludes the newline before the delimiter; a missing delimiter or a final line without a newline is an
 * error, which fails the step in the runner). Later pairs of the same name win when the caller folds them.
 */
export function parseFileCommand(text: string): [string, string][] {
  const pairs: [string, string][] = [];
  let index = 0;
  // ReadLine on Linux: up to the next "\n" (no CR handling outside Windows), the newline consumed.
  const readLine = (): { line: string; newline: boolean } | undefined => {
    if (index >= text.length) return undefined;
    const lf = text.indexOf("\n", index);
    const start = index;
    if (lf < 0) {
      index = text.length;
      return { line: text.slice(start), newline: false };
    }
    index = lf + 1;
    return { line: text.slice(start, lf), newline: true };
  };
  for (let read = readLine(); read; read = readLine()) {
    const { line } = read;
    if (line === "") continue;
    const eq = line.indexOf("=");
    const heredoc = line.indexOf("<<");
    if (eq >= 0 && (heredoc < 0 || eq < heredoc)) {
      pairs.push([line.slice(0, eq), line.slice(eq + 1)]);
    } else if (heredoc >= 0 && (eq < 0 || heredoc < eq)) {
      const name = line.slice(0, heredoc);
      const delimiter = line.slice(heredoc + 2);
      if (!name || !delimiter) {
        throw new Error(`Invalid format '${line}'. Name must not be empty and delimiter must not be empty`);
      }
      const start = index;
      let end = index;
      let next = readLine();
      while (next?.line !== delimiter) {
        if (next === undefined) throw new Error(`Invalid value. Matching delimiter not found '${delimiter}'`);
        if (!next.newline) throw new Error("Invalid value. EOF marker missing new line.");
        end = index - 1;
        next = readLine();
      }
      pairs.push([name, end > start ? text.slice(start, end) : ""]);
    } else {
      throw new Error(`Invalid format '${line}'`);
    }
  }
  return pairs;
}

/** The pairs of a file command folded into a record, a later value of a name replacing an earlier one. */
export function fileCommandValues(text: string): Record<string, string> {
  return Object.fromEntries(parseFileCommand(text));
}

// ------------------------------------------------------------------------------------------ a step's output

/**
 * What the runner does with each line a step prints, on stdout and stderr alike (Handlers/OutputManager.cs
 * OnDataReceived, then ActionCommandManager.TryProcessCommand): a workflow command is consumed, anything else is
 * written to the step log through the SecretMasker. Keeps the visible log (what a user sees), every command, and
 * what the deprecated commands set.
 */
export class StepOutput {
  readonly visible: string[] = [];
  readonly commands: WorkflowCommand[] = [];
  /** Values of the deprecated `set-output` / `save-state` commands (the runner still applies them). */
  readonly commandOutputs: Record<string, string> = {};
  readonly commandState: Record<string, string> = {};
  /** Set when a command failed to process: the runner then fails the step (context.CommandResult = Failed). */
  commandFailed = false;
  private readonly registered = new Set<string>([...REGISTERED_COMMANDS, "stop-commands"]);
  private stopToken: string | undefined;
  private echo = false;

  constructor(
    private readonly masker: SecretMasker,
    /** ACTIONS_STEP_DEBUG: `::debug::` lines reach the log only then (ExecutionContext.cs, Debug). */
    private readonly stepDebug = false,
  ) {}

  get log(): string {
    return this.visible.join("\n");
  }

  /** ExecutionContext.Write: every log line goes through the masker. */
  private write(line: string): void {
    for (const part of this.masker.mask(line).split("\n")) this.visible.push(part);
  }

  line(line: string, stream: WorkflowCommand["stream"]): void {
    if (line && (line.includes("##[") || line.includes("::")) && this.tryCommand(line, stream)) return;
    // OutputManager: runner-controlled markers are defused in user output.
    this.write(
      line.replaceAll("##[start-action", "##[\\start-action").replaceAll("##[end-action", "##[\\end-action"),
    );
  }

  private tryCommand(line: string, stream: WorkflowCommand["stream"]): boolean {
    const parsed = parseWorkflowCommand(line, stream, this.registered);
    if (!parsed) return false;
    const name = parsed.command.toLowerCase();
    if (this.stopToken !== undefined) {
      // Stopped by ::stop-commands::TOKEN: only ::TOKEN:: is a command, and it resumes processing.
      if (name !== this.stopToken.toLowerCase()) return false;
      this.write(line);
      this.registered.delete(this.stopToken);
      this.stopToken = undefined;
      return true;
    }
    this.commands.push(parsed);
    if (name === "stop-commands") {
      const token = parsed.data;
      if (!token || this.registered.has(token) || token.toLowerCase() === "pause-logging") {
        // ValidateStopToken: refused unless ACTIONS_ALLOW_UNSECURE_STOP_COMMANDS is set.
        this.fail(line, "invalid stop-commands token");
        return true;
      }
      if (token.length > 6) this.masker.add(token);
      this.stopToken = token;
      this.registered.add(token);
      this.write(line);
      return true;
    }
    // OmitEcho is true for add-mask and debug only.
    if (this.echo && name !== "add-mask" && name !== "debug") this.write(line);
    switch (name) {
      case "add-mask":
        if (!parsed.data.trim()) {
          this.write("##[warning]Can't add secret mask for empty string in ##[add-mask] command.");
        } else {
          if (this.echo) this.write("::add-mask::***");
          this.masker.addWithLines(parsed.data);
        }
        break;
      case "set-output":
      case "save-state": {
        const key = parsed.properties["name"];
        if (!key) this.fail(line, `Required field 'name' is missing in ##[${name}] command.`);
        else (name === "set-output" ? this.commandOutputs : this.commandState)[key] = parsed.data;
        break;
      }
      case "set-env":
      case "add-path":
        // Disabled since 2020 (UnsupportedCommandMessageDisabled) unless ACTIONS_ALLOW_UNSECURE_COMMANDS is true.
        this.fail(line, `The \`${name}\` command is disabled.`);
        break;
      case "error":
      case "warning":
      case "notice":
        // AddIssue writes the (masked) message after the well-known tag.
        this.write(`##[${name}]${parsed.data}`);
        break;
      case "group":
      case "endgroup":
        this.write(`##[${name}]${parsed.data}`);
        break;
      case "debug":
        if (this.stepDebug)
          for (const part of parsed.data.replaceAll("\r\n", "\n").split("\n")) this.write(`##[debug]${part}`);
        break;
      case "echo": {
        const value = parsed.data.trim().toUpperCase();
        if (value === "ON" || value === "OFF") this.echo = value === "ON";
        else
          this.fail(
            line,
            `Invalid echo command value. Possible values can be: 'on', 'off'. Current value is: '${parsed.data}'.`,
          );
        break;
      }
      default:
        // add-matcher / remove-matcher: problem matchers are not modelled; the command is recorded.
        break;
    }
    return true;
  }

  private fail(line: string, reason: string): void {
    this.write(`##[error]Unable to process command '${line}' successfully.`);
    this.write(`##[error]${reason}`);
    this.commandFailed = true;
  }
}
