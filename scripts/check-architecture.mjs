// Keeps the design in docs/ARCHITECTURE.md true of the code (part of `npm run lint`):
// 1. imports go down the layers below, never up or sideways between folders of one layer;
// 2. no import cycles between modules;
// 3. the folder map in docs/ARCHITECTURE.md lists every module under src/ and nothing that is not there.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "src");

/**
 * Higher layers may import lower ones. The data flows inputs -> settings -> run -> report; the domain folders below
 * the engine know nothing of GitHub, the CLI or each other's callers. Root files (errors.ts, version.ts, defaults.ts) are below everything.
 */
export const LAYERS = {
  entry: 6,
  "cli.ts": 6,
  action: 5,
  cli: 5,
  config: 4,
  drill: 4,
  report: 4,
  engine: 3,
  archive: 2,
  extract: 2.5,
  looker: 2,
  mysql: 2,
  store: 2,
  compress: 1,
  crypto: 1,
  manifest: 1,
  remote: 1,
  runtime: 0,
  workers: 0,
  "errors.ts": -1,
  "version.ts": -1,
  "defaults.ts": -1,
};

function modules(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...modules(path));
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) out.push(path);
  }
  return out.sort();
}

function folderOf(file) {
  const [first] = relative(src, file).split("/");
  return first;
}

/** Relative imports of a module (static, re-exports and dynamic), resolved to .ts files. */
function importsOf(file) {
  const text = readFileSync(file, "utf8");
  const specifiers = [
    ...text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/gms),
    ...text.matchAll(/import\(\s*"(\.[^"]+)"\s*\)/g),
  ].map((match) => match[1]);
  return specifiers.map((specifier) => resolve(dirname(file), specifier.replace(/\.js$/, ".ts")));
}

export function checkArchitecture() {
  const problems = [];
  const files = modules(src);
  const graph = new Map(files.map((file) => [file, importsOf(file)]));
  for (const [file, imports] of graph) {
    const from = folderOf(file);
    if (!(from in LAYERS)) problems.push(`${relative(root, file)}: folder ${from} has no layer in LAYERS`);
    for (const target of imports) {
      if (!graph.has(target)) {
        problems.push(`${relative(root, file)}: imports ${relative(root, target)}, which does not exist`);
        continue;
      }
      const to = folderOf(target);
      if (from === to) continue;
      if (!(LAYERS[to] < LAYERS[from])) {
        problems.push(
          `${relative(root, file)} imports ${relative(root, target)}: ${from} (layer ${LAYERS[from]}) may only import lower layers, and ${to} is layer ${LAYERS[to]}`,
        );
      }
    }
  }
  for (const cycle of cycles(graph)) {
    problems.push(`import cycle: ${cycle.map((file) => relative(root, file)).join(" -> ")}`);
  }
  problems.push(...folderMapProblems(files));
  return problems;
}

/** Each strongly connected set of more than one module (Tarjan), as one of its cycles. */
function cycles(graph) {
  let index = 0;
  const indices = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const found = [];
  const visit = (file) => {
    indices.set(file, index);
    low.set(file, index);
    index++;
    stack.push(file);
    onStack.add(file);
    for (const next of graph.get(file) ?? []) {
      if (!graph.has(next)) continue;
      if (!indices.has(next)) {
        visit(next);
        low.set(file, Math.min(low.get(file), low.get(next)));
      } else if (onStack.has(next)) low.set(file, Math.min(low.get(file), indices.get(next)));
    }
    if (low.get(file) === indices.get(file)) {
      const component = [];
      let member;
      do {
        member = stack.pop();
        onStack.delete(member);
        component.push(member);
      } while (member !== file);
      if (component.length > 1) found.push([...component.reverse(), component[0]]);
    }
  };
  for (const file of graph.keys()) if (!indices.has(file)) visit(file);
  return found;
}

/** The map lists modules as `src/...` in backticks at the start of a list item. */
function folderMapProblems(files) {
  const doc = join(root, "docs", "ARCHITECTURE.md");
  let text;
  try {
    text = readFileSync(doc, "utf8");
  } catch {
    return ["docs/ARCHITECTURE.md is missing"];
  }
  const listed = new Set([...text.matchAll(/^\s*[-*] `(src\/[^`]+\.ts)`/gm)].map((match) => match[1]));
  const actual = new Set(files.map((file) => relative(root, file)));
  const problems = [];
  for (const file of actual)
    if (!listed.has(file)) problems.push(`docs/ARCHITECTURE.md: the folder map lacks ${file}`);
  for (const file of listed)
    if (!actual.has(file))
      problems.push(`docs/ARCHITECTURE.md: the folder map lists ${file}, which does not exist`);
  return problems;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const problems = checkArchitecture();
  for (const problem of problems) console.error(problem);
  if (problems.length > 0) {
    console.error(`architecture: ${problems.length} problem(s); see docs/ARCHITECTURE.md`);
    process.exit(1);
  }
  console.log("architecture: layers, cycles and the folder map hold");
}
