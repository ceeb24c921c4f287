export declare const RUNBOOK: string;
export declare const NOTES: string;
export declare const SUMS: string;
export declare function releaseNotes(changelog: string, version: string): string;
export declare function sha256sums(dir: string, names: readonly string[]): Promise<string>;
export declare function versionOfTag(tag: string): string;
export declare function release(options: {
  tag?: string | undefined;
  outDir: string;
  checkDist?: boolean;
  log?: (line: string) => void;
}): Promise<{ version: string | undefined; notes: string; sums: string; files: string[] }>;
