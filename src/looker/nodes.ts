/**
 * Builds the Looker nodes of an instance from settings: the node on this host (where the home is) plus cluster
 * nodes reached over SSH. Shared by the action, its post step and the CLI.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { DEFAULT_LOOKER_UNIT } from "../defaults.js";
import { InputError, LookerError } from "../errors.js";
import type { Host } from "../remote/host.js";
import { LocalHost, runProcess } from "../remote/local-host.js";
import { SshHost } from "../remote/ssh-host.js";
import { LookerNode } from "./control.js";
import type { MasterKey } from "./master-key.js";
import { type LookerControl, type LookerControlChoice, unitLoadState } from "./systemd.js";

export interface NodeSettings {
  readonly home: string;
  readonly lookerUser?: string;
  readonly webPort: number;
  readonly bootTimeoutMs: number;
  readonly masterKey?: MasterKey;
  readonly nodes: readonly { user: string; host: string; port: number }[];
  readonly sshKey?: string;
  readonly knownHosts: string;
  readonly acceptNewHostKeys: boolean;
  /** Extra environment for every Looker command, on every node. */
  readonly lookerEnv?: Readonly<Record<string, string>>;
  /** Looker directory on the SSH nodes (default /home/<user>/looker). */
  readonly remoteLookerDir?: string;
  /** How Looker is stopped and started on every node (default auto: systemd where its unit is loaded). */
  readonly lookerControl?: LookerControlChoice;
  /** The systemd unit Looker runs under (default looker.service). */
  readonly lookerUnit?: string;
}

export interface ConnectedNodes {
  readonly nodes: LookerNode[];
  close(): Promise<void>;
}

/** The local node first (it also does the keystore operations), then the SSH nodes in the order given. */
export async function connectNodes(
  settings: NodeSettings,
  log: (line: string) => void = () => {},
): Promise<ConnectedNodes> {
  const hosts: Host[] = [];
  try {
    const local = new LocalHost(await lookerUserFor(settings));
    hosts.push(local);
    const nodes = [
      nodeOn(
        local,
        join(settings.home, "looker"),
        "127.0.0.1",
        settings,
        await controlOn(local, settings, log),
      ),
    ];
    for (const spec of settings.nodes) {
      const host = await SshHost.connect({
        host: spec.host,
        port: spec.port,
        username: spec.user,
        privateKey: settings.sshKey ?? "",
        knownHosts: settings.knownHosts,
        hostKeyPolicy: settings.acceptNewHostKeys ? "accept-new" : "strict",
        onNewHostKey: (line) => log(`accepted new host key (add it to known-hosts): ${line}`),
      });
      hosts.push(host);
      const lookerDir = settings.remoteLookerDir ?? `/home/${spec.user}/looker`;
      nodes.push(nodeOn(host, lookerDir, spec.host, settings, await controlOn(host, settings, log)));
    }
    return { nodes, close: () => closeAll(hosts) };
  } catch (error) {
    await closeAll(hosts);
    throw error;
  }
}

function nodeOn(
  host: Host,
  lookerDir: string,
  aliveHost: string,
  settings: NodeSettings,
  control: LookerControl,
): LookerNode {
  return new LookerNode({
    host,
    lookerDir,
    alive: { host: aliveHost, port: settings.webPort },
    bootTimeoutMs: settings.bootTimeoutMs,
    control,
    unit: settings.lookerUnit ?? DEFAULT_LOOKER_UNIT,
    ...(settings.lookerEnv ? { env: settings.lookerEnv } : {}),
    ...(settings.masterKey ? { masterKey: settings.masterKey } : {}),
  });
}

/**
 * Script or systemd, per node: with auto, systemd where the unit is loaded (each node of a cluster may differ). A node
 * told systemd whose unit is not loaded fails here, before anything is stopped.
 */
async function controlOn(
  host: Host,
  settings: NodeSettings,
  log: (line: string) => void,
): Promise<LookerControl> {
  const choice = settings.lookerControl ?? "auto";
  if (choice === "script") return "script";
  const unit = settings.lookerUnit ?? DEFAULT_LOOKER_UNIT;
  const state = await unitLoadState(host, unit);
  if (state.loaded) {
    log(`Looker on ${host.name} runs under systemd (${unit}): stopping and starting it with systemctl`);
    return "systemd";
  }
  if (choice === "systemd") {
    throw new LookerError(
      `looker-control is systemd but ${unit} is not loaded on ${host.name}: ${state.why}`,
      {
        hint: "install Looker's unit (customer-scripts startup_scripts/systemd), set looker-unit, or use looker-control script",
      },
    );
  }
  return "script";
}

async function closeAll(hosts: Host[]): Promise<void> {
  await Promise.allSettled(hosts.map((h) => h.close()));
}

/** Looker's commands run as the owner of the home unless told otherwise; root never runs Looker. */
async function lookerUserFor(settings: NodeSettings): Promise<string | undefined> {
  if (settings.lookerUser) return settings.lookerUser;
  const owner = (
    await stat(settings.home).catch((error: Error) => {
      throw new InputError(
        `cannot read the looker home ${settings.home}: ${error.message}`,
        "pass the home of the looker user (e.g. /home/looker)",
      );
    })
  ).uid;
  if (owner === process.getuid?.()) return undefined;
  const result = await runProcess("getent", ["passwd", String(owner)]);
  return result.code === 0 ? result.stdout.split(":")[0] : undefined;
}
