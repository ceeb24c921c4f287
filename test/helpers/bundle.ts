/**
 * Bundles the entry points from the current sources once per test process, so end-to-end tests run exactly what
 * `npm run bundle` ships (one self-contained file per entry) without depending on a committed dist/ being fresh.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundle } from "../../scripts/bundle.mjs";

let bundled: Promise<string> | undefined;

export async function bundledEntry(
  name: "backup-main" | "backup-post" | "restore-main" | "cli",
): Promise<string> {
  bundled ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), "lb-bundle-"));
    await bundle(dir);
    return dir;
  })();
  return join(await bundled, `${name}.js`);
}
