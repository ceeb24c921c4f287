/**
 * What the preflight resolves before a backup (the manifest and the backend), for tests that call runBackup or
 * runLookerBackup directly: the same resolveSelection, from the first node's start options as the preflight reads
 * them.
 */
import { type BackupSelection, resolveSelection, type SelectionSettings } from "../../src/engine/backup.js";
import type { LookerNode } from "../../src/looker/control.js";
import { readStartOptions } from "../../src/looker/start-config.js";

export async function selectionFor(
  home: string,
  options: Omit<SelectionSettings, "home"> & { readonly nodes?: readonly LookerNode[] } = {},
): Promise<BackupSelection> {
  const first = options.nodes?.[0];
  return resolveSelection(
    {
      home,
      ...(options.manifestFile ? { manifestFile: options.manifestFile } : {}),
      ...(options.sslFiles ? { sslFiles: options.sslFiles } : {}),
      ...(options.backend ? { backend: options.backend } : {}),
    },
    first ? await readStartOptions(first) : undefined,
  );
}
