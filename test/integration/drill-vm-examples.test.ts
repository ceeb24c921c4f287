/**
 * The drill host scripts in examples/drill-vm, run against a stand-in container engine (a `docker` on PATH that
 * records its calls) and a stand-in ssh-keyscan: `create` prints the address as its last line only once the host
 * presents the drill host key, records what it made, and `delete` removes exactly that, refusing anything not
 * labelled as a drill host. The cloud scripts share this logic (common.sh); what they call gcloud and aws with is
 * checked by shellcheck only.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";

const SCRIPT = resolve(import.meta.dirname, "../../examples/drill-vm/container.sh");

// Records each call, answers `run` with a container id, `inspect` with an address or the drill label, `rm` quietly;
// keeps a copy of the first-boot script it was given, with its mode, as the engine would have read it.
const FAKE_ENGINE = `#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_DIR/calls"
case "$1" in
  run)
    for arg in "$@"; do
      case "$arg" in
        *:/looker-drill-boot.sh:ro) src="\${arg%%:*}"; cp "$src" "$FAKE_DIR/boot.sh"; stat -c %a "$src" > "$FAKE_DIR/boot.mode" ;;
      esac
    done
    echo c0ffee ;;
  inspect)
    case "$3" in
      *IPAddress*) echo "172.17.0.9 " ;;
      *Labels*)
        [ -n "\${FAKE_GONE:-}" ] && { echo "Error: No such object: $4" >&2; exit 1; }
        [ -n "\${FAKE_DOWN:-}" ] && { echo "Cannot connect to the Docker daemon" >&2; exit 1; }
        echo "\${FAKE_LABEL-drill}" ;;
    esac ;;
  rm) ;;
esac
`;
// Offers FAKE_HOST_KEY ("ssh-ed25519 AAAA...") for any host, as ssh-keyscan prints it.
const FAKE_KEYSCAN = `#!/bin/sh
[ -n "\${FAKE_HOST_KEY:-}" ] && printf '%s %s\\n' "$7" "$FAKE_HOST_KEY"
exit 0
`;

let work: string;
let hostKey: string;
let hostPublicKey: string;
let fakeDir: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "lb-drill-vm-"));
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "drill", "-f", join(work, "host")]);
  hostKey = await readFile(join(work, "host"), "utf8");
  hostPublicKey = (await readFile(join(work, "host.pub"), "utf8")).split(" ").slice(0, 2).join(" ");
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

beforeEach(async () => {
  fakeDir = await mkdtemp(join(work, "run-"));
  await mkdir(join(fakeDir, "bin"));
  await writeFile(join(fakeDir, "bin", "docker"), FAKE_ENGINE);
  await writeFile(join(fakeDir, "bin", "ssh-keyscan"), FAKE_KEYSCAN);
  await chmod(join(fakeDir, "bin", "docker"), 0o755);
  await chmod(join(fakeDir, "bin", "ssh-keyscan"), 0o755);
});

function script(command: string, env: Record<string, string> = {}) {
  const result = spawnSync("bash", [SCRIPT, command], {
    encoding: "utf8",
    env: {
      PATH: `${join(fakeDir, "bin")}:/usr/bin:/bin`,
      FAKE_DIR: fakeDir,
      DRILL_CONTAINER_ENGINE: "docker",
      DRILL_STATE_DIR: join(fakeDir, "state"),
      DRILL_HOST_KEY: hostKey,
      DRILL_AUTHORIZED_KEY: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClientKeyForTheDrill drill-client",
      GITHUB_RUN_ID: "4242",
      GITHUB_RUN_ATTEMPT: "1",
      FAKE_HOST_KEY: hostPublicKey,
      ...env,
    },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const calls = async () => (await readFile(join(fakeDir, "calls"), "utf8")).trim().split("\n");

describe("examples/drill-vm/container.sh", () => {
  it("create prints the address last, once the host presents the drill host key, and labels what it starts", async () => {
    const run = script("create");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe("172.17.0.9\n");
    const [started] = await calls();
    expect(started).toMatch(/^run --detach --name looker-drill-\d{14}-4242-1 /);
    expect(started).toContain("--label looker-backup=drill --label looker-drill-run=4242-1");
    // The keys reach the container in a private file, never in its command line.
    expect(started).not.toContain("PRIVATE KEY");
    expect((await readFile(join(fakeDir, "boot.mode"), "utf8")).trim()).toBe("600");
    const boot = await readFile(join(fakeDir, "boot.sh"), "utf8");
    expect(boot).toContain(hostKey.trim());
    expect(boot).toContain("drill-client");
    expect(boot.trim().split("\n").at(-1)).toBe("exec /usr/sbin/sshd -D -e");
    expect(spawnSync("sh", ["-n", join(fakeDir, "boot.sh")]).status).toBe(0);
    expect(await readFile(join(fakeDir, "state", "looker-drill-container.state"), "utf8")).toBe(
      "id=c0ffee\nengine=docker\n",
    );
  });

  it("delete removes the container create recorded, then nothing more", async () => {
    expect(script("create").code).toBe(0);
    const first = script("delete");
    expect(first.code, first.stderr).toBe(0);
    expect((await calls()).at(-1)).toBe("rm --force --volumes c0ffee");
    const again = script("delete");
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("nothing to delete");
    expect((await calls()).filter((call) => call.startsWith("rm "))).toHaveLength(1);
  });

  it("delete refuses a recorded container that is not labelled as a drill host", async () => {
    expect(script("create").code).toBe(0);
    const run = script("delete", { FAKE_LABEL: "" });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("is not labelled looker-backup=drill: not removing it");
    expect((await calls()).some((call) => call.startsWith("rm "))).toBe(false);
  });

  it("delete forgets a container that is already gone", async () => {
    expect(script("create").code).toBe(0);
    const run = script("delete", { FAKE_GONE: "1" });
    expect(run.code).toBe(0);
    await expect(stat(join(fakeDir, "state", "looker-drill-container.state"))).rejects.toThrow();
  });

  it("delete keeps the record when the engine cannot say whether the container is there", async () => {
    expect(script("create").code).toBe(0);
    const run = script("delete", { FAKE_DOWN: "1" });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("Cannot connect to the Docker daemon");
    expect(await readFile(join(fakeDir, "state", "looker-drill-container.state"), "utf8")).toContain(
      "id=c0ffee",
    );
  });

  it("create refuses while an earlier drill host is still recorded", async () => {
    expect(script("create").code).toBe(0);
    const run = script("create");
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /records a drill host that was not deleted; run '.*container.sh delete' first/,
    );
  });

  it("create fails, printing no address, when the host never presents the drill host key", async () => {
    const run = script("create", {
      FAKE_HOST_KEY: "ssh-ed25519 AAAAC3SomeOtherKey",
      DRILL_READY_TIMEOUT: "0",
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain("did not present the drill host key within 0 s");
    // What it started is recorded, so the teardown still removes it.
    expect(script("delete").code).toBe(0);
    expect((await calls()).at(-1)).toBe("rm --force --volumes c0ffee");
  });

  it("create needs the keys", () => {
    const run = script("create", { DRILL_HOST_KEY: "" });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("DRILL_HOST_KEY");
  });
});
