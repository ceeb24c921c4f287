/**
 * The catalog sidecar's text: written and parsed back whatever the chunking, a header that is not one refused, and
 * every kind of difference from the archive found and described.
 */
import { describe, expect, it } from "vitest";
import { type CatalogEntry, catalogLine, MAX_CATALOG_LINE_BYTES } from "../../src/archive/catalog.js";
import {
  describeDifference,
  type SidecarContent,
  SidecarParser,
  sidecarDifference,
  sidecarText,
} from "../../src/archive/catalog-sidecar.js";
import { IntegrityError } from "../../src/errors.js";

const meta = { format: "looker-backup/1", instance: "prod", consistency: "brief-stop", downtimeMs: 1234 };

function entry(path: string, extra: Partial<CatalogEntry> = {}): CatalogEntry {
  return {
    path,
    type: "file",
    size: 3,
    mode: 0o644,
    uid: 1000,
    gid: 1000,
    mtime: 1.5,
    sha256: "a".repeat(64),
    ...extra,
  };
}

const catalog = [
  entry("meta/backup.json"),
  entry("home/", { type: "directory", size: 0, sha256: undefined }),
  entry("home/looker/\u00e9t\u00e9.lkml"),
  entry("home/looker/link", { type: "symlink", size: 0, sha256: undefined, linkTarget: "../x" }),
  entry("home/looker/big", { size: 2 ** 40, warning: "home/looker/big changed while it was read" }),
].map((e) => Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)) as CatalogEntry);

function parse(parts: Iterable<Buffer>): SidecarContent {
  const parser = new SidecarParser();
  for (const part of parts) parser.push(part);
  return parser.end();
}

const text = () => Buffer.concat([...sidecarText("prod-20261206T030000Z.tar.zst.age", meta, catalog)]);

describe("the sidecar's text", () => {
  it("is a header line and then the catalog's own lines", () => {
    const lines = text().toString("utf8").split("\n");
    expect(JSON.parse(lines[0]!)).toEqual({
      format: "looker-backup-catalog/1",
      archive: "prod-20261206T030000Z.tar.zst.age",
      backup: meta,
    });
    expect(lines.slice(1).join("\n")).toBe(catalog.map(catalogLine).join(""));
  });

  it("parses back the same, cut into parts at every byte", () => {
    const whole = text();
    for (let cut = 1; cut < whole.length; cut++) {
      const parsed = parse([whole.subarray(0, cut), whole.subarray(cut)]);
      expect(parsed.header.backup).toEqual(meta);
      expect([...parsed.catalog.values()]).toEqual(catalog);
    }
    const bytewise = parse([...whole].map((b) => Buffer.from([b])));
    expect([...bytewise.catalog.keys()]).toEqual(catalog.map((e) => e.path));
  });

  it("writes a large catalog in bounded chunks", () => {
    const many = Array.from({ length: 5000 }, (_, i) => entry(`home/f${i}`));
    const chunks = [...sidecarText("a.tar.zst.age", meta, many)];
    expect(chunks.length).toBeGreaterThan(5);
    for (const chunk of chunks) expect(chunk.length).toBeLessThan(128 * 1024);
    expect(parse(chunks).catalog.size).toBe(5000);
  });

  it.each([
    ["empty", [""]],
    ["no header line", ['{"format":"looker-backup-catalog/1"']],
    ["not JSON", ["not a sidecar\n"]],
    ["another format", ['{"format":"looker-backup/1","archive":"a","backup":{}}\n']],
    ["no backup.json", ['{"format":"looker-backup-catalog/1","archive":"a"}\n']],
    ["a bad catalog line", ['{"format":"looker-backup-catalog/1","archive":"a","backup":{}}\n{"path":1}\n']],
  ])("refuses %s as an IntegrityError", (_what, parts) => {
    expect(() => parse(parts.map((p) => Buffer.from(p)))).toThrow(IntegrityError);
  });

  it("refuses a header line longer than its limit before holding it all", () => {
    const parser = new SidecarParser();
    const part = Buffer.alloc(MAX_CATALOG_LINE_BYTES, 0x20);
    expect(() => {
      for (let i = 0; i < 32; i++) parser.push(part);
    }).toThrow(/first line is longer than/);
  });
});

describe("a sidecar compared with its archive", () => {
  const archive = { meta, catalog: new Map(catalog.map((e) => [e.path, e])) };
  const sidecarOf = (entries: CatalogEntry[], backup: Record<string, unknown> = meta) =>
    parse(sidecarText("a.tar.zst.age", backup, entries));

  it("agrees when it says the same", () => {
    expect(sidecarDifference(archive, sidecarOf(catalog))).toBeUndefined();
  });

  it("names changed, missing and extra paths, in the archive's order, then the sidecar's", () => {
    const entries = catalog
      .filter((e) => e.path !== "home/")
      .map((e) => (e.path === "home/looker/link" ? { ...e, linkTarget: "/etc/shadow" } : e));
    const difference = sidecarDifference(archive, sidecarOf([...entries, entry("home/looker/planted")]));
    expect(difference).toEqual({
      backup: false,
      paths: 3,
      firstPaths: ["home/", "home/looker/link", "home/looker/planted"],
    });
    expect(describeDifference(difference!)).toBe(
      "3 paths differ (first: home/, home/looker/link, home/looker/planted)",
    );
  });

  it("finds a backup.json that differs, alone or with paths", () => {
    const other = { ...meta, consistency: "live" };
    const alone = sidecarDifference(archive, sidecarOf(catalog, other));
    expect(describeDifference(alone!)).toBe("backup.json differs");
    const both = sidecarDifference(archive, sidecarOf(catalog.slice(1), other));
    expect(describeDifference(both!)).toBe("backup.json and 1 path differ (first: meta/backup.json)");
  });

  it("quotes at most five paths", () => {
    const planted = Array.from({ length: 8 }, (_, i) => entry(`home/planted-${i}`));
    const difference = sidecarDifference(archive, sidecarOf(planted));
    expect(difference?.paths).toBe(catalog.length + planted.length);
    expect(difference?.firstPaths).toEqual(catalog.map((e) => e.path));
  });
});
