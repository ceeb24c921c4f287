/**
 * Looker's health check: GET /alive on the web port answers 200 once the instance serves. Real Looker speaks HTTPS
 * with a self-signed certificate by default; started with --no-ssl (or behind a plain-HTTP front) it answers HTTP.
 * We probe HTTPS first and fall back to HTTP when the port does not speak TLS, so one setting fits both.
 */
import { requestLooker } from "../runtime/http-request.js";

export interface AliveTarget {
  readonly host: string;
  readonly port: number;
  /** Force a scheme; by default HTTPS is tried first, then HTTP. */
  readonly scheme?: "http" | "https";
}

export async function probeAlive(target: AliveTarget, timeoutMs = 3000): Promise<boolean> {
  const schemes = target.scheme ? [target.scheme] : (["https", "http"] as const);
  for (const scheme of schemes) {
    const status = await getStatus(scheme, target, timeoutMs).catch(() => undefined);
    if (status === 200) return true;
  }
  return false;
}

/** Polls /alive until it answers 200 or the deadline passes; resolves with whether it came up. */
export async function waitForAlive(
  target: AliveTarget,
  options: { timeoutMs: number; intervalMs?: number; signal?: AbortSignal },
): Promise<boolean> {
  const deadline = Date.now() + options.timeoutMs;
  const interval = options.intervalMs ?? 500;
  while (Date.now() < deadline) {
    options.signal?.throwIfAborted();
    if (await probeAlive(target, Math.min(3000, Math.max(500, deadline - Date.now())))) return true;
    await new Promise((r) => setTimeout(r, interval));
  }
  return false;
}

async function getStatus(scheme: "http" | "https", target: AliveTarget, timeoutMs: number): Promise<number> {
  // /alive carries no secret: an unverified certificate (Looker's default is self-signed) is fine here.
  const options = { host: target.host, port: target.port, path: "/alive", method: "GET", timeout: timeoutMs };
  const request = await requestLooker(scheme, options);
  return new Promise((resolve, reject) => {
    request.on("response", (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on("timeout", () => request.destroy(new Error("timed out")));
    request.on("error", reject);
    request.end();
  });
}
