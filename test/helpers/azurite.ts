/**
 * A private Azurite blob server per test file: spawned from the `azurite` devDependency on 127.0.0.1 with a port the
 * kernel picks, in-memory persistence (nothing on disk to clean up), killed on stop and on process exit.
 * A missing azurite fails loudly, never skips: a green run must mean the artifact path was exercised.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";

/** Azurite's well-known development account (public, documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT = "devstoreaccount1";
export const AZURITE_KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const READY_TIMEOUT_MS = 30_000;
const LISTENING = /successfully listens on (http:\/\/127\.0\.0\.1:\d+)/;

export interface Azurite {
  /** `http://127.0.0.1:<port>/devstoreaccount1`: the account's blob endpoint (IP style: account in the path). */
  readonly blobEndpoint: string;
  readonly credential: StorageSharedKeyCredential;
  /** A client with the account key, for the test service's own container setup and tampering. */
  readonly service: BlobServiceClient;
  stop(): Promise<void>;
}

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/** The blob server's entry script, or an error naming the missing prerequisite and how to install it. */
export function azuriteBlobMain(): string {
  let packageJson: string;
  try {
    packageJson = createRequire(import.meta.url).resolve("azurite/package.json");
  } catch (error) {
    throw new Error("missing test prerequisite: the azurite npm package (devDependency)\nfix: npm ci", {
      cause: error,
    });
  }
  const main = path.join(path.dirname(packageJson), "dist", "src", "blob", "main.js");
  if (!existsSync(main)) {
    throw new Error(`missing test prerequisite: azurite blob server script ${main}\nfix: npm ci`);
  }
  return main;
}

export async function startAzurite(): Promise<Azurite> {
  const main = azuriteBlobMain();
  installExitHook();
  // A private cwd: azurite writes nothing with --inMemoryPersistence, but if a version ever does, it lands here.
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), "lbazurite-"));
  const child = spawn(
    process.execPath,
    [
      main,
      "--blobHost",
      "127.0.0.1",
      "--blobPort",
      "0",
      "--inMemoryPersistence",
      "--extentMemoryLimit",
      "256",
      "--skipApiVersionCheck",
      "--loose",
      "--silent",
      "--disableTelemetry",
    ],
    { cwd: workDir, stdio: ["ignore", "pipe", "pipe"] },
  );
  liveChildren.add(child);
  try {
    const origin = await waitForListening(child);
    const blobEndpoint = `${origin}/${AZURITE_ACCOUNT}`;
    const credential = new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY);
    const service = new BlobServiceClient(blobEndpoint, credential, { retryOptions: { maxTries: 2 } });
    return {
      blobEndpoint,
      credential,
      service,
      stop: async () => {
        await killChild(child);
        await fs.rm(workDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await killChild(child);
    await fs.rm(workDir, { recursive: true, force: true });
    throw error;
  }
}

function waitForListening(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = "";
    const timer = setTimeout(
      () => fail(`azurite did not report listening within ${READY_TIMEOUT_MS} ms`),
      READY_TIMEOUT_MS,
    );
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const match = LISTENING.exec(output);
      if (match) {
        cleanup();
        resolve(match[1]!);
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      fail(`azurite exited before listening (code ${code}, signal ${signal})`);
    const onError = (error: Error) => fail(`azurite could not be started: ${error.message}`);
    function cleanup() {
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      child.stderr?.off("data", onData);
      child.off("exit", onExit);
      child.off("error", onError);
      // Keep draining so a chatty azurite never blocks on a full pipe.
      child.stdout?.resume();
      child.stderr?.resume();
    }
    function fail(message: string) {
      cleanup();
      reject(new Error(`${message}\n--- azurite output ---\n${output.slice(-4000)}`));
    }
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}

async function killChild(child: ChildProcess): Promise<void> {
  liveChildren.delete(child);
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A test worker that dies without afterAll must not leave azurite servers behind.
  process.once("exit", () => {
    for (const child of liveChildren) child.kill("SIGKILL");
  });
}
