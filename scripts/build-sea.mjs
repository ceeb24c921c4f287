// Builds the standalone binary, build/sea/looker-backup-linux-x64 (and its .sha256): the CLI as a Node single
// executable application, made the way Node 24's documentation describes it:
//   1. bundle the CLI into one CommonJS script (Node 24 runs only a CommonJS main in a SEA: "mainFormat" came later),
//   2. `node --experimental-sea-config sea-config.json` turns it into a preparation blob,
//   3. copy the node binary and inject the blob with postject, flipping the sentinel fuse.
// (macOS and Windows would also remove and re-add a code signature around step 3; a Linux ELF has none.)
// The node binary is the `node` devDependency's (Node 24), never the one that happens to run this script: the blob
// must be made by the same Node it is injected into.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, copyFile, mkdir, readFile, realpath, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, join, resolve } from "node:path";
import { bundleStandalone, NODE_MAJOR } from "./bundle.mjs";

export const BINARY_NAME = "looker-backup-linux-x64";
// The fuse Node's documentation gives for postject; Node flips it to know a blob was injected.
const SENTINEL_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";
const ROOT = resolve(import.meta.dirname, "..");

/** The Node 24 binary of the `node` devDependency, and its version. */
async function nodeBinary() {
  const path = await realpath(join(ROOT, "node_modules", "node", "bin", "node"));
  const probe = spawnSync(path, ["-p", "process.versions.node"], { encoding: "utf8" });
  const version = probe.stdout?.trim();
  if (probe.status !== 0 || !version) throw new Error(`${path} does not run: ${probe.stderr ?? probe.error}`);
  if (Number(version.split(".")[0]) < NODE_MAJOR) {
    throw new Error(`${path} is Node ${version}; the binary needs Node ${NODE_MAJOR} (npm ci installs it)`);
  }
  return { path, version };
}

export function sha256Hex(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Builds the binary into `outDir` and returns its path, sha256 and size. When the binary there was built from the
 * same inputs (the bundled script, the Node binary, the SEA configuration, this script and postject) and still has
 * the digest recorded for it, it is kept: the build is deterministic, so rebuilding would write the same bytes,
 * slowly (~130 MB).
 */
export async function buildSea(outDir = join(ROOT, "build", "sea"), { log = console.log } = {}) {
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new Error(
      `the standalone binary is built for linux-x64, on linux-x64 (this is ${process.platform}-${process.arch})`,
    );
  }
  const node = await nodeBinary();
  const work = join(outDir, "work");
  await mkdir(work, { recursive: true });
  const main = join(work, "looker-backup.cjs");
  await bundleStandalone(main);

  const blob = join(work, "sea-prep.blob");
  // Relative paths, resolved in `work`: the blob records the main script's name (stack traces show it), and an
  // absolute one would make the binary depend on where the checkout is.
  const config = {
    main: basename(main),
    output: basename(blob),
    disableExperimentalSEAWarning: true,
    // V8's code cache would start the binary faster (`--help` ~0.2 s instead of ~0.33 s at best, on a busy 2-core VM),
    // but the cache differs from build to build. Without it the same sources and lockfile make the same binary, byte
    // for byte, so anyone can check a release's sha256 by building it again.
    useCodeCache: false,
    useSnapshot: false,
  };
  const binary = join(outDir, BINARY_NAME);
  const inputsFile = `${binary}.inputs`;
  const inputs = `${JSON.stringify({
    node: node.version,
    nodeSha256: sha256Hex(await readFile(node.path)),
    mainSha256: sha256Hex(await readFile(main)),
    config,
    // The procedure itself: a change to this script or to postject builds anew.
    scriptSha256: sha256Hex(await readFile(import.meta.filename)),
    postject: JSON.parse(await readFile(join(ROOT, "node_modules", "postject", "package.json"), "utf8"))
      .version,
  })}\n`;
  const previous = await reuse(binary, inputsFile, inputs);
  if (previous) {
    log(`${BINARY_NAME}: unchanged inputs, kept (${previous.bytes} bytes, sha256 ${previous.sha256})`);
    return previous;
  }

  const configFile = join(work, "sea-config.json");
  await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
  run(node.path, ["--experimental-sea-config", basename(configFile)], work);

  const partial = `${binary}.partial`;
  await rm(partial, { force: true });
  await copyFile(node.path, partial);
  await chmod(partial, 0o755);
  const { inject } = createRequire(import.meta.url)("postject");
  await inject(partial, "NODE_SEA_BLOB", await readFile(blob), { sentinelFuse: SENTINEL_FUSE });
  const bytes = await readFile(partial);
  const sha256 = sha256Hex(bytes);
  await rename(partial, binary);
  await writeFile(`${binary}.sha256`, `${sha256}  ${BINARY_NAME}\n`);
  await writeFile(inputsFile, inputs);
  log(`${BINARY_NAME}: built with Node ${node.version} (${bytes.length} bytes, sha256 ${sha256})`);
  return { binary, sha256, bytes: bytes.length };
}

/** The binary's digest and size if it was built from `inputs` and still matches its .sha256; else undefined. */
async function reuse(binary, inputsFile, inputs) {
  try {
    if ((await readFile(inputsFile, "utf8")) !== inputs) return undefined;
    const recorded = (await readFile(`${binary}.sha256`, "utf8")).split(" ")[0];
    const bytes = await readFile(binary);
    const sha256 = sha256Hex(bytes);
    return sha256 === recorded ? { binary, sha256, bytes: bytes.length } : undefined;
  } catch {
    return undefined;
  }
}

function run(command, args, cwd) {
  const result = spawnSync(command, args, { cwd, stdio: ["ignore", "inherit", "inherit"] });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} exited ${result.status}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await buildSea(process.argv[2] ? resolve(process.argv[2]) : undefined);
}
