/**
 * Every error fineserve throws or rejects with is a {@link FineserveError}; `code` tells them apart
 * without string matching on messages.
 */
export class FineserveError extends Error {
  /** Stable machine-readable code, e.g. `ERR_NATIVE_LOAD`. */
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** One place the loader looked for the native addon, and why it could not use it. */
export interface NativeLoadAttempt {
  /** Which kind of candidate this was. */
  readonly variant: AddonVariant;
  /** Absolute path of the `.node` file, or of the folder that had none. */
  readonly path: string;
  /** Why it was not used: not found, skipped, or the error `dlopen` gave. */
  readonly reason: string;
}

/** Where an addon binary comes from, in the order the loader tries them. */
export type AddonVariant = 'override' | 'local' | 'cuda-prebuild' | 'cpu-prebuild';

/** No native addon could be loaded; `attempts` lists every candidate tried, in order. */
export class NativeLoadError extends FineserveError {
  readonly attempts: readonly NativeLoadAttempt[];

  constructor(attempts: readonly NativeLoadAttempt[]) {
    const lines = attempts.map((a) => `  - ${a.variant}: ${a.path}\n      ${a.reason}`);
    super(
      'ERR_NATIVE_LOAD',
      `fineserve could not load its native addon. Tried, in order:\n${lines.join('\n')}\n` +
        'Build it from source with `npm run build:native` (needs cmake and a C++17 compiler), ' +
        'or reinstall the package to get its prebuilt binaries.',
    );
    this.attempts = attempts;
  }
}
