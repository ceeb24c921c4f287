/**
 * An HTTP(S) request to a Looker instance (its /alive check, the drill's API checks). Looker's default certificate
 * is self-signed, so HTTPS is not verified: callers send nothing there that an impostor could use (see theirs).
 *
 * node:http and node:https are loaded on first use: importing either at start-up made node build its fetch
 * implementation (undici) for every command, ~20 ms of a CLI that starts in ~80.
 */
import type { ClientRequest, RequestOptions } from "node:http";

export async function requestLooker(
  scheme: "http" | "https",
  options: RequestOptions,
): Promise<ClientRequest> {
  if (scheme === "https")
    return (await import("node:https")).request({ ...options, rejectUnauthorized: false });
  return (await import("node:http")).request(options);
}
