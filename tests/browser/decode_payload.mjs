// Decodes a contour payload (JSON on stdin) with the viewer's own decoder and prints the set voxels
// per slice, so a Python test can compare it with dicom_rt.payload's decoder.
import { decodePayload, maskSlice, probabilitySlice } from "../../frontend/src/rle.js";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const payload = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const decoded = await decodePayload(payload);
const out = {};
for (const k of decoded.slices.keys()) {
  const plane = payload.kind === "probability" ? probabilitySlice(decoded, k) : maskSlice(decoded, k);
  const nonzero = [];
  plane.forEach((v, i) => { if (v) nonzero.push([i, v]); });
  out[k] = nonzero;
}
process.stdout.write(JSON.stringify(out));
