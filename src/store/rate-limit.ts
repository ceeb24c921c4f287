/**
 * GitHub's REST rate limits, told apart from permission problems (both can be a 403). As GitHub's REST docs describe
 * them ("Rate limits for the REST API"): a used-up primary limit is a 403 or 429 with `x-ratelimit-remaining: 0` and
 * the reset time (UTC epoch seconds) in `x-ratelimit-reset`; a secondary limit is a 403 or 429 whose message says so,
 * with `retry-after` (seconds) when GitHub sends one.
 */
import { RateLimitError } from "../errors.js";

interface HttpError {
  status?: unknown;
  message?: unknown;
  response?: { headers?: Record<string, string | number | undefined> };
}

/** A RateLimitError saying `what` failed and when the limit lifts, when `error` is a rate limit; else undefined. */
export function rateLimitErrorOf(error: unknown, what: string): RateLimitError | undefined {
  const { status, message, response } = (error ?? {}) as HttpError;
  if (status !== 403 && status !== 429) return undefined;
  const headers = response?.headers ?? {};
  if (/\bsecondary rate limit\b/i.test(String(message ?? ""))) {
    const retryAfter = Number(headers["retry-after"]);
    const resetAt =
      Number.isFinite(retryAfter) && retryAfter > 0 ? new Date(Date.now() + retryAfter * 1000) : undefined;
    return new RateLimitError(
      `${what} (a secondary rate limit${resetAt ? `; it lifts at ${resetAt.toISOString()}` : ""})`,
      {
        resetAt,
        hint: "too many requests in a short time: wait a few minutes and re-run the job; do not start drills or restores in parallel",
        cause: error,
      },
    );
  }
  if (String(headers["x-ratelimit-remaining"]) !== "0") return undefined;
  const reset = Number(headers["x-ratelimit-reset"]);
  const resetAt = Number.isFinite(reset) && reset > 0 ? new Date(reset * 1000) : undefined;
  const limit = headers["x-ratelimit-limit"];
  return new RateLimitError(
    `${what} (the rate limit${limit === undefined ? "" : ` of ${limit} requests per hour`} is used up${resetAt ? `; it resets at ${resetAt.toISOString()}` : ""})`,
    {
      resetAt,
      hint: "re-run the job after the reset; the limit belongs to the token, so other jobs using it count too",
      cause: error,
    },
  );
}
