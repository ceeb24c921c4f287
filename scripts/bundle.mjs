// Bundles each entry point into one self-contained ESM file under dist/ (what action.yml and the CLI `bin` run).
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { build } from "esbuild";

export const entries = {
  "backup-main": "src/entry/backup-main.ts",
  "backup-post": "src/entry/backup-post.ts",
  "restore-main": "src/entry/restore-main.ts",
  cli: "src/cli.ts",
};

/** How every entry is built (tests build other entries the same way). */
export const buildOptions = {
  bundle: true,
  platform: "node",
  target: "node24",
  format: "esm",
  splitting: false,
  sourcemap: false,
  legalComments: "none",
  logLevel: "warning",
  // ssh2 tries optional native accelerators inside try/catch; the pure-JS paths are what we ship.
  external: ["cpu-features", "*.node"],
  // Some dependencies are CommonJS and use require(), __dirname and __filename; give the ESM bundle those.
  banner: {
    js: [
      "import { createRequire as __lbCreateRequire } from 'node:module';",
      "const require = __lbCreateRequire(import.meta.url);",
      "const __filename = import.meta.filename;",
      "const __dirname = import.meta.dirname;",
    ].join("\n"),
  },
};

export async function bundle(outdir = "dist") {
  await build({ ...buildOptions, entryPoints: entries, outdir });
  // The bundles are ES modules wherever they are copied, whatever package.json is (or is not) above them.
  await writeFile(join(outdir, "package.json"), `${JSON.stringify({ type: "module" }, null, 2)}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await bundle(process.argv[2] ?? "dist");
}
