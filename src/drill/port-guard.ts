/**
 * A drill must never be answered by another instance: Looker's web and API ports on the drill host are probed before
 * the restored Looker starts (something already there would pass every health check for it) and after it is stopped
 * (a port still answering means the drill left something running, or was never the one answering).
 */
import { connect } from "node:net";
import { InputError } from "../errors.js";
import { probeAlive } from "../looker/alive.js";

export interface DrillPort {
  readonly name: "web" | "API";
  readonly host: string;
  readonly port: number;
}

/** Whether a TCP connection to host:port is accepted within `timeoutMs` (refused or silent: false). */
export function portAnswers(host: string, port: number, timeoutMs = 3000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (answer: boolean) => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** Refuses (exit 2) when any of the ports already answers, naming the port and what answers there. */
export async function assertPortsFree(ports: readonly DrillPort[]): Promise<string> {
  for (const { name, host, port } of ports) {
    if (!(await portAnswers(host, port))) continue;
    const what =
      name === "web" && (await probeAlive({ host, port }))
        ? "something that answers /alive with 200, as a running Looker does"
        : "a listening process";
    throw new InputError(
      `the drill's ${name} port ${host}:${port} already answers (${what}) before the restored Looker was started: the drill would check another instance, not the restored one`,
      "stop what listens there, drill on another host, or give the drill other ports (web-port / api-port rewrite the restored lookerstart.cfg for the drill)",
    );
  }
  return `${ports.map((p) => `${p.name} ${p.host}:${p.port}`).join(", ")} free`;
}

/** The ports that still answer after the drill stopped its Looker. */
export async function portsStillOpen(ports: readonly DrillPort[]): Promise<DrillPort[]> {
  const open: DrillPort[] = [];
  for (const port of ports) if (await portAnswers(port.host, port.port)) open.push(port);
  return open;
}
