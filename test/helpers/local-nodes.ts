/** The Looker node of a home on this machine, as the action builds it (connectNodes, no cluster nodes over SSH). */
import { type ConnectedNodes, connectNodes, type NodeSettings } from "../../src/looker/nodes.js";

export function connectLocalNode(
  home: string,
  settings: Partial<Omit<NodeSettings, "home">> = {},
): Promise<ConnectedNodes> {
  return connectNodes({
    home,
    webPort: 9999,
    bootTimeoutMs: 60_000,
    nodes: [],
    knownHosts: "",
    acceptNewHostKeys: false,
    ...settings,
  });
}
