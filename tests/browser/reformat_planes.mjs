// Cuts the sagittal / coronal / axial plane through a world point out of a payload (JSON on stdin:
// {payload, focal, normal}) with the viewer's own planes.js; prints the plane and its corner positions.
import { decodePayload } from "../../frontend/src/rle.js";
import { maskPlane, probabilityPlane, reformatPlane } from "../../frontend/src/planes.js";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { payload, focal, normal } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const decoded = await decodePayload(payload);
const plane = reformatPlane(payload.grid, focal, normal);
if (!plane) {
  process.stdout.write("null");
} else {
  const values = payload.kind === "probability" ? probabilityPlane(decoded, plane) : maskPlane(decoded, plane);
  process.stdout.write(JSON.stringify({ axis: plane.axis, index: plane.index, width: plane.width, height: plane.height,
    values: values ? Array.from(values) : null, corner: plane.world(0.5, 0.5), step_x: plane.world(1.5, 0.5) }));
}
