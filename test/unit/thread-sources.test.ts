/**
 * Promise: every worker thread's code is self-contained. A thread runs the text of functions (threadSource in
 * src/runtime/eval-worker.ts), so a name they take from their module (an import, a constant) would be unbound in
 * the thread and fail there, perhaps only on an error path no test reaches. The check is static: the text each
 * thread runs, as vitest runs it from the sources and as esbuild bundles it (dist/'s ES modules, the standalone
 * binary's CommonJS script), is type-checked as a script of its own, and no name in it may be missing.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { MessagePort } from "node:worker_threads";
import { type BuildOptions, build } from "esbuild";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { buildOptions, standaloneOptions } from "../../scripts/bundle.mjs";
import { fsPath } from "../../src/runtime/byte-names.js";
import { evalWorkerCode, threadSource } from "../../src/runtime/eval-worker.js";

const root = resolve(import.meta.dirname, "../..");

/** Each thread: the module that starts it, the export that is its source, and whether it runs in the background. */
const THREADS = {
  zstd: { module: "src/compress/zstd-engines", source: "ZSTD_THREAD_SOURCE", background: true },
  digest: { module: "src/archive/file-digests", source: "DIGEST_THREAD_SOURCE", background: false },
  smallFile: {
    module: "src/extract/small-file-writer",
    source: "SMALL_FILE_THREAD_SOURCE",
    background: false,
  },
  bigFile: { module: "src/extract/big-file-writer", source: "BIG_FILE_THREAD_SOURCE", background: false },
};

/** What each thread runs, from the sources as vitest runs them. */
async function fromSources(): Promise<Record<string, string>> {
  const scripts: Record<string, string> = {};
  for (const [name, { module, source, background }] of Object.entries(THREADS)) {
    const exports: Record<string, unknown> = await import(join(root, `${module}.ts`));
    scripts[name] = evalWorkerCode(exports[source] as string, { background });
  }
  return scripts;
}

/**
 * The same, from a bundle built as `npm run bundle` builds the entries (ES modules) or as the standalone binary's
 * script is built (CommonJS), run by node itself.
 */
async function fromBundle(options: BuildOptions): Promise<Record<string, string>> {
  const dir = await mkdtemp(join(tmpdir(), "lb-threads-"));
  try {
    const file = join(dir, options.format === "cjs" ? "threads.cjs" : "threads.mjs");
    const lines = ['import { evalWorkerCode } from "./src/runtime/eval-worker.ts";', "const scripts = {};"];
    for (const [name, { module, source, background }] of Object.entries(THREADS)) {
      lines.push(`import { ${source} } from "./${module}.ts";`);
      lines.push(`scripts.${name} = evalWorkerCode(${source}, { background: ${background} });`);
    }
    lines.push("process.stdout.write(JSON.stringify(scripts));");
    await build({
      ...options,
      stdin: { resolveDir: root, loader: "ts", contents: lines.join("\n") },
      outfile: file,
    });
    return JSON.parse(execFileSync(process.execPath, [file], { encoding: "utf8" }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The names each script uses and nothing defines: neither the script itself nor the globals every thread has
 * (ES2023 and node's, as in tsconfig.json). Each script is type-checked as a CommonJS module of its own.
 */
function unboundNames(scripts: Record<string, string>): Record<string, string[]> {
  const options: ts.CompilerOptions = {
    allowJs: true,
    checkJs: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2023,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ["lib.es2023.d.ts"],
    types: ["node"],
    typeRoots: [join(root, "node_modules", "@types")],
  };
  const files = new Map(
    Object.entries(scripts).map(([name, text]) => [join(root, `${name}.thread.cjs`), text]),
  );
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (fileName, version, ...rest) => {
    const text = files.get(fileName);
    return text === undefined
      ? getSourceFile(fileName, version, ...rest)
      : ts.createSourceFile(fileName, text, version);
  };
  host.fileExists = (fileName) => files.has(fileName) || fileExists(fileName);
  host.readFile = (fileName) => files.get(fileName) ?? readFile(fileName);
  const program = ts.createProgram([...files.keys()], options, host);
  const unbound: Record<string, string[]> = {};
  for (const [name] of Object.entries(scripts)) {
    const source = program.getSourceFile(join(root, `${name}.thread.cjs`));
    if (source === undefined) throw new Error(`${name}: not in the program`);
    const names = program.getSemanticDiagnostics(source).flatMap((diagnostic) => {
      const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n");
      const match =
        /^(?:Cannot find name|No value exists in scope for the shorthand property) '([^']+)'/.exec(message);
      return match ? [match[1] as string] : [];
    });
    unbound[name] = [...new Set(names)];
  }
  return unbound;
}

/** A thread that uses an import: fine on the main thread, unbound in a thread. */
function leakyThread(port: MessagePort): void {
  port.on("message", (path: string) => port.postMessage(fsPath(path)));
}

const NONE_UNBOUND = { zstd: [], digest: [], smallFile: [], bigFile: [] };

describe("worker threads' code", () => {
  it("names nothing outside itself, as run from the sources", async () => {
    const scripts = { ...(await fromSources()), leaky: threadSource(leakyThread) };
    // The check sees the mistake (vitest reads an import through a name of its own, unbound in the thread).
    expect(unboundNames(scripts)).toEqual({ ...NONE_UNBOUND, leaky: [expect.any(String)] });
  });

  // esbuild renames what clashes in a bundle, and each format has its own text of each thread.
  it.each([
    ["the ES module bundles", buildOptions],
    ["the standalone binary's script", standaloneOptions],
  ])("names nothing outside itself, as bundled in %s", async (_name, options) => {
    expect(unboundNames(await fromBundle(options))).toEqual(NONE_UNBOUND);
  });
});
