/** What the tests of the restore's file-writer threads share: a fresh directory per test, and a file's header. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach } from "vitest";
import type { TarHeader } from "../../src/archive/tar-format.js";

/** A fresh directory for each test of the calling file, removed after it; read `.path` inside a test. */
export function freshDirectoryPerTest(prefix: string): { readonly path: string } {
  const current = { path: "" };
  beforeEach(() => {
    current.path = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => rmSync(current.path, { recursive: true, force: true }));
  return current;
}

/** A regular file's header owned by whoever runs the tests (so no chown is needed to match it). */
export function fileHeader(size: number, mode: number, mtime: number): TarHeader {
  return {
    path: "ignored",
    type: "file",
    size,
    mode,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    mtime,
  };
}
