// Types for tether.mjs, the Tether plugin SDK for Node.js 18+ (SPEC.md, protocol version 1).
/// <reference types="node" />

/** The core protocol version this SDK speaks. */
export const PROTOCOL_VERSION: 1;
/** The reference cookie of SPEC.md §1.4, used when `serve` is given no `cookie`. */
export const REFERENCE_COOKIE: Readonly<{ key: 'TETHER_MAGIC_COOKIE'; value: '7c1e4b9a-tether-reference-plugin' }>;
/** The maximum body length until the host announces its own (SPEC.md §2.5): 32 MiB. */
export const DEFAULT_MAX_FRAME_SIZE: 33554432;
/** The smallest `maxFrameSize` a host may announce: 1 MiB. */
export const MIN_MAX_FRAME_SIZE: 1048576;
/** The longest header block a reader accepts (SPEC.md §2.3). */
export const MAX_HEADER_BLOCK: 4096;
/** The credit on each stream before any `$/stream.credit`, unless announced otherwise (SPEC.md §12.3): 1 MiB. */
export const DEFAULT_INITIAL_CREDIT: 1048576;

/** The error codes SPEC.md Appendix A defines for the protocol. */
export const ErrorCode: Readonly<{
  PARSE_ERROR: -32700;
  INVALID_REQUEST: -32600;
  METHOD_NOT_FOUND: -32601;
  INVALID_PARAMS: -32602;
  INTERNAL_ERROR: -32603;
  UNSUPPORTED_VERSION: -32001;
  NOT_INITIALIZED: -32002;
  UNKNOWN_HANDLE: -32003;
  FRAME_TOO_LARGE: -32004;
  SHUTTING_DOWN: -32005;
  STREAM_ERROR: -32006;
  REQUEST_CANCELLED: -32800;
}>;

/**
 * An error that travels as a JSON-RPC error object. Throw it from a handler for an application
 * error (a code outside -32768..-32000); calls to the host reject with it when the host answers
 * with an error (code -32800 when the call was cancelled).
 */
export class TetherError extends Error {
  constructor(code: number, message: string, data?: unknown);
  code: number;
  data: unknown;
  toJSON(): { code: number; message: string; data?: unknown };
}

/**
 * The rejection of a call to the host (`RemoteHandle.call`, `ctx.request`, `session.request`):
 * the host's error, or -32800 when the call was cancelled. A handler that lets one escape is
 * answered -32603 with the host's error in `data.cause` (the host's code is about the nested
 * call, not about the request being answered).
 */
export class RemoteError extends TetherError {
  constructor(method: string, code: number, message: string, data?: unknown);
  /** The method called: `sum` for an invoke of sum, else the full method name. */
  method: string;
}

/** A JSON Schema (draft 2020-12) document. */
export type JsonSchema = { [keyword: string]: unknown };
/** A schema of type object: what every method's params and result must be (SPEC.md §4.4). */
export type ObjectSchema = JsonSchema & { type: 'object' };

/** Helpers that write JSON Schemas for method params and results. */
export const schema: Readonly<{
  /** An object; every property is required unless listed in `optional`. */
  object(
    properties?: Record<string, JsonSchema>,
    options?: { optional?: string[]; additionalProperties?: boolean | JsonSchema; description?: string },
  ): ObjectSchema;
  string(extra?: JsonSchema): JsonSchema;
  /**
   * Bytes: padded standard base64 on the wire, or an attachment once negotiated (SPEC.md §2.8);
   * a `Buffer` in handlers either way. Return a Buffer/Uint8Array. The schema is the spec's
   * Bytes schema (`anyOf` a base64 string or `{"$bytes": i}`).
   */
  bytes(extra?: JsonSchema): JsonSchema;
  /**
   * A stream (SPEC.md §12.1). `'read'`: the host produces, the handler gets a `ReadableStream`
   * (also an async iterable of `Uint8Array` chunks); `'write'`: the handler produces into a
   * `WritableStream`. Requires the `streams` capability.
   */
  stream(mode: 'read' | 'write'): JsonSchema;
  /** An integer; only exactly representable ones (±2^53-1) are accepted. */
  integer(extra?: JsonSchema): JsonSchema;
  number(extra?: JsonSchema): JsonSchema;
  boolean(extra?: JsonSchema): JsonSchema;
  array(items: JsonSchema, extra?: JsonSchema): JsonSchema;
  /** A handle to an object of `iface` served by the host; a `RemoteHandle` in handlers. */
  handle(iface: string): JsonSchema;
  /** `{}`. */
  empty(): ObjectSchema;
}>;

