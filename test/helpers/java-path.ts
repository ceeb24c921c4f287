/**
 * Looker's startup script runs `java -jar looker.jar ...`, so the host needs a `java` on PATH, as a real Looker host
 * has a JDK. Here that `java` is the stand-in in JAVA_STAND_IN_DIR; this is the PATH a test gives wherever Looker's
 * commands run on this machine. It is set for the whole test process (vitest.config.ts setupFiles): the product
 * passes its own PATH on to Looker's commands (src/runtime/child-env.ts), as it would on a runner with a JDK.
 * Test VMs get the same `java` in their /usr/local/bin (test/helpers/vm.ts).
 */
import { delimiter } from "node:path";
import { JAVA_STAND_IN_DIR } from "../fixtures/home-generator.js";

export function pathWithJava(path = process.env.PATH ?? "/usr/bin:/bin"): string {
  const parts = path.split(delimiter).filter((part) => part !== JAVA_STAND_IN_DIR);
  return [JAVA_STAND_IN_DIR, ...parts].join(delimiter);
}
