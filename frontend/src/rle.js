// Decoder of the portal's compact contour payloads ("contextrt-contour" v1, dicom_rt/payload.py, docs/api.md):
// masks as per-slice (gap, length) runs, row-major in each axial slice, as JSON lists or as one
// unsigned-LEB128 varint stream deflated (zlib) and base64-encoded; probability maps as uint8 levels
// per slice bounding box, row-difference filtered ("Sub") and deflated.

function base64Bytes(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

async function inflate(bytes) {
  // zlib-wrapped deflate (RFC 1950) is what the browser calls "deflate".
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

export function readVarints(bytes) {
  const values = [];
  let current = 0;
  let factor = 1;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    current += (byte & 0x7f) * factor; // multiplication, not <<, so values above 2^31 stay exact
    if (byte & 0x80) factor *= 128;
    else {
      values.push(current);
      current = 0;
      factor = 1;
    }
  }
  if (factor !== 1) throw new Error("contour payload: truncated varint stream");
  return values;
}

function checkHeader(payload, kind) {
  if (!payload || payload.format !== "contextrt-contour" || payload.version !== 1) {
    throw new Error("contour payload: expected format contextrt-contour version 1");
  }
  if (payload.kind !== kind) throw new Error(`contour payload: expected kind ${kind}, got ${payload.kind}`);
  return payload.grid.shape;
}

// -> {kind: "mask", shape, slices: Map(k -> Int32Array of absolute [start, length, ...])}
export async function decodeMaskPayload(payload) {
  const shape = checkHeader(payload, "mask");
  let perSlice;
  if (payload.encoding === "json") perSlice = payload.runs;
  else if (payload.encoding === "varint-deflate-base64") {
    const stream = readVarints(await inflate(base64Bytes(payload.runs)));
    perSlice = [];
    let pos = 0;
    for (const n of payload.runs_per_slice) {
      perSlice.push(stream.slice(pos, pos + 2 * n));
      pos += 2 * n;
    }
    if (pos !== stream.length) throw new Error("contour payload: runs_per_slice does not match the run stream");
  } else throw new Error(`contour payload: unknown encoding ${payload.encoding}`);
  const slices = new Map();
  payload.slices.forEach((k, i) => {
    const pairs = perSlice[i];
    const runs = new Int32Array(pairs.length);
    let pos = 0;
    for (let j = 0; j + 1 < pairs.length; j += 2) {
      pos += pairs[j];
      runs[j] = pos;
      runs[j + 1] = pairs[j + 1];
      pos += pairs[j + 1];
    }
    slices.set(k, runs);
  });
  return { kind: "mask", shape, slices };
}

// -> {kind: "probability", shape, scale, slices: Map(k -> {box: [r0, c0, h, w], levels: Uint8Array})}
export async function decodeProbabilityPayload(payload) {
  const shape = checkHeader(payload, "probability");
  if (payload.encoding !== "u8sub-deflate-base64") throw new Error(`probability payload: unknown encoding ${payload.encoding}`);
  const raw = await inflate(base64Bytes(payload.data));
  const slices = new Map();
  let pos = 0;
  payload.slices.forEach((k, i) => {
    const [r0, c0, h, w] = payload.boxes[i];
    const levels = new Uint8Array(h * w);
    for (let r = 0; r < h; r++) {
      let acc = 0;
      for (let c = 0; c < w; c++) {
        acc = (acc + raw[pos + r * w + c]) & 255;
        levels[r * w + c] = acc;
      }
    }
    pos += h * w;
    slices.set(k, { box: [r0, c0, h, w], levels });
  });
  if (pos !== raw.length) throw new Error("probability payload: decoded length does not match the boxes");
  return { kind: "probability", shape, scale: payload.scale, slices };
}

export async function decodePayload(payload) {
  return payload.kind === "probability" ? decodeProbabilityPayload(payload) : decodeMaskPayload(payload);
}

// One axial slice of a decoded mask as 0/1 bytes (null when the slice is empty).
export function maskSlice(decoded, k) {
  const runs = decoded.slices.get(k);
  if (!runs) return null;
  const [, rows, cols] = decoded.shape;
  const out = new Uint8Array(rows * cols);
  for (let j = 0; j + 1 < runs.length; j += 2) out.fill(1, runs[j], runs[j] + runs[j + 1]);
  return out;
}

// One axial slice of a decoded probability map as levels 0..255 (null when empty).
export function probabilitySlice(decoded, k) {
  const entry = decoded.slices.get(k);
  if (!entry) return null;
  const [, rows, cols] = decoded.shape;
  const [r0, c0, h, w] = entry.box;
  const out = new Uint8Array(rows * cols);
  const factor = 255 / decoded.scale;
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) out[(r0 + r) * cols + c0 + c] = Math.round(entry.levels[r * w + c] * factor);
  }
  return out;
}

// Voxel-wise difference of two decoded slices: 1 = only in a, 2 = only in b.
export function differenceSlice(a, b, length) {
  if (!a && !b) return null;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const x = a ? a[i] : 0;
    const y = b ? b[i] : 0;
    if (x && !y) out[i] = 1;
    else if (y && !x) out[i] = 2;
  }
  return out;
}
