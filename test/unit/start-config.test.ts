/**
 * Looker's start options as its startup script passes them: LOOKERARGS split on white space, LOOKERPORT, and the
 * flags the backup acts on (a cluster's shared storage, the MySQL backend's `-d` file, --no-ssl).
 */
import { describe, expect, it } from "vitest";
import { parseStartOptions } from "../../src/looker/start-config.js";
import { defaultManifest } from "../../src/manifest/default-manifest.js";

describe("parseStartOptions", () => {
  it("reads a cluster node's options: -d file, --clustered, shared storage, port", () => {
    const options = parseStartOptions(
      "--force-gcm-encryption  -d looker-db.yml --clustered -H 10.0.0.7 --shared-storage-dir /mnt/looker-shared",
      "9443",
      "/home/looker/looker",
    );
    expect(options).toEqual({
      args: [
        "--force-gcm-encryption",
        "-d",
        "looker-db.yml",
        "--clustered",
        "-H",
        "10.0.0.7",
        "--shared-storage-dir",
        "/mnt/looker-shared",
      ],
      port: 9443,
      corePort: 19999,
      sharedStorageDir: "/mnt/looker-shared",
      dbConfigFile: "/home/looker/looker/looker-db.yml",
      clustered: true,
      noSsl: false,
    });
  });

  it("takes --flag=value, resolves relative paths in the Looker directory, and sees --no-ssl", () => {
    const options = parseStartOptions("--no-ssl --shared-storage-dir=shared", "", "/srv/looker/looker");
    expect(parseStartOptions("--internal-db-creds=/etc/looker/db.yml", "", "/x").dbConfigFile).toBe(
      "/etc/looker/db.yml",
    );
    expect(options.sharedStorageDir).toBe("/srv/looker/looker/shared");
    expect(options.noSsl).toBe(true);
    expect(options.port).toBe(9999);
    expect(parseStartOptions("--core-port=19443", "", "/x").corePort).toBe(19443);
    // A later option wins, as Looker's own parser takes it (the drill appends its ports).
    expect(parseStartOptions("--core-port=1 --port=2 --core-port 19444", "", "/x").corePort).toBe(19444);
    expect(options.dbConfigFile).toBeUndefined();
    expect(options.clustered).toBe(false);
  });
});

describe("the default manifest and Looker's runtime files", () => {
  it("never carries the script's .starting and the server's .status_server_token to a restored host", () => {
    const rules = defaultManifest({ mysqlBackend: false }).rules;
    for (const pattern of ["looker/.starting", "looker/.status_server_token", "looker/.tmp"]) {
      const rule = rules.find((r) => r.pattern === pattern);
      expect(rule?.action, pattern).toBe("exclude");
    }
    expect(rules.find((r) => r.pattern === "looker/.starting")?.fixed).toBe(true);
  });

  it("backs up a cluster's shared storage as a required path outside the home", () => {
    const outside = defaultManifest({ mysqlBackend: true, sharedStorageDir: "/mnt/looker-shared" }).outside;
    expect(outside.find((o) => o.path === "/mnt/looker-shared")).toMatchObject({ required: true });
  });
});
