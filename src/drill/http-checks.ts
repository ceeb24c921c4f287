/**
 * Boot checks beyond /alive: an API login (proves the restored keystore decrypts the API credentials) and the
 * user's own URL checks. Like /alive, HTTPS is tried first (real Looker's certificate is self-signed on a drill
 * host, so it is not verified) and plain HTTP is used when the port does not speak TLS (--no-ssl, a proxy).
 */
import { LookerError } from "../errors.js";
import { requestLooker } from "../runtime/http-request.js";

export interface HttpTarget {
  readonly host: string;
  readonly port: number;
}

export interface UrlCheck {
  readonly path: string;
  readonly status: number;
}

interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

const REQUEST_TIMEOUT_MS = 15_000;
const MAX_BODY_BYTES = 1 << 20;

/** POST /api/4.0/login with the client id and secret as a form body; resolves when the answer carries a token. */
export async function checkApiLogin(
  target: HttpTarget,
  clientId: string,
  clientSecret: string,
): Promise<void> {
  const body = new URLSearchParams({ client_id: clientId, client_secret: clientSecret }).toString();
  const where = `${target.host}:${target.port}/api/4.0/login`;
  let answer: HttpAnswer;
  try {
    answer = await request(target, "POST", "/api/4.0/login", {
      body,
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
  } catch (error) {
    throw new LookerError(`api login at ${where} failed: ${(error as Error).message}`, {
      hint: "check --api-port and that the API listener is reachable from this runner",
      cause: error,
    });
  }
  if (answer.status !== 200) {
    throw new LookerError(`api login at ${where} answered ${answer.status}, expected 200`, {
      hint: "the restored instance does not accept the API credentials: check --api-client-id and its secret",
    });
  }
  if (!hasAccessToken(answer.body)) {
    throw new LookerError(`api login at ${where} answered 200 without an access_token`);
  }
}

/** GET each path on the web port and compare the status; the first mismatch fails. */
export async function runUrlChecks(target: HttpTarget, checks: readonly UrlCheck[]): Promise<void> {
  for (const check of checks) {
    const where = `${target.host}:${target.port}${check.path}`;
    let status: number;
    try {
      status = (await request(target, "GET", check.path)).status;
    } catch (error) {
      throw new LookerError(`check ${where} failed: ${(error as Error).message}`, { cause: error });
    }
    if (status !== check.status) {
      throw new LookerError(`check ${where} answered ${status}, expected ${check.status}`);
    }
  }
}

function hasAccessToken(text: string): boolean {
  try {
    const parsed = JSON.parse(text) as { access_token?: unknown };
    return typeof parsed.access_token === "string" && parsed.access_token !== "";
  } catch {
    return false;
  }
}

async function request(
  target: HttpTarget,
  method: "GET" | "POST",
  path: string,
  options: { body?: string; headers?: Record<string, string> } = {},
): Promise<HttpAnswer> {
  try {
    return await send("https", target, method, path, options);
  } catch (error) {
    // Only a port that does not speak TLS falls back; a refused or timed-out connection is the answer.
    if (!isNotTls(error)) throw error;
    return send("http", target, method, path, options);
  }
}

function isNotTls(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code ?? "";
  const message = (error as Error).message ?? "";
  return (
    code.startsWith("ERR_SSL") ||
    code === "EPROTO" ||
    code === "ECONNRESET" ||
    /wrong version number|packet length/i.test(message)
  );
}

async function send(
  scheme: "http" | "https",
  target: HttpTarget,
  method: string,
  path: string,
  options: { body?: string; headers?: Record<string, string> },
): Promise<HttpAnswer> {
  const headers = {
    ...options.headers,
    ...(options.body === undefined ? {} : { "content-length": Buffer.byteLength(options.body) }),
  };
  const common = { host: target.host, port: target.port, path, method, headers, timeout: REQUEST_TIMEOUT_MS };
  const req = await requestLooker(scheme, common);
  return new Promise((resolve, reject) => {
    req.on("response", (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      });
      response.on("end", () =>
        resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
      );
      response.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on("error", reject);
    req.end(options.body);
  });
}
