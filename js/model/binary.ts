// Decoding of binary trait values. anywidget hands `bytes` over as DataViews,
// possibly at an unaligned offset into a larger buffer; other hosts may pass
// ArrayBuffers, typed arrays or plain number arrays. All binary data is little-endian.

type TypedArray = Float32Array | Uint16Array | Uint32Array;

interface TypedCtor<T extends TypedArray> {
  readonly BYTES_PER_ELEMENT: number;
  new (length: number): T;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): T;
  from(values: ArrayLike<number>): T;
}

function isArrayBuffer(v: unknown): v is ArrayBufferLike {
  return (
    v instanceof ArrayBuffer ||
    // SharedArrayBuffer, or a buffer from another realm (iframe, worker).
    Object.prototype.toString.call(v) === "[object ArrayBuffer]" ||
    Object.prototype.toString.call(v) === "[object SharedArrayBuffer]"
  );
}

/** Reinterprets bytes as `ctor` elements, copying when the offset is not aligned. */
function fromBytes<T extends TypedArray>(ctor: TypedCtor<T>, buffer: ArrayBufferLike, byteOffset: number, byteLength: number): T {
  const size = ctor.BYTES_PER_ELEMENT;
  const count = Math.floor(byteLength / size);
  if (byteOffset % size === 0) return new ctor(buffer, byteOffset, count);
  const copy = new Uint8Array(count * size);
  copy.set(new Uint8Array(buffer, byteOffset, count * size));
  return new ctor(copy.buffer, 0, count);
}

/**
 * A typed array of `ctor` from a DataView, byte array, ArrayBuffer, typed array or number
 * array; `null` for anything else. Byte containers are reinterpreted (little-endian), other
 * typed arrays and number arrays are converted value by value (non-numbers become NaN).
 */
export function toTyped<T extends TypedArray>(ctor: TypedCtor<T>, data: unknown): T | null {
  if (data == null) return null;
  if (data instanceof ctor) return data;
  if (data instanceof DataView || data instanceof Uint8Array || data instanceof Uint8ClampedArray) {
    return fromBytes(ctor, data.buffer, data.byteOffset, data.byteLength);
  }
  if (ArrayBuffer.isView(data)) return ctor.from(data as unknown as ArrayLike<number>);
  if (isArrayBuffer(data)) return fromBytes(ctor, data, 0, data.byteLength);
  if (Array.isArray(data)) {
    return ctor.from(data.map((v) => (typeof v === "number" ? v : Number.NaN)));
  }
  return null;
}

/** Float32 values (see `toTyped`). */
export const toFloat32 = (data: unknown): Float32Array | null => toTyped(Float32Array, data);
/** Uint16 values (see `toTyped`). */
export const toUint16 = (data: unknown): Uint16Array | null => toTyped(Uint16Array, data);
/** Uint32 values (see `toTyped`). */
export const toUint32 = (data: unknown): Uint32Array | null => toTyped(Uint32Array, data);
