import type { BuildOptions } from "esbuild";

export declare const entries: Record<string, string>;
export declare const NODE_MAJOR: number;
export declare const buildOptions: BuildOptions;
export declare const standaloneOptions: BuildOptions;
export declare function bundle(outdir?: string): Promise<void>;
export declare function bundleStandalone(outfile: string): Promise<void>;
