export declare const entries: Record<string, string>;
export declare const NODE_MAJOR: number;
export declare function bundle(outdir?: string): Promise<void>;
export declare function bundleStandalone(outfile: string): Promise<void>;
