/**
 * What a release publishes besides the binary (scripts/release.mjs, shared by the release workflow and
 * `npm run release:dry`): the notes are the version's section of CHANGELOG.md, SHA256SUMS is what `sha256sum -c`
 * checks, and only plain vX.Y.Z tags make releases.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { releaseNotes, sha256sums, versionOfTag } from "../../scripts/release.mjs";

const CHANGELOG = `# Changelog

Intro text that belongs to no release.

## [Unreleased]

### Added

- Something new.

## [1.1.0] - 2027-01-15

### Fixed

- A restore that hung.

## 1.0.0 - 2026-12-24

- First release.

## [0.9.0] - 2026-11-01

[unreleased]: https://github.com/OWNER/looker-backup/compare/v1.1.0...HEAD
[1.1.0]: https://github.com/OWNER/looker-backup/compare/v1.0.0...v1.1.0
`;

describe("release notes from CHANGELOG.md", () => {
  it("takes the Unreleased section for a dry run, without its heading", () => {
    expect(releaseNotes(CHANGELOG, "Unreleased")).toBe("### Added\n\n- Something new.\n");
  });

  it("takes a version's section, with or without brackets and a date", () => {
    expect(releaseNotes(CHANGELOG, "1.1.0")).toBe("### Fixed\n\n- A restore that hung.\n");
    expect(releaseNotes(CHANGELOG, "1.0.0")).toBe("- First release.\n");
  });

  it("stops at the link definitions at the end of the file", () => {
    expect(releaseNotes("## [2.0.0]\n\n- Big.\n\n[2.0.0]: https://example.org\n", "2.0.0")).toBe("- Big.\n");
  });

  it("refuses a version without a section, and an empty section", () => {
    expect(() => releaseNotes(CHANGELOG, "1.2.0")).toThrow('CHANGELOG.md has no section "## [1.2.0]"');
    expect(() => releaseNotes(CHANGELOG, "0.9.0")).toThrow('"## [0.9.0]" is empty');
    // A version is matched whole: 1.1 is not 1.1.0.
    expect(() => releaseNotes(CHANGELOG, "1.1")).toThrow("no section");
  });

  it("finds notes for the repository's own CHANGELOG.md", async () => {
    const notes = releaseNotes(await readFile("CHANGELOG.md", "utf8"), "Unreleased");
    expect(notes).toContain("### Added");
    expect(notes).not.toContain("## [Unreleased]");
  });
});

describe("release tags", () => {
  it("are vX.Y.Z; the major tag, pre-releases and other names are not releases", () => {
    expect(versionOfTag("v1.2.3")).toBe("1.2.3");
    for (const tag of ["v1", "1.2.3", "v1.2", "v1.2.3-rc.1", "release-1.2.3"]) {
      expect(() => versionOfTag(tag), tag).toThrow("release tags look like v1.2.3");
    }
  });
});

describe("SHA256SUMS", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lb-sums-"));
    await writeFile(join(dir, "b.md"), "runbook\n");
    await writeFile(join(dir, "a-binary"), Buffer.from([0, 1, 2, 255]));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is what sha256sum writes, and sha256sum -c accepts it", async () => {
    const sums = await sha256sums(dir, ["b.md", "a-binary"]);
    expect(sums).toBe(execFileSync("sha256sum", ["a-binary", "b.md"], { cwd: dir, encoding: "utf8" }));
    await writeFile(join(dir, "SHA256SUMS"), sums);
    expect(execFileSync("sha256sum", ["-c", "SHA256SUMS"], { cwd: dir, encoding: "utf8" })).toBe(
      "a-binary: OK\nb.md: OK\n",
    );
  });
});
