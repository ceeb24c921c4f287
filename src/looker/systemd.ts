/**
 * Looker under systemd, with the unit Looker publishes (customer-scripts, startup_scripts/systemd/looker.service:
 * Type=simple, ExecStart=/home/looker/looker/looker start, ExecStop=/home/looker/looker/looker stop,
 * PIDFile=/home/looker/looker/.tmp/looker.pid, User=looker). Such a Looker is stopped and started through systemctl:
 * `./looker stop` would make systemd see its service die (and start it again under a Restart= policy), and
 * `./looker start` outside systemd would leave the unit inactive, so the next boot or `systemctl stop` would not know it.
 *
 * Exit codes, as systemctl documents them (systemctl(1), EXIT STATUS; src/systemctl/systemctl-util.c,
 * translate_bus_error_to_exit_status): `is-active` 0 when active, 3 ("program is not running", the LSB status code)
 * when not; start/stop 0 once the job is done, 4 when access is denied (no root, no polkit rule), 5 when there is no
 * such unit. Anything else is an error we cannot read.
 */

import { InputError } from "../errors.js";
import type { CommandResult, Host } from "../remote/host.js";

export type LookerControl = "script" | "systemd";
export type LookerControlChoice = "auto" | LookerControl;

/**
 * A service unit name as systemd accepts it (systemd.unit(5): letters, digits, ":", "-", "_", ".", "\" and "@"), and
 * never an option. A bare name gets ".service", as systemctl itself adds it.
 */
export function checkedUnitName(value: string, where: string): string {
  const unit = value.includes(".") ? value : `${value}.service`;
  if (!/^[A-Za-z0-9:_.@\\][A-Za-z0-9:_.@\\-]*\.service$/.test(unit) || unit.length > 255) {
    throw new InputError(
      `${where} must be a systemd service unit name, got '${value}'`,
      "the unit Looker runs under, e.g. looker.service",
    );
  }
  return unit;
}

export type LoadState = { readonly loaded: true } | { readonly loaded: false; readonly why: string };

/**
 * Whether `unit` is a loaded unit on the host: `systemctl show -p LoadState --value` prints `loaded` (a unit without a
 * file prints `not-found`, with exit 0). No systemctl, or one that cannot reach systemd (a container, a host booted
 * without it), means the unit is not there. Reading a unit's state needs no privilege.
 */
export async function unitLoadState(host: Host, unit: string): Promise<LoadState> {
  let result: CommandResult;
  try {
    result = await host.run(["systemctl", "show", "-p", "LoadState", "--value", unit], { timeoutMs: 30_000 });
  } catch (error) {
    // LocalHost rejects when the program does not exist (spawn ENOENT).
    return { loaded: false, why: `systemctl cannot run: ${(error as Error).message}` };
  }
  const state = result.stdout.trim();
  if (result.code === 0 && state === "loaded") return { loaded: true };
  if (result.code === 127) return { loaded: false, why: "there is no systemctl" };
  if (result.code === 0) return { loaded: false, why: `${unit} is ${state || "unknown"}` };
  const said = `${result.stderr}${result.stdout}`.trim().split("\n")[0] ?? "";
  return { loaded: false, why: `systemctl exited ${result.code}${said ? `: ${said}` : ""}` };
}

/** `systemctl is-active`: true on 0, false on 3 (inactive, failed, ...); any other exit is returned as an error. */
export async function unitActive(host: Host, unit: string): Promise<boolean | CommandResult> {
  const result = await host.run(["systemctl", "is-active", unit], { timeoutMs: 30_000 });
  if (result.code === 0) return true;
  if (result.code === 3) return false;
  return result;
}

/** `systemctl <verb> <unit>` as root: starting and stopping a system unit is for root (or a polkit rule) only. */
export function systemctlAsRoot(
  host: Host,
  verb: "start" | "stop",
  unit: string,
  timeoutMs: number,
): Promise<CommandResult> {
  return host.run(["systemctl", verb, unit], { asRoot: true, timeoutMs });
}
