// Reformatted (sagittal / coronal / any axis-aligned) planes of the compact mask and probability payloads,
// computed from the payload's own grid (DICOM patient mm), so overlays line up with any Cornerstone view.
// Pure functions: tested with node in tests/browser/test_payload_decoder.py.

const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

export function gridAxes(grid) {
  const rc = grid.row_cosine;
  const cc = grid.column_cosine;
  return { origin: grid.origin, rc, cc, n: cross(rc, cc), rowSpacing: grid.pixel_spacing[0],
    colSpacing: grid.pixel_spacing[1], sliceSpacing: grid.slice_spacing, shape: grid.shape };
}

// Which array axis the view looks along, the index of the displayed plane, and a function giving the world
// position of bitmap coordinate (x, y) (pixel corners: (0, 0) is the outer corner of the first voxel).
// Returns null when the view is oblique to the grid or the focal point lies outside it.
export function reformatPlane(grid, focalPoint, viewPlaneNormal) {
  const g = gridAxes(grid);
  const [slices, rows, cols] = g.shape;
  const d = [0, 1, 2].map((k) => focalPoint[k] - g.origin[k]);
  const along = [Math.abs(dot(viewPlaneNormal, g.n)), Math.abs(dot(viewPlaneNormal, g.cc)), Math.abs(dot(viewPlaneNormal, g.rc))];
  const axis = along.indexOf(Math.max(...along));
  if (along[axis] < 0.99) return null;
  const at = (base, u, su, du, v, sv, dv) => [0, 1, 2].map((k) => base[k] + (u - 0.5) * su * du[k] + (v - 0.5) * sv * dv[k]);
  if (axis === 0) {
    const index = Math.round(dot(d, g.n) / g.sliceSpacing);
    if (index < 0 || index >= slices) return null;
    const base = g.origin.map((o, k) => o + index * g.sliceSpacing * g.n[k]);
    return { axis: "slice", index, width: cols, height: rows,
      world: (x, y) => at(base, x, g.colSpacing, g.rc, y, g.rowSpacing, g.cc) };
  }
  if (axis === 1) { // coronal for an axial scan: fixed row, bitmap x = column, y = slice
    const index = Math.round(dot(d, g.cc) / g.rowSpacing);
    if (index < 0 || index >= rows) return null;
    const base = g.origin.map((o, k) => o + index * g.rowSpacing * g.cc[k]);
    return { axis: "row", index, width: cols, height: slices,
      world: (x, y) => at(base, x, g.colSpacing, g.rc, y, g.sliceSpacing, g.n) };
  }
  const index = Math.round(dot(d, g.rc) / g.colSpacing); // sagittal: fixed column, x = row, y = slice
  if (index < 0 || index >= cols) return null;
  const base = g.origin.map((o, k) => o + index * g.colSpacing * g.rc[k]);
  return { axis: "column", index, width: rows, height: slices,
    world: (x, y) => at(base, x, g.rowSpacing, g.cc, y, g.sliceSpacing, g.n) };
}

// The plane of a decoded mask as 0/1 bytes [height * width] (null when nothing of the mask is in it).
export function maskPlane(decoded, plane) {
  const [, rows, cols] = decoded.shape;
  const out = new Uint8Array(plane.width * plane.height);
  let any = false;
  for (const [k, runs] of decoded.slices) {
    if (plane.axis === "slice" && k !== plane.index) continue;
    for (let j = 0; j + 1 < runs.length; j += 2) {
      const start = runs[j];
      const end = start + runs[j + 1];
      if (plane.axis === "slice") {
        out.fill(1, start, end);
        any = true;
      } else if (plane.axis === "row") {
        const lo = Math.max(start, plane.index * cols);
        const hi = Math.min(end, (plane.index + 1) * cols);
        if (lo < hi) {
          out.fill(1, k * cols + (lo - plane.index * cols), k * cols + (hi - plane.index * cols));
          any = true;
        }
      } else {
        for (let r = Math.floor(start / cols); r * cols < end && r < rows; r++) {
          const idx = r * cols + plane.index;
          if (idx >= start && idx < end) {
            out[k * rows + r] = 1;
            any = true;
          }
        }
      }
    }
  }
  return any ? out : null;
}

// The plane of a decoded probability map as levels 0..255 (null when empty).
export function probabilityPlane(decoded, plane) {
  const [, rows, cols] = decoded.shape;
  const out = new Uint8Array(plane.width * plane.height);
  const factor = 255 / decoded.scale;
  let any = false;
  for (const [k, entry] of decoded.slices) {
    const [r0, c0, h, w] = entry.box;
    if (plane.axis === "slice") {
      if (k !== plane.index) continue;
      for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) out[(r0 + r) * cols + c0 + c] = Math.round(entry.levels[r * w + c] * factor);
      any = true;
    } else if (plane.axis === "row") {
      if (plane.index < r0 || plane.index >= r0 + h) continue;
      const r = plane.index - r0;
      for (let c = 0; c < w; c++) out[k * cols + c0 + c] = Math.round(entry.levels[r * w + c] * factor);
      any = true;
    } else {
      if (plane.index < c0 || plane.index >= c0 + w) continue;
      const c = plane.index - c0;
      for (let r = 0; r < h; r++) out[k * rows + r0 + r] = Math.round(entry.levels[r * w + c] * factor);
      any = true;
    }
  }
  return any ? out : null;
}
