// Generates the inputs/outputs tables of README.md from action.yml and restore/action.yml, between markers.
// `node scripts/docs.mjs --check` fails when README.md is not what the action files say (run in CI).
import { readFile, writeFile } from "node:fs/promises";
import { parse } from "yaml";

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

function cell(text = "") {
  return String(text).trim().replace(/\|/g, "\\|").replace(/\n/g, " ");
}

let readme = await readFile("README.md", "utf8");
const original = readme;
for (const { file, marker } of sections) {
  const action = parse(await readFile(file, "utf8"));
  const begin = `<!-- ${marker}:begin (generated from ${file} by npm run docs) -->`;
  const end = `<!-- ${marker}:end -->`;
  const start = readme.indexOf(begin);
  const stop = readme.indexOf(end);
  if (start === -1 || stop === -1)
    throw new Error(`README.md lacks the markers for ${file}:\n${begin}\n${end}`);
  readme = `${readme.slice(0, start + begin.length)}\n${table(action)}\n${readme.slice(stop)}`;
}
if (process.argv.includes("--check")) {
  if (readme !== original) {
    console.error("README.md's action tables are out of date: run `npm run docs` and commit README.md");
    process.exit(1);
  }
  console.log("README.md action tables match action.yml");
} else {
  await writeFile("README.md", readme);
}
