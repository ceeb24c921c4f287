import { describe, expect, it } from "vitest";
import type { TarHeader } from "../../src/archive/tar-format.js";
import { IntegrityError } from "../../src/errors.js";
import { checkMemberPath, LinkTracker } from "../../src/extract/member-safety.js";

const base = { size: 0, mode: 0o644, uid: 0, gid: 0, mtime: 0 };
const fileAt = (path: string): TarHeader => ({ ...base, path, type: "file" });
const dirAt = (path: string): TarHeader => ({ ...base, path, type: "directory" });
const symlinkAt = (path: string, linkTarget: string): TarHeader => ({
  ...base,
  path,
  type: "symlink",
  linkTarget,
});
const hardlinkAt = (path: string, linkTarget: string): TarHeader => ({
  ...base,
  path,
  type: "hardlink",
  linkTarget,
});

/** Admits `earlier` (which must pass), then returns what admitting `member` throws, or undefined. */
function verdict(earlier: TarHeader[], member: TarHeader): string | undefined {
  const tracker = new LinkTracker();
  for (const header of earlier) tracker.admit(header);
  try {
    tracker.admit(member);
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(IntegrityError);
    return (error as Error).message;
  }
}

describe("checkMemberPath", () => {
  it.each([
    "meta/backup.json",
    "home/.ssh/id_rsa",
    "home/looker/models-user-1/a b.view.lkml",
    "rootfs/etc/init.d/looker",
    "mysql/looker.sql",
    "home/",
    "home",
    "home/dir/",
    "home/..hidden",
    "home/a..b",
    "home/line\nbreak",
    "home/日本語",
  ])("accepts %j", (path) => {
    expect(() => checkMemberPath(path)).not.toThrow();
  });

  it.each([
    ["", /empty path/],
    ["/etc/passwd", /absolute path/],
    ["/home/a", /absolute path/],
    ["home/../etc/passwd", /'\.\.' segment/],
    ["home/a/..", /'\.\.' segment/],
    ["..", /'\.\.' segment/],
    ["home/./a", /'\.' segment/],
    ["./home/a", /'\.' segment/],
    ["home//a", /empty segment/],
    ["home/a\0b", /NUL byte/],
    ["etc/passwd", /outside the allowed roots/],
    ["homework/a", /outside the allowed roots/],
    ["meta", undefined],
  ])("judges %j", (path, rule) => {
    if (rule === undefined) {
      expect(() => checkMemberPath(path)).not.toThrow();
    } else {
      expect(() => checkMemberPath(path)).toThrow(IntegrityError);
      expect(() => checkMemberPath(path)).toThrow(rule);
    }
  });

  it("names the member and the rule, escaping control characters", () => {
    expect(() => checkMemberPath("home/../x")).toThrow("refusing member home/../x: '..' segment in path");
    expect(() => checkMemberPath("/a\nb")).toThrow('refusing member "/a\\nb": absolute path');
  });

  it("honours custom roots", () => {
    expect(() => checkMemberPath("data/x", ["data/"])).not.toThrow();
    expect(() => checkMemberPath("home/x", ["data/"])).toThrow(/outside the allowed roots data\//);
  });
});

describe("LinkTracker", () => {
  it("keeps symlinks as data whatever their target", () => {
    expect(verdict([], symlinkAt("home/.ssl/cert.pem", "/etc/ssl/certs/looker.pem"))).toBeUndefined();
    expect(verdict([], symlinkAt("home/up", "../../../../etc"))).toBeUndefined();
    expect(verdict([], symlinkAt("home/empty-target", ""))).toMatch(/symlink without target/);
  });

  it("refuses a member that passes through an earlier symlink", () => {
    const link = symlinkAt("home/a", "/etc");
    expect(verdict([link], fileAt("home/a/passwd"))).toBe(
      "refusing member home/a/passwd: path passes through symlink home/a",
    );
    expect(verdict([link], dirAt("home/a/sub/"))).toMatch(/passes through symlink home\/a/);
    expect(verdict([link], fileAt("home/a/deep/er/x"))).toMatch(/passes through symlink home\/a/);
    expect(verdict([symlinkAt("home/rel", "sub")], fileAt("home/rel/x"))).toMatch(
      /passes through symlink home\/rel/,
    );
    // Positive: siblings and look-alike names are fine.
    expect(verdict([link], fileAt("home/ab/passwd"))).toBeUndefined();
    expect(verdict([link], fileAt("home/b/passwd"))).toBeUndefined();
  });

  it("still checks the ancestors of a member whose directory differs from the previous member's", () => {
    // The tracker skips the walk when a member shares the previous member's directory; these all do not.
    const sameDirectory = [fileAt("home/d/f1"), symlinkAt("home/d/link", "/etc"), fileAt("home/d/f2")];
    expect(verdict(sameDirectory, fileAt("home/d/link/x"))).toMatch(/passes through symlink home\/d\/link/);
    expect(verdict(sameDirectory, fileAt("home/d/f1/x"))).toMatch(/passes through non-directory home\/d\/f1/);
    expect(verdict([...sameDirectory, fileAt("home/e/f")], fileAt("home/d/link/y"))).toMatch(
      /passes through symlink/,
    );
    expect(verdict(sameDirectory, fileAt("home/d/f3"))).toBeUndefined();
  });

  it("checks a deep member in an existing directory without walking every ancestor", () => {
    // 20,000 members at depth ~2000 alternating between two directories: walking and hashing every ancestor
    // (~4 KB each) of each member was ~160 GB of hashing, minutes of CPU; now one lookup per member.
    const depth = 1990;
    const deepA = `home/${"a/".repeat(depth)}`;
    const deepB = `home/${"b/".repeat(depth)}`;
    const tracker = new LinkTracker();
    for (let i = 0; i < 10_000; i++) {
      tracker.admit(fileAt(`${deepA}f${i}`));
      tracker.admit(fileAt(`${deepB}f${i}`));
    }
    // The ancestors were all recorded as directories on the way: nothing below a file or symlink gets through.
    tracker.admit(symlinkAt(`${deepA}link`, "/etc"));
    tracker.admit(fileAt(`${deepB}f0x`));
    expect(() => tracker.admit(fileAt(`${deepA}link/x`))).toThrow(/passes through symlink home\/a\/a/);
    expect(() => tracker.admit(fileAt(`${deepB}f1/x`))).toThrow(/passes through non-directory home\/b\/b/);
    expect(() => tracker.admit(symlinkAt(`home/${"a/".repeat(1000)}a`, "/etc"))).toThrow(
      /directory home\/a\/a.* replaced by a symlink/,
    );
    expect(() => tracker.admit(fileAt(`${deepA}link/${"c/".repeat(100)}x`))).toThrow(
      /passes through symlink/,
    );
  });

  it("refuses replacing a directory (explicit or implied by earlier members) with a symlink", () => {
    expect(verdict([dirAt("home/d/")], symlinkAt("home/d", "/etc"))).toBe(
      "refusing member home/d: directory home/d replaced by a symlink",
    );
    expect(verdict([fileAt("home/d/f")], symlinkAt("home/d", "/etc"))).toMatch(
      /directory home\/d replaced by a symlink/,
    );
    expect(verdict([fileAt("home/d/f")], fileAt("home/d"))).toMatch(/directory home\/d replaced by a file/);
    // Positive: a directory may be listed again as a directory, also after its contents.
    expect(verdict([dirAt("home/d/")], dirAt("home/d/"))).toBeUndefined();
    expect(verdict([fileAt("home/d/f")], dirAt("home/d/"))).toBeUndefined();
  });

  it("refuses anything at the path of an earlier symlink, and duplicates", () => {
    const link = symlinkAt("home/l", "/etc");
    expect(verdict([link], dirAt("home/l/"))).toMatch(/replaces symlink home\/l/);
    expect(verdict([link], fileAt("home/l"))).toMatch(/replaces symlink home\/l/);
    expect(verdict([fileAt("home/f")], fileAt("home/f"))).toMatch(/duplicate member home\/f/);
    expect(verdict([fileAt("home/f")], fileAt("home/f/x"))).toMatch(/passes through non-directory home\/f/);
    expect(verdict([fileAt("home/f")], fileAt("home/g"))).toBeUndefined();
  });

  it("accepts hard links only to earlier regular files of the archive", () => {
    const target = fileAt("home/data.bin");
    expect(verdict([target], hardlinkAt("home/copy.bin", "home/data.bin"))).toBeUndefined();
    expect(verdict([], hardlinkAt("home/copy.bin", "home/data.bin"))).toMatch(
      /hard link target home\/data.bin is not an earlier regular file/,
    );
    expect(verdict([target], hardlinkAt("home/copy.bin", "/etc/shadow"))).toMatch(
      /hard link target \/etc\/shadow: absolute/,
    );
    expect(verdict([target], hardlinkAt("home/copy.bin", "home/../etc/shadow"))).toMatch(/'\.\.' segment/);
    expect(verdict([dirAt("home/d/")], hardlinkAt("home/x", "home/d"))).toMatch(
      /not an earlier regular file/,
    );
    expect(verdict([symlinkAt("home/s", "/etc/shadow")], hardlinkAt("home/x", "home/s"))).toMatch(
      /not an earlier regular file/,
    );
    expect(
      verdict([target, hardlinkAt("home/h1", "home/data.bin")], hardlinkAt("home/h2", "home/h1")),
    ).toMatch(/not an earlier regular file/);
    expect(verdict([target], hardlinkAt("home/h", ""))).toMatch(/hard link without target/);
  });

  it("refuses device nodes, fifos and unknown types; accepts the four restorable types", () => {
    const of = (type: TarHeader["type"]) => verdict([], { ...base, path: "home/n", type });
    expect(of("character-device")).toMatch(/device nodes are not restored/);
    expect(of("block-device")).toMatch(/device nodes are not restored/);
    expect(of("fifo")).toMatch(/fifos are not restored/);
    expect(of("other")).toMatch(/unsupported member type/);
    expect(of("file")).toBeUndefined();
    expect(of("directory")).toBeUndefined();
  });

  it("applies the path rules to every member", () => {
    expect(verdict([], fileAt("/etc/passwd"))).toMatch(/absolute path/);
    expect(verdict([], fileAt("home/../../etc/passwd"))).toMatch(/'\.\.' segment/);
    expect(verdict([], fileAt("tmp/x"))).toMatch(/outside the allowed roots/);
    expect(new LinkTracker(["data/"]).admit(fileAt("data/x"))).toBeUndefined();
  });

  it("remembers symlinks", () => {
    const tracker = new LinkTracker();
    tracker.admit(symlinkAt("home/s", "x"));
    tracker.admit(fileAt("home/f"));
    expect(tracker.isSymlink("home/s")).toBe(true);
    expect(tracker.isSymlink("home/f")).toBe(false);
  });

  it("does not record a refused member", () => {
    const tracker = new LinkTracker();
    expect(() => tracker.admit(symlinkAt("home/s", ""))).toThrow(IntegrityError);
    expect(tracker.isSymlink("home/s")).toBe(false);
    expect(() => tracker.admit(fileAt("home/s/x"))).not.toThrow();
  });
});

describe("what restore could not write is refused before anything is (verify agrees)", () => {
  it.each([
    [{ ...fileAt(`home/${"n".repeat(256)}`) }, /path component of 256 bytes/],
    [{ ...fileAt("home/big-uid"), uid: 2 ** 32 }, /uid 4294967296 outside the range/],
    [{ ...fileAt("home/minus-one-gid"), gid: 0xffff_ffff }, /gid 4294967295 outside the range/],
    [{ ...fileAt("home/a-file/") }, /a file member whose path ends in "\/"/],
    [{ ...symlinkAt("home/a-link/", "x") }, /a symlink member whose path ends in "\/"/],
  ] as [TarHeader, RegExp][])("refuses %o", (member, message) => {
    expect(verdict([dirAt("home/")], member)).toMatch(message);
  });

  it("admits a 255-byte component and the largest settable ids", () => {
    expect(
      verdict([dirAt("home/")], { ...fileAt(`home/${"n".repeat(255)}`), uid: 0xffff_fffe, gid: 0xffff_fffe }),
    ).toBe(undefined);
  });
});
