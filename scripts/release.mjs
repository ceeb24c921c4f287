// Builds what a release publishes, into one folder: the standalone binary, the restore runbook, SHA256SUMS over
// both, and the release notes (the version's section of CHANGELOG.md). The release workflow runs this with the tag
// (`--tag v1.2.3`), `npm run release:dry` without one (notes from "Unreleased"), so the two cannot drift.
//
//   node scripts/release.mjs [--tag vX.Y.Z] [--out DIR]
//
// With a tag, the tag, package.json and src/version.ts must name the same version, and CHANGELOG.md must have a
// section for it: a release never says another version than the one it ships.
import { spawnSync } from "node:child_process";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { BINARY_NAME, buildSea, sha256Hex } from "./build-sea.mjs";

const ROOT = resolve(import.meta.dirname, "..");
export const RUNBOOK = "RESTORE-RUNBOOK.md";
export const NOTES = "RELEASE-NOTES.md";
export const SUMS = "SHA256SUMS";

/**
 * The body of `version`'s section of a Keep a Changelog file ("Unreleased", or "1.2.3" for `## [1.2.3] - date`),
 * without its heading and without the link definitions at the end of the file. Throws when there is no such
 * section or it is empty.
 */
export function releaseNotes(changelog, version) {
  const lines = changelog.split(/\r?\n/);
  const wanted = version.toLowerCase();
  const headingOf = (line) => /^## \[?([^\]\s]+)\]?(?:\s+-\s+.*)?\s*$/.exec(line)?.[1]?.toLowerCase();
  const start = lines.findIndex((line) => headingOf(line) === wanted);
  if (start < 0) throw new Error(`CHANGELOG.md has no section "## [${version}]"`);
  const body = [];
  for (const line of lines.slice(start + 1)) {
    if (/^## /.test(line) || /^\[[^\]]+\]:\s/.test(line)) break;
    body.push(line);
  }
  const notes = body.join("\n").trim();
  if (notes === "") throw new Error(`CHANGELOG.md's section "## [${version}]" is empty`);
  return `${notes}\n`;
}

/** SHA256SUMS as `sha256sum` writes it (and `sha256sum -c` reads it): `<hex>  <name>` per file, by name. */
export async function sha256sums(dir, names) {
  const lines = [];
  for (const name of [...names].sort()) {
    lines.push(`${sha256Hex(await readFile(join(dir, name)))}  ${name}`);
  }
  return `${lines.join("\n")}\n`;
}

/** The version a tag names: "v1.2.3" -> "1.2.3". Only plain x.y.z tags make releases (the workflow's filter too). */
export function versionOfTag(tag) {
  const match = /^v(\d+\.\d+\.\d+)$/.exec(tag);
  if (!match) throw new Error(`release tags look like v1.2.3, not ${tag}`);
  return match[1];
}

async function checkVersions(version) {
  const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")).version;
  const tool = /TOOL_VERSION = "([^"]+)"/.exec(await readFile(join(ROOT, "src", "version.ts"), "utf8"))?.[1];
  const problems = [];
  if (pkg !== version) problems.push(`package.json says ${pkg}`);
  if (tool !== version) problems.push(`src/version.ts says ${tool}`);
  if (problems.length > 0) throw new Error(`the tag says ${version}, but ${problems.join(" and ")}`);
}

/**
 * Writes the release into `outDir`: the binary, the runbook, SHA256SUMS and the notes. Without a tag it is a dry
 * run: the notes are the "Unreleased" section. Returns what it wrote.
 */
export async function release({ tag, outDir, checkDist = true, log = console.log }) {
  const version = tag === undefined ? undefined : versionOfTag(tag);
  if (version !== undefined) await checkVersions(version);
  const notes = releaseNotes(await readFile(join(ROOT, "CHANGELOG.md"), "utf8"), version ?? "Unreleased");
  if (checkDist) {
    // dist/ is what action.yml and the attestation point at: it must be what the sources bundle to.
    const result = spawnSync(process.execPath, [join(ROOT, "scripts", "check-dist.mjs")], {
      cwd: ROOT,
      stdio: "inherit",
    });
    if (result.status !== 0) throw new Error("dist/ does not match a fresh bundle of the sources");
  }
  const built = await buildSea(undefined, { log });
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  await copyFile(built.binary, join(outDir, BINARY_NAME));
  await copyFile(join(ROOT, "docs", RUNBOOK), join(outDir, RUNBOOK));
  const sums = await sha256sums(outDir, [BINARY_NAME, RUNBOOK]);
  await writeFile(join(outDir, SUMS), sums);
  await writeFile(join(outDir, NOTES), notes);
  log(
    `release ${tag ?? "(dry run: Unreleased)"} in ${outDir}: ${[BINARY_NAME, RUNBOOK, SUMS, NOTES].join(", ")}`,
  );
  return {
    version,
    notes,
    sums,
    files: [BINARY_NAME, RUNBOOK, SUMS, NOTES].map((name) => join(outDir, name)),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      tag: { type: "string" },
      out: { type: "string", default: join(ROOT, "build", "release") },
    },
  });
  try {
    await release({ tag: values.tag, outDir: resolve(values.out) });
  } catch (error) {
    console.error(`release: ${error.message}`);
    process.exit(1);
  }
}