/** An interface file that cannot be served; the message names the file and the cause. */
export class InterfaceFileError extends Error {}

/**
 * Reads an interface file (`spec/schema/interface.schema.json`, e.g. `spec/interfaces/kv.json`)
 * and returns the interface for `serve()`, declared with the file's schemas. `versions`: those
 * to serve (default: every version of the file). Rejects with an InterfaceFileError.
 */
export function interfaceFromFile(
  file: string | URL,
  options: { handlers: Record<string, any>; versions?: number | number[] },
): Promise<InterfaceDecl>;

/** `interfaceFromFile` for a document already parsed; throws an InterfaceFileError. */
export function interfaceFromDocument(
  doc: unknown,
  options: { handlers: Record<string, any>; versions?: number | number[]; source?: string },
): InterfaceDecl;

/** Strict base64 (SPEC.md §5.3): a Buffer, or null when `s` is not padded standard base64. */
export function decodeBase64(s: string): Buffer | null;

/**
 * A `ReadableStream` of `source` (bytes as one chunk, or an iterable / async iterable of
 * chunks), to return as a stream: `return { data: streamFrom(buffer) }`.
 */
export function streamFrom(source: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): ReadableStream<Uint8Array>;

/**
 * What a handler may put in a result (or in the params of a request to the host) to send a
 * stream: a `ReadableStream` or an async iterable of bytes becomes `{"$stream", "mode": "read"}`
 * (the plugin produces it, within the host's credit, in chunks of at most 1 MiB); a
 * `WritableStream` becomes `{"$stream", "mode": "write"}` (the host produces into it).
 */
