// Generates the inputs/outputs tables of README.md from action.yml and restore/action.yml, and its CLI reference from
// every command's --help (the command list of src/cli/main.ts), between markers.
// `node scripts/docs.mjs --check` fails when README.md is not what the action files and the commands say (run in CI),
// or when an action file's `default:` is not the value the code falls back to (src/defaults.ts).
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { build, transform } from "esbuild";
import { parse } from "yaml";
import { buildOptions } from "./bundle.mjs";

/**
 * The constant of src/defaults.ts that each input's `default:` must equal. An input with another non-empty default
 * must be listed in NOT_FROM_CONSTANTS with the reason.
 */
const INPUT_DEFAULTS = {
  "action.yml": {
    home: "DEFAULT_HOME",
    consistency: "DEFAULT_CONSISTENCY",
    "looker-control": "DEFAULT_LOOKER_CONTROL",
    "looker-unit": "DEFAULT_LOOKER_UNIT",
    "web-port": "DEFAULT_WEB_PORT",
    "boot-timeout": "DEFAULT_BOOT_TIMEOUT_SECONDS",
    "quiet-window-time-zone": "DEFAULT_QUIET_WINDOW_TIME_ZONE",
    store: "DEFAULT_STORE",
    "retention-days": "DEFAULT_RETENTION_DAYS",
    "keep-last": "DEFAULT_KEEP_LAST",
    "compression-level": "DEFAULT_COMPRESSION_LEVEL",
    xattrs: "DEFAULT_XATTRS",
    "on-warnings": "DEFAULT_ON_WARNINGS",
  },
  "restore/action.yml": {
    "target-port": "DEFAULT_SSH_PORT",
    "target-user": "DEFAULT_TARGET_USER",
    "boot-timeout": "DEFAULT_BOOT_TIMEOUT_SECONDS",
    "drill-mysql-port": "DEFAULT_MYSQL_PORT",
    "drill-mysql-database": "DEFAULT_DRILL_DATABASE",
  },
};

const NOT_FROM_CONSTANTS = {
  "github-token": "the job's token, an expression the runner evaluates",
  workflow: "the README's workflow file name; empty (set explicitly) searches every workflow",
};

/** Switches default to "false": an empty value is off (config/source.ts bool). */
const isSwitchOff = (value) => value === "false";

async function checkDefaults() {
  const source = await readFile("src/defaults.ts", "utf8");
  const { code } = await transform(source, { loader: "ts", format: "esm" });
  const defaults = await import(`data:text/javascript;base64,${Buffer.from(code).toString("base64")}`);
  const problems = [];
  for (const [file, mapping] of Object.entries(INPUT_DEFAULTS)) {
    const inputs = parse(await readFile(file, "utf8")).inputs ?? {};
    for (const [name, constant] of Object.entries(mapping)) {
      if (!(constant in defaults)) problems.push(`${file}: ${name}: src/defaults.ts has no ${constant}`);
      else if (!(name in inputs)) problems.push(`${file}: no input ${name} (mapped to ${constant})`);
      else if (String(inputs[name].default ?? "") !== String(defaults[constant]))
        problems.push(
          `${file}: ${name} defaults to '${inputs[name].default ?? ""}', the code to ${constant} = '${defaults[constant]}'`,
        );
    }
    for (const [name, input] of Object.entries(inputs)) {
      const value = input.default === undefined ? "" : String(input.default);
      if (value === "" || name in mapping || name in NOT_FROM_CONSTANTS || isSwitchOff(value)) continue;
      problems.push(
        `${file}: ${name} defaults to '${value}' but no constant of src/defaults.ts is mapped to it`,
      );
    }
  }
  return problems;
}

const sections = [
  { file: "action.yml", marker: "backup-action" },
  { file: "restore/action.yml", marker: "restore-action" },
];

function table(action) {
  const rows = ["#### Inputs", "", "| Input | Default | Description |", "|---|---|---|"];
  for (const [name, input] of Object.entries(action.inputs ?? {})) {
    const def = input.required
      ? "**required**"
      : input.default === "" || input.default === undefined
        ? ""
        : `\`${input.default}\``;
    rows.push(`| \`${name}\` | ${def} | ${cell(input.description)} |`);
  }
  rows.push("", "#### Outputs", "", "| Output | Description |", "|---|---|");
  for (const [name, output] of Object.entries(action.outputs ?? {}))
    rows.push(`| \`${name}\` | ${cell(output.description)} |`);
  return rows.join("\n");
}

/** A code span in a table cell: GitHub ends the cell at a bare `|`, even inside backticks. */
function code(text) {
  return `\`${text.replace(/\|/g, "\\|")}\``;
}

function cell(text = "") {
  return String(text).trim().replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/**
 * The CLI's commands as the code defines them: src/cli/main.ts's list and the rows --help prints (src/cli/args.ts),
 * bundled from the sources into a temp file and imported, so a command or flag added there shows up here.
 */
async function cliCommands() {
  const dir = await mkdtemp(join(tmpdir(), "lb-docs-"));
  try {
    const outfile = join(dir, "cli-help.mjs");
    await build({
      ...buildOptions,
      stdin: {
        contents:
          'export { commands } from "./src/cli/main.ts";\nexport { helpRows } from "./src/cli/args.ts";\n',
        resolveDir: buildOptions.absWorkingDir,
        loader: "ts",
      },
      outfile,
    });
    return await import(pathToFileURL(outfile).href);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Each command's usage line, then for each the table of every flag its --help lists. */
function cliReference({ commands, helpRows }) {
  const out = ["```", ...commands.map((c) => c.spec.usage), "looker-backup --version", "```"];
  for (const { spec } of commands) {
    out.push(
      "",
      `<details><summary><code>looker-backup ${spec.name}</code>: ${cell(spec.summary)}</summary>`,
      "",
      "| Flag | Description |",
      "|---|---|",
      ...helpRows(spec).map(
        ({ short, flag, help }) =>
          `| ${short ? `${code(short)}, ` : ""}${code(flag)} | ${cell(help).replace(/</g, "&lt;").replace(/>/g, "&gt;")} |`,
      ),
      "",
      "</details>",
    );
  }
  return out.join("\n");
}

function replaceBetween(text, marker, source, generated) {
  const begin = `<!-- ${marker}:begin (generated from ${source} by npm run docs) -->`;
  const end = `<!-- ${marker}:end -->`;
  const start = text.indexOf(begin);
  const stop = text.indexOf(end);
  if (start === -1 || stop === -1)
    throw new Error(`README.md lacks the markers for ${source}:\n${begin}\n${end}`);
  return `${text.slice(0, start + begin.length)}\n${generated}\n${text.slice(stop)}`;
}

let readme = await readFile("README.md", "utf8");
const original = readme;
for (const { file, marker } of sections) {
  readme = replaceBetween(readme, marker, file, table(parse(await readFile(file, "utf8"))));
}
readme = replaceBetween(readme, "cli-reference", "each command's --help", cliReference(await cliCommands()));
if (process.argv.includes("--check")) {
  const problems = await checkDefaults();
  for (const problem of problems) console.error(problem);
  if (readme !== original) {
    console.error(
      "README.md's action tables or CLI reference are out of date: run `npm run docs` and commit README.md",
    );
  }
  if (problems.length > 0 || readme !== original) process.exit(1);
  console.log(
    "README.md action tables match action.yml, its CLI reference every command's --help; its defaults are src/defaults.ts's",
  );
} else {
  await writeFile("README.md", readme);
}
