// Decoder of the portal's compact contour payload ("rle-rowmajor-v1", portal/jobs/contour.py):
// {shape:[slices, rows, cols], grid:{...}, slices:{"k": [start, length, ...]}} over the row-major slice.

export function decodeSlice(payload, sliceIndex) {
  const [, rows, cols] = payload.shape;
  const runs = payload.slices ? payload.slices[String(sliceIndex)] : null;
  if (!runs || runs.length === 0) return null;
  const out = new Uint8Array(rows * cols);
  for (let i = 0; i + 1 < runs.length; i += 2) {
    out.fill(1, runs[i], runs[i] + runs[i + 1]);
  }
  return out;
}

export function sliceIndices(payload) {
  return Object.keys(payload.slices || {}).map(Number).sort((a, b) => a - b);
}

// Probability maps arrive as bands: [{level: 0.25, payload}, ...]; the highest band a voxel is in wins.
export function decodeBands(bands, sliceIndex) {
  let out = null;
  bands.forEach((band, bandIndex) => {
    const mask = decodeSlice(band.payload, sliceIndex);
    if (!mask) return;
    if (!out) out = new Uint8Array(mask.length);
    for (let i = 0; i < mask.length; i++) if (mask[i]) out[i] = bandIndex + 1;
  });
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
