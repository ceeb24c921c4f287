/**
 * Whether an artifact can still be downloaded: `GET /repos/{owner}/{repo}/actions/artifacts/{id}` answers 404 once it
 * was deleted and `expired: true` once its retention ran out. Used before skip-if-unchanged relies on it.
 */
import { getOctokit } from "@actions/github";

export interface ArtifactReference {
  readonly artifactId: number;
  /** owner/name; default GITHUB_REPOSITORY. */
  readonly repository?: string | undefined;
}

/** True when the artifact exists and has not expired; false when GitHub says it is gone; rejects when it cannot tell. */
export async function artifactStillExists(ref: ArtifactReference, token: string): Promise<boolean> {
  const [owner, repo] = (ref.repository ?? process.env.GITHUB_REPOSITORY ?? "").split("/");
  if (!owner || !repo) throw new Error("no repository to look the artifact up in (GITHUB_REPOSITORY)");
  const octokit = getOctokit(token, {
    ...(process.env.GITHUB_API_URL ? { baseUrl: process.env.GITHUB_API_URL } : {}),
  });
  try {
    const { data } = await octokit.rest.actions.getArtifact({ owner, repo, artifact_id: ref.artifactId });
    return !data.expired;
  } catch (error) {
    if ((error as { status?: number }).status === 404) return false;
    throw error;
  }
}