export type StreamSource = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array | string> | WritableStream<Uint8Array>;

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** Sends `$/log` notifications at or above the session's log level (stderr outside a session). */
export class Logger {
  constructor(target?: string);
  readonly target: string | undefined;
  child(target: string): Logger;
  enabled(level: LogLevel): boolean;
  trace(message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}
/** The plugin's logger (no target). */
export const log: Logger;

/** A handle the host passed in params (SPEC.md §6). */
export class RemoteHandle {
  private constructor();
  readonly id: string;
  readonly interface: string;
  /**
   * Sends `tether/invoke` and resolves with the method's result, or rejects with a RemoteError.
   * Tied to the request that brought the handle: cancelling that request cancels the call
   * (SPEC.md §7.2), unless `signal` is given.
   */
  call<R = any>(method: string, params?: object, options?: { signal?: AbortSignal; onProgress?: (p: Progress) => void }): Promise<R>;
  /** `tether/retain`: keep the handle after the request that carried it is answered. */
  retain(): Promise<{}>;
  /** `$/release` for a retained handle. */
  release(): void;
  toJSON(): { $handle: string; interface: string };
}

/** An object of this plugin, passed to the host in a request's params (see `Session.handle`). */
export class LocalHandle {
  private constructor();
  readonly id: string;
  readonly interface: string;
  /** Whether the host may still invoke it. */
  readonly live: boolean;
  toJSON(): { $handle: string; interface: string };
}

/** The second argument of every handler. */
export interface RequestContext {
  /** The request's id as the host sent it (a bigint for integers beyond 2^53). */
  readonly id: string | number | bigint;
  /** The full method name, e.g. `kv.put`. */
  readonly method: string;
  /** The negotiated version of the method's interface. */
  readonly version: number | undefined;
  /** Aborted when the host cancels this request or the session ends. */
  readonly signal: AbortSignal;
  readonly cancelled: boolean;
  /** A logger whose target is the interface name. */
  readonly log: Logger;
  /**
   * A request to the host, cancelled along with this request. `onProgress` asks the host for
   * progress (SPEC.md §14) and is called with each `$/progress` for it.
   */
  request<R = any>(method: string, params?: object, options?: { onProgress?: (p: Progress) => void }): Promise<R>;
  /** Whether the host asked for progress on this request (`_meta.progressToken`, SPEC.md §14). */
  readonly wantsProgress: boolean;
  /**
   * Reports progress as `$/progress` (SPEC.md §14.2): nothing without a token, or once answered
   * or cancelled; `done` never goes back nor past `total`. Whether a notification was sent.
   */
  progress(done: number, total?: number, message?: string): boolean;
  /** The caller's `_meta.traceparent` and `tracestate` as sent (SPEC.md §15). */
  readonly traceparent: string | undefined;
  readonly tracestate: string | undefined;
  /** This request's span when its traceparent was valid: the caller's trace, a new span id,
   * the caller's span as parent. `ctx.log` and `ctx.request` carry them. */
  readonly traceId: string | undefined;
  readonly spanId: string | undefined;
  readonly parentSpanId: string | undefined;
}

/** The params of a `$/progress` notification (SPEC.md §14.2). */
export interface Progress {
  token: number | string;
  done?: number;
  total?: number;
  message?: string;
}

/**
 * A method handler: params in (bytes as Buffers, handles as RemoteHandles, streams as web
 * streams), result out. A readable stream in params that the handler did not read to its end
 * when it returns is aborted (-32006); when it fails or is cancelled, every unfinished stream of
 * its params is aborted with its error. Reads of a stream the host aborted fail with a
 * TetherError of code -32006 whose `data` is `{stream, cause}`.
 */
export type Handler = (params: any, ctx: RequestContext) => object | void | Promise<object | void>;

export interface MethodDecl {
  params: ObjectSchema;
  result: ObjectSchema;
}

export interface InterfaceDecl {
  /** Letters, digits and `_`, beginning with a letter. */
  name: string;
  /** For each version the plugin speaks, its methods by short name. */
  versions: Record<number, Record<string, MethodDecl>>;
  /** An object with one function (or method) per short method name. */
  handlers: Record<string, any>;
}

export interface ServeOptions {
  /** The plugin's name (initialize result, stderr messages). */
  name: string;
  version: string;
  interfaces: InterfaceDecl[];
  /** The magic cookie; default REFERENCE_COOKIE. */
  cookie?: { key: string; value: string };
  /** Named in the message printed when the cookie is missing. */
  hostName?: string;
  /**
   * Streams (used when the host announces the capability): `initialCredit` is the window the
   * plugin grants on each stream it reads, in bytes (default 1 MiB). It buffers at most that
   * much of a stream its handler does not read.
   */
  streams?: { initialCredit?: number };
}

export interface Session {
  /** The negotiated version of `iface`. */
  version(iface: string): number | undefined;
  /** A request to the host (after initialize). */
  request<R = any>(method: string, params?: object, options?: { signal?: AbortSignal; onProgress?: (p: Progress) => void }): Promise<R>;
  /** A notification to the host (after initialize). */
  notify(method: string, params?: object): void;
  /** Wraps `target` as a handle of `iface` to pass in the params of a request to the host. */
  handle(target: object, iface: string): LocalHandle;
}

/**
 * Checks the magic cookie (exit 1 with a message on stderr when it is wrong, without reading
 * stdin), then serves the session on stdin/stdout; exits 0 when stdin ends.
 */
export function serve(options: ServeOptions): Session;

/**
 * The incremental frame reader (SPEC.md §2.3-§2.6, §2.8), exported for tests and tools.
 * `onFrame` gets the frame's bytes after the header block and, for a frame with a
 * `Tether-Attachments` header once `attachments()` is true, the attachment lengths (the JSON is
 * the first `body.length - sum` bytes); `onUnreadable` reports a frame skipped whole for a
 * malformed attachment header (a parse error).
 */
export class FrameReader {
  constructor(sink: {
    onFrame(body: Buffer, attachments: number[] | null): void;
    onOversized(size: number, prefix: Buffer): void;
    onGarbage(bytes: Buffer, reason: string): void;
    maxFrameSize(): number;
    attachments?(): boolean;
    onUnreadable?(reason: string): void;
  });
  push(chunk: Buffer): void;
  /** At end of input: a description of a frame cut short, or null. */
  end(): string | null;
}
