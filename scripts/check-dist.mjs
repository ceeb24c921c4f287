// Fails when dist/ is not what the sources bundle to, so a release never runs code that review did not see.
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundle } from "./bundle.mjs";

const fresh = await mkdtemp(join(tmpdir(), "lb-dist-"));
try {
  await bundle(fresh);
  const expected = (await readdir(fresh)).sort();
  const actual = (await readdir("dist").catch(() => [])).sort();
  const problems = [];
  for (const name of new Set([...expected, ...actual])) {
    if (!expected.includes(name)) problems.push(`dist/${name} is not produced by the sources (remove it)`);
    else if (!actual.includes(name)) problems.push(`dist/${name} is missing`);
    else if (!(await readFile(join(fresh, name))).equals(await readFile(join("dist", name)))) {
      problems.push(`dist/${name} differs from a fresh bundle`);
    }
  }
  if (problems.length > 0) {
    console.error(problems.join("\n"));
    console.error("run `npm run bundle` and commit dist/");
    process.exit(1);
  }
  console.log(`dist/ matches the sources (${expected.length} files)`);
} finally {
  await rm(fresh, { recursive: true, force: true });
}
