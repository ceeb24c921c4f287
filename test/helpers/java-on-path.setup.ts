/** vitest setup file: the `java` stand-in first on this test process's PATH (see java-path.ts for why). */
import { pathWithJava } from "./java-path.js";

process.env.PATH = pathWithJava();
