export declare const BINARY_NAME: string;
export declare function sha256Hex(bytes: Uint8Array): string;
export declare function buildSea(
  outDir?: string,
  options?: { log?: (line: string) => void },
): Promise<{ binary: string; sha256: string; bytes: number }>;
