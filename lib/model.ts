/**
 * Loading models: a GGUF file or a Hugging Face folder (config.json + safetensors), mapped and
 * checked by the native addon off the JS thread, with progress and cancellation.
 * @module
 */
import { runCancellable } from './cancellable.js';
import { codeOf, ModelError, type ModelErrorCode } from './errors.js';
import { loadNative } from './native.js';

/** Hyper-parameters of a Llama-family model. */
export interface LlamaConfig {
  readonly architecture: string;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly maxContext: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeStyle: 'interleaved' | 'half-split';
  readonly ropeScaling: string;
  readonly tiedEmbeddings: boolean;
  readonly qkvBias: boolean;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
}

/** Options of {@link Model.load}. */
export interface LoadModelOptions {
  /** Scan every weight for NaN/Inf (reads the whole file once). Default true. */
  readonly checkFinite?: boolean;
  /** Called with the fraction loaded, 0..1, at most about once per percent. */
  readonly onProgress?: (fraction: number) => void;
  /** Aborting cancels the load; it then rejects with `ERR_MODEL_CANCELLED`. */
  readonly signal?: AbortSignal;
}

/** The addon's Model object (cpp/addon/model.cc). */
export interface NativeModel {
  info(): { config: LlamaConfig; source: string; format: 'gguf' | 'safetensors'; weightBytes: number; metadataKeys: string[] };
  metadata(key: string): string | undefined;
}

/** The addon's loadModel. */
export type NativeLoadModel = (
  path: string,
  checkFinite: boolean,
  onProgress?: (fraction: number) => void,
) => { promise: Promise<NativeModel>; cancel(): void };

function asModelError(err: unknown): unknown {
  const code = codeOf(err);
  return code?.startsWith('ERR_MODEL_') ? new ModelError(code as ModelErrorCode, (err as Error).message) : err;
}

/** A loaded model. Its weights stay mapped while the object is referenced. */
export class Model {
  readonly config: LlamaConfig;
  /** The path it was loaded from. */
  readonly source: string;
  readonly format: 'gguf' | 'safetensors';
  /** Bytes of all weight tensors. */
  readonly weightBytes: number;
  /** @internal */
  readonly native: NativeModel;

  private constructor(native: NativeModel) {
    const info = native.info();
    this.native = native;
    this.config = info.config;
    this.source = info.source;
    this.format = info.format;
    this.weightBytes = info.weightBytes;
  }

  /** A GGUF metadata value as a string (arrays as JSON); undefined when absent or for HF folders. */
  metadata(key: string): string | undefined {
    return this.native.metadata(key);
  }

  /**
   * Loads a `.gguf` file or a Hugging Face folder. Rejects with {@link ModelError} naming the file,
   * tensor and field when the model cannot be used, and with `ERR_MODEL_CANCELLED` when `signal`
   * aborts. An `onProgress` that throws cancels the load and rejects with that error as the cause.
   */
  static async load(source: string, options: LoadModelOptions = {}): Promise<Model> {
    const native = await runCancellable(
      (progress) => loadNative().binding.loadModel(source, options.checkFinite ?? true, progress),
      {
        onProgress: options.onProgress,
        signal: options.signal,
        abortedMessage: `loading ${source} was aborted before it started`,
        callbackMessage: `onProgress threw while loading ${source}; the load was cancelled`,
        typed: asModelError,
      },
    );
    return new Model(native);
  }
}
