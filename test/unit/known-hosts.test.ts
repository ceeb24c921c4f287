/**
 * known_hosts parsing and matching, checked against what OpenSSH's own ssh-keygen writes and prints: real keys
 * of each type, real hashed (`ssh-keygen -H`) entries, real fingerprints (`ssh-keygen -lf`).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError } from "../../src/errors.js";
import {
  checkHostKey,
  fingerprintSha256,
  hashHostName,
  keyTypeOf,
  knownHostName,
  knownHostsLine,
  parseKnownHosts,
  preferredHostKeyAlgorithms,
  readKnownHostsFile,
} from "../../src/remote/known-hosts.js";
import { requireCommands } from "../helpers/prerequisites.js";

interface TestKey {
  type: string;
  base64: string;
  blob: Buffer;
  pubPath: string;
}

let dir: string;
const keys: Record<"ed25519" | "ecdsa" | "rsa" | "other", TestKey> = {} as never;

async function makeKey(name: string, type: string, extra: string[] = []): Promise<TestKey> {
  const keyPath = path.join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-t", type, ...extra, "-N", "", "-C", "test", "-f", keyPath]);
  const pubPath = `${keyPath}.pub`;
  const [keyType, base64] = (await fs.readFile(pubPath, "utf8")).trim().split(/\s+/);
  return { type: keyType!, base64: base64!, blob: Buffer.from(base64!, "base64"), pubPath };
}

beforeAll(async () => {
  requireCommands(["ssh-keygen"]);
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "known-hosts-test-"));
  keys.ed25519 = await makeKey("ed", "ed25519");
  keys.ecdsa = await makeKey("ec", "ecdsa", ["-b", "256"]);
  keys.rsa = await makeKey("rsa", "rsa", ["-b", "2048"]);
  keys.other = await makeKey("other", "ed25519");
});

afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

const line = (hosts: string, key: TestKey, marker = "") =>
  `${marker ? `${marker} ` : ""}${hosts} ${key.type} ${key.base64} comment`;

describe("parseKnownHosts", () => {
  it("reads entries of every key type and skips comments and blank lines", () => {
    const text = [
      "# a comment",
      "",
      line("a.example", keys.ed25519),
      line("b.example", keys.ecdsa),
      line("c.example", keys.rsa),
    ].join("\n");
    const known = parseKnownHosts(text);
    expect(known.entries.map((e) => [e.line, e.hosts, e.keyType])).toEqual([
      [3, "a.example", "ssh-ed25519"],
      [4, "b.example", "ecdsa-sha2-nistp256"],
      [5, "c.example", "ssh-rsa"],
    ]);
    expect(known.entries[0]!.key.equals(keys.ed25519.blob)).toBe(true);
    expect(known.malformedLines).toEqual([]);
  });

  it("reports malformed lines: missing fields, bad base64, a blob whose type disagrees", () => {
    const text = [
      "onlyhost",
      "host ssh-ed25519 !!!notbase64",
      `host ssh-rsa ${keys.ed25519.base64}`,
      "@bogus-marker host ssh-ed25519 AAAA",
      line("ok", keys.ed25519),
    ].join("\r\n");
    const known = parseKnownHosts(text);
    expect(known.malformedLines).toEqual([1, 2, 3, 4]);
    expect(known.entries).toHaveLength(1);
  });
});

describe("checkHostKey", () => {
  it("accepts the listed key for a plain name and for one of a comma-separated list", () => {
    const known = parseKnownHosts(line("other.example,10.0.0.5,Node-2", keys.ed25519));
    expect(checkHostKey(known, "10.0.0.5", 22, keys.ed25519.blob)).toEqual({ kind: "known" });
    // Names compare case-insensitively, as in OpenSSH.
    expect(checkHostKey(known, "node-2", 22, keys.ed25519.blob)).toEqual({ kind: "known" });
    expect(checkHostKey(known, "10.0.0.6", 22, keys.ed25519.blob)).toEqual({ kind: "unknown" });
  });

  it("uses [host]:port for non-standard ports, and plain names only for port 22", () => {
    const known = parseKnownHosts(
      [line("[10.0.0.5]:2222", keys.ed25519), line("10.0.0.7", keys.rsa)].join("\n"),
    );
    expect(checkHostKey(known, "10.0.0.5", 2222, keys.ed25519.blob).kind).toBe("known");
    expect(checkHostKey(known, "10.0.0.5", 22, keys.ed25519.blob).kind).toBe("unknown");
    expect(checkHostKey(known, "10.0.0.7", 2200, keys.rsa.blob).kind).toBe("unknown");
    expect(checkHostKey(known, "10.0.0.7", 22, keys.rsa.blob).kind).toBe("known");
  });

  it("calls a listed host with a different key a mismatch, for the same and for another key type", () => {
    const known = parseKnownHosts(line("10.0.0.5", keys.ed25519));
    expect(checkHostKey(known, "10.0.0.5", 22, keys.other.blob)).toEqual({
      kind: "mismatch",
      knownKeyTypes: ["ssh-ed25519"],
    });
    expect(checkHostKey(known, "10.0.0.5", 22, keys.rsa.blob).kind).toBe("mismatch");
  });

  it("accepts any of several keys listed for a host (one line per key type, as ssh-keyscan prints)", () => {
    const known = parseKnownHosts(
      [line("h", keys.ed25519), line("h", keys.ecdsa), line("h", keys.rsa)].join("\n"),
    );
    for (const key of [keys.ed25519, keys.ecdsa, keys.rsa]) {
      expect(checkHostKey(known, "h", 22, key.blob).kind).toBe("known");
    }
    expect(checkHostKey(known, "h", 22, keys.other.blob).kind).toBe("mismatch");
  });

  it("honours wildcards and negated patterns", () => {
    const known = parseKnownHosts(line("*.prod.example,!db?.prod.example", keys.ed25519));
    expect(checkHostKey(known, "web1.prod.example", 22, keys.ed25519.blob).kind).toBe("known");
    expect(checkHostKey(known, "db1.prod.example", 22, keys.ed25519.blob).kind).toBe("unknown");
    expect(checkHostKey(known, "web1.test.example", 22, keys.ed25519.blob).kind).toBe("unknown");
  });

  it("refuses a key marked @revoked and ignores @cert-authority lines", () => {
    const known = parseKnownHosts(
      [
        line("h", keys.ed25519),
        line("h", keys.ed25519, "@revoked"),
        line("*", keys.rsa, "@cert-authority"),
      ].join("\n"),
    );
    expect(checkHostKey(known, "h", 22, keys.ed25519.blob).kind).toBe("revoked");
    expect(checkHostKey(known, "x", 22, keys.rsa.blob).kind).toBe("unknown");
  });

  it("matches hashed entries written by ssh-keygen -H, for port 22 and [host]:port", async () => {
    const file = path.join(dir, "hashed_known_hosts");
    await fs.writeFile(file, `${line("10.1.2.3", keys.ed25519)}\n${line("[10.1.2.3]:2222", keys.rsa)}\n`);
    execFileSync("ssh-keygen", ["-q", "-H", "-f", file], { stdio: "ignore" });
    const known = await readKnownHostsFile(file);
    expect(known.entries.every((e) => e.hosts.startsWith("|1|"))).toBe(true);
    expect(checkHostKey(known, "10.1.2.3", 22, keys.ed25519.blob).kind).toBe("known");
    expect(checkHostKey(known, "10.1.2.3", 2222, keys.rsa.blob).kind).toBe("known");
    expect(checkHostKey(known, "10.1.2.3", 2222, keys.ed25519.blob).kind).toBe("mismatch");
    expect(checkHostKey(known, "10.1.2.4", 22, keys.ed25519.blob).kind).toBe("unknown");
  });

  it("computes the hashed name as HMAC-SHA1 keyed by the salt", () => {
    const known = parseKnownHosts(line("node-7", keys.ed25519));
    const salt = Buffer.from("0123456789abcdef0123");
    const hashed = `|1|${salt.toString("base64")}|${hashHostName("node-7", salt).toString("base64")}`;
    const hashedKnown = parseKnownHosts(line(hashed, keys.ed25519));
    expect(checkHostKey(known, "node-7", 22, keys.ed25519.blob).kind).toBe("known");
    expect(checkHostKey(hashedKnown, "node-7", 22, keys.ed25519.blob).kind).toBe("known");
    expect(checkHostKey(hashedKnown, "node-8", 22, keys.ed25519.blob).kind).toBe("unknown");
  });
});

describe("helpers", () => {
  it("prints fingerprints exactly as ssh-keygen -lf does", () => {
    for (const key of [keys.ed25519, keys.ecdsa, keys.rsa]) {
      const printed = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", key.pubPath], {
        encoding: "utf8",
      });
      expect(printed.split(" ")[1]).toBe(fingerprintSha256(key.blob));
    }
  });

  it("reads the key type from the blob and writes lines that parse back to the same key", () => {
    expect(keyTypeOf(keys.ecdsa.blob)).toBe("ecdsa-sha2-nistp256");
    expect(keyTypeOf(Buffer.from([0, 0]))).toBeUndefined();
    const written = knownHostsLine("Node-9", 2022, keys.rsa.blob);
    expect(written).toBe(`[node-9]:2022 ssh-rsa ${keys.rsa.base64}`);
    expect(checkHostKey(parseKnownHosts(written), "node-9", 2022, keys.rsa.blob).kind).toBe("known");
    expect(knownHostName("h", 22)).toBe("h");
  });

  it("prefers the host key algorithms of the keys known for the host", () => {
    const known = parseKnownHosts(
      [line("h", keys.rsa), line("h", keys.ecdsa), line("g", keys.ed25519)].join("\n"),
    );
    expect(preferredHostKeyAlgorithms(known, "h", 22)).toEqual([
      "rsa-sha2-512",
      "rsa-sha2-256",
      "ssh-rsa",
      "ecdsa-sha2-nistp256",
    ]);
    expect(preferredHostKeyAlgorithms(known, "unlisted", 22)).toEqual([]);
  });

  it("fails with an InputError naming a known_hosts file it cannot read", async () => {
    const missing = path.join(dir, "no-such-known-hosts");
    await expect(readKnownHostsFile(missing)).rejects.toThrow(InputError);
    await expect(readKnownHostsFile(missing)).rejects.toThrow(missing);
  });
});
