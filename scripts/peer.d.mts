// Types of scripts/peer.mjs, for the TypeScript test and benchmark that import it.
export declare const PEER_NAME: 'node-llama-cpp';
export declare const PEER_VERSION: string;
/** The install prefix (git-ignored .cache/peers). */
export declare const PEER_PREFIX: string;
/** The installed package's folder. */
export declare const PEER_DIR: string;
export declare function installedPeerVersion(): string | undefined;
/** A file: URL for `import()` of the installed package's ESM entry (no install). */
export declare function peerImportPath(): string;
/** Bytes under a folder (symlinks not followed). */
export declare function folderBytes(dir: string): number;
export interface EnsuredPeer {
  readonly importPath: string;
  readonly dir: string;
  readonly version: string;
  /** True when this call installed it. */
  readonly installed: boolean;
  /** Seconds the install took (0 when it was already there). */
  readonly seconds: number;
}
/** Installs node-llama-cpp@PEER_VERSION into .cache/peers unless that version is already there. */
export declare function ensurePeer(options?: { log?: (line: string) => void }): Promise<EnsuredPeer>;
