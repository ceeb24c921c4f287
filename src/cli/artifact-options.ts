/**
 * The flags that name the artifact store of a repository (`list`, `prune`): `--repo OWNER/REPO` instead of `--out`,
 * the token from an environment variable (never argv, visible in `ps`), and the optional filters.
 */
import { InputError } from "../errors.js";
import type { ListBackupArtifactsRequest } from "../store/artifact-find.js";
import { optionalString, type ParsedOptions } from "./args.js";

/** Where the token comes from when --token-env is not given: what `gh` and the runner both set. */
const DEFAULT_TOKEN_ENV = "GITHUB_TOKEN";
const REPOSITORY_PATTERN = /^([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))\/([A-Za-z0-9._-]{1,100})$/;

export const artifactStoreOptions = {
  repo: {
    type: "string",
    placeholder: "OWNER/REPO",
    help: "the artifact store: backup artifacts of every workflow run of this GitHub repository (instead of --out)",
  },
  "token-env": {
    type: "string",
    placeholder: "VAR",
    help: `with --repo: the environment variable holding the GitHub token (default ${DEFAULT_TOKEN_ENV})`,
  },
  workflow: {
    type: "string",
    placeholder: "FILE",
    help: "with --repo: only artifacts of this workflow's runs (file name, e.g. backup.yml, or id)",
  },
  branch: { type: "string", placeholder: "NAME", help: "with --repo: only artifacts of runs of this branch" },
  "api-url": {
    type: "string",
    placeholder: "URL",
    help: "with --repo: GitHub's REST API (default GITHUB_API_URL, else https://api.github.com)",
  },
} as const;

/** What a token must be allowed, for the hint when there is none. */
export type ArtifactAccess = "read" | "write";

/**
 * The repository and token of `--repo`, or undefined when the command reads a directory store (`--out`). Neither,
 * both, or a --repo-only flag without --repo, is exit 2; so is a missing token, with the permission it needs.
 */
export function artifactRepositoryOf(
  values: ParsedOptions,
  command: string,
  access: ArtifactAccess,
): ListBackupArtifactsRequest | undefined {
  const repository = optionalString(values, "repo");
  const repoOnly = ["token-env", "workflow", "branch", "api-url"].filter(
    (flag) => values[flag] !== undefined,
  );
  if (repository === undefined) {
    if (repoOnly.length > 0) {
      throw new InputError(
        `${command}: --${repoOnly[0]} goes with --repo`,
        "add --repo OWNER/REPO to read the repository's backup artifacts, or drop it for a directory store (--out)",
      );
    }
    if (values["out"] === undefined) {
      throw new InputError(
        `${command}: --out DIR (a directory store) or --repo OWNER/REPO (a repository's backup artifacts) is required`,
        `see looker-backup ${command} --help`,
      );
    }
    return undefined;
  }
  if (values["out"] !== undefined) {
    throw new InputError(
      `${command}: give either --out (a directory store) or --repo (the artifact store), not both`,
    );
  }
  const match = REPOSITORY_PATTERN.exec(repository);
  if (!match) {
    throw new InputError(
      `${command}: --repo '${repository}' is not OWNER/REPO`,
      "e.g. --repo acme/looker-ops",
    );
  }
  const variable = optionalString(values, "token-env") ?? DEFAULT_TOKEN_ENV;
  const token = process.env[variable];
  if (!token) {
    const permission = access === "write" ? "`actions: write` (deleting artifacts)" : "`actions: read`";
    throw new InputError(
      `${command} --repo: no GitHub token: environment variable ${variable} is empty or unset`,
      `export a token with ${permission} on ${repository} (a fine-grained token's "Actions" permission, or \`gh auth token\`) in ${variable}, or name another variable with --token-env`,
    );
  }
  const apiUrl = optionalString(values, "api-url");
  if (apiUrl !== undefined && !/^https?:\/\/[^/\s]+/.test(apiUrl)) {
    throw new InputError(
      `${command}: --api-url '${apiUrl}' is not an http(s) URL`,
      "e.g. https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server",
    );
  }
  const workflow = optionalString(values, "workflow");
  const branch = optionalString(values, "branch");
  return {
    token,
    owner: match[1]!,
    repo: match[2]!,
    ...(apiUrl === undefined ? {} : { apiUrl }),
    ...(workflow ? { workflow } : {}),
    ...(branch ? { branch } : {}),
  };
}
