// Structure overlay layers (ground truth, OARs, model contours, probability wash, difference)
// painted on a canvas above the Cornerstone viewport, registered to the displayed axial image or, in the
// sagittal / coronal reformats, to the camera's plane through the payload's own grid; with a legend that
// sets each layer's visibility, colour and opacity (the same in every view).
import { decodePayload, maskSlice, probabilitySlice, differenceSlice } from "./rle.js";
import { maskPlane, probabilityPlane, reformatPlane } from "./planes.js";

function hexToRgb(hex) {
  const v = parseInt(hex.replace("#", ""), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

// Probability wash: blue (low) -> cyan -> yellow -> red (high); below 5 % nothing is painted.
function wash(level) {
  const t = level / 255;
  if (t < 0.33) return [0, Math.round(765 * t), 255];
  if (t < 0.66) return [Math.round(765 * (t - 0.33)), 255, Math.round(255 - 765 * (t - 0.33))];
  return [255, Math.round(255 - 765 * (t - 0.66)), 0];
}

export class OverlayLayers {
  constructor(viewer, layers) {
    this.viewer = viewer;
    this.layers = [];
    this.legend = document.createElement("div");
    this.legend.className = "legend";
    viewer.container.appendChild(this.legend);
    layers.forEach((layer) => this.add(layer, false));
    this.renderLegend();
  }

  add(layer, redraw = true) {
    const existing = this.layers.findIndex((l) => l.key === layer.key);
    const merged = { visible: true, opacity: 0.5, color: "#ff0000", kind: "mask", ...layer };
    if (existing >= 0) this.layers[existing] = merged;
    else this.layers.push(merged);
    if (merged.payload && !merged.decoded) {
      merged.ready = decodePayload(merged.payload).then((decoded) => {
        merged.decoded = decoded;
      }).catch((error) => {
        merged.error = error.message;
        console.error(`layer ${merged.name}:`, error);
        this.renderLegend();
      }).then(() => this.draw());
    }
    if (redraw) {
      this.renderLegend();
      this.draw();
    }
  }

  get(key) {
    return this.layers.find((l) => l.key === key);
  }

  set(key, changes) {
    const layer = this.get(key);
    if (!layer) return;
    Object.assign(layer, changes);
    this.renderLegend();
    this.draw();
  }

  renderLegend() {
    this.legend.innerHTML = "";
    if (this.layers.length === 0) {
      this.legend.innerHTML = '<p class="muted">No structures for this case yet.</p>';
      return;
    }
    this.layers.forEach((layer) => {
      const row = document.createElement("div");
      row.className = "legend-row";
      row.dataset.layer = layer.key;
      const swatch = layer.kind === "probability" ? '<span class="wash"></span>'
        : `<input type="color" class="layer-color" value="${layer.color}" aria-label="Colour of ${layer.name}">`;
      row.innerHTML = `
        <label><input type="checkbox" class="layer-visible" ${layer.visible ? "checked" : ""}> ${layer.name}</label>
        ${layer.error ? `<small class="field-error">${layer.error}</small>` : ""}
        ${swatch}
        <input type="range" class="layer-opacity" min="0" max="1" step="0.05" value="${layer.opacity}"
               aria-label="Opacity of ${layer.name}">`;
      row.querySelector(".layer-visible").addEventListener("change", (e) => this.set(layer.key, { visible: e.target.checked }));
      const colour = row.querySelector(".layer-color");
      if (colour) colour.addEventListener("input", (e) => this.set(layer.key, { color: e.target.value }));
      row.querySelector(".layer-opacity").addEventListener("input", (e) => {
        layer.opacity = Number(e.target.value);
        this.draw();
      });
      this.legend.appendChild(row);
    });
  }

  sliceMask(layer, index) {
    if (layer.kind === "diff") {
      const [a, b] = layer.pair.map((key) => this.get(key));
      if (!a || !b || !a.decoded || !b.decoded) return null;
      const [, rows, cols] = a.decoded.shape;
      return differenceSlice(maskSlice(a.decoded, index), maskSlice(b.decoded, index), rows * cols);
    }
    if (!layer.decoded) return null;
    return layer.kind === "probability" ? probabilitySlice(layer.decoded, index) : maskSlice(layer.decoded, index);
  }

  layerShape(layer) {
    if (layer.kind === "diff") {
      const a = this.get(layer.pair[0]);
      return a && a.decoded ? a.decoded.shape : null;
    }
    return layer.decoded ? layer.decoded.shape : null;
  }

  paint(layer, mask, rows, cols) {
    const image = new ImageData(cols, rows);
    const data = image.data;
    const alpha = Math.round(255 * layer.opacity);
    const rgb = hexToRgb(layer.color);
    const second = layer.kind === "diff" ? hexToRgb(layer.secondColor || "#00a0ff") : null;
    // Outline for masks (interior washed faintly), bands for probability, two colours for differences.
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        const v = mask[i];
        if (!v) continue;
        let colour = rgb;
        let a = alpha;
        if (layer.kind === "probability") {
          if (v < 13) continue;
          colour = wash(v);
          a = Math.round(alpha * Math.min(1, v / 128));
        } else if (layer.kind === "diff") {
          colour = v === 1 ? rgb : second;
        } else {
          const edge = r === 0 || c === 0 || r === rows - 1 || c === cols - 1 ||
            !mask[i - 1] || !mask[i + 1] || !mask[i - cols] || !mask[i + cols];
          a = edge ? Math.round(255 * Math.min(1, layer.opacity * 2)) : Math.round(alpha * 0.4);
        }
        const o = i * 4;
        data[o] = colour[0];
        data[o + 1] = colour[1];
        data[o + 2] = colour[2];
        data[o + 3] = a;
      }
    }
    return image;
  }

  draw() {
    const viewer = this.viewer;
    const canvas = viewer.overlayCanvas;
    const rect = viewer.viewportElement.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(rect.width * ratio) || canvas.height !== Math.round(rect.height * ratio)) {
      canvas.width = Math.round(rect.width * ratio);
      canvas.height = Math.round(rect.height * ratio);
      canvas.style.width = `${rect.width}px`;
      canvas.style.height = `${rect.height}px`;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!viewer.viewport) return;
    if (viewer.orientation !== "axial") {
      this.drawReformat(ctx, ratio);
      return;
    }
    const plane = viewer.imagePlane();
    if (!plane || !plane.imagePositionPatient) return;
    const index = viewer.sliceIndex();
    const ipp = plane.imagePositionPatient;
    const rowCos = plane.rowCosines;
    const colCos = plane.columnCosines;
    const colSpacing = plane.columnPixelSpacing || plane.pixelSpacing?.[1] || 1;
    const rowSpacing = plane.rowPixelSpacing || plane.pixelSpacing?.[0] || 1;
    // World position of the outer corner of pixel (col, row): IPP is the centre of pixel (0, 0).
    const world = (col, row) => [0, 1, 2].map((k) =>
      ipp[k] + (col - 0.5) * colSpacing * rowCos[k] + (row - 0.5) * rowSpacing * colCos[k]);
    const toCanvas = (col, row) => viewer.viewport.worldToCanvas(world(col, row));
    const p0 = toCanvas(0, 0);
    const px = toCanvas(1, 0);
    const py = toCanvas(0, 1);
    ctx.imageSmoothingEnabled = false;
    for (const layer of this.layers) {
      if (!layer.visible) continue;
      const shape = this.layerShape(layer);
      if (!shape) continue;
      const [, rows, cols] = shape;
      const mask = this.sliceMask(layer, index);
      if (!mask) continue;
      this.drawMaskAt(ctx, ratio, layer, mask, rows, cols, p0, px, py);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  layerGrid(layer) {
    const source = layer.kind === "diff" ? this.get(layer.pair[0]) : layer;
    return source && source.payload && source.payload.grid ? source.payload.grid : null;
  }

  planeMask(layer, plane) {
    if (layer.kind === "diff") {
      const [a, b] = layer.pair.map((key) => this.get(key));
      if (!a || !b || !a.decoded || !b.decoded) return null;
      return differenceSlice(maskPlane(a.decoded, plane), maskPlane(b.decoded, plane), plane.width * plane.height);
    }
    if (!layer.decoded) return null;
    return layer.kind === "probability" ? probabilityPlane(layer.decoded, plane) : maskPlane(layer.decoded, plane);
  }

  // Sagittal / coronal: the plane through the camera's focal point, mapped corner by corner to the canvas.
  drawReformat(ctx, ratio) {
    const viewport = this.viewer.viewport;
    if (!viewport.getCamera) return;
    const { focalPoint, viewPlaneNormal } = viewport.getCamera();
    if (!focalPoint || !viewPlaneNormal) return;
    ctx.imageSmoothingEnabled = false;
    for (const layer of this.layers) {
      if (!layer.visible) continue;
      const grid = this.layerGrid(layer);
      const plane = grid && reformatPlane(grid, focalPoint, viewPlaneNormal);
      if (!plane) continue;
      const mask = this.planeMask(layer, plane);
      if (!mask) continue;
      const p0 = viewport.worldToCanvas(plane.world(0, 0));
      const px = viewport.worldToCanvas(plane.world(1, 0));
      const py = viewport.worldToCanvas(plane.world(0, 1));
      this.drawMaskAt(ctx, ratio, layer, mask, plane.height, plane.width, p0, px, py);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  // Paint a rows × cols mask and place it with an affine map: pixel (0,0) at canvas point p0, one column
  // step to px, one row step to py (canvas CSS pixels; ratio = device pixels per CSS pixel).
  drawMaskAt(ctx, ratio, layer, mask, rows, cols, p0, px, py) {
    const bitmap = document.createElement("canvas");
    bitmap.width = cols;
    bitmap.height = rows;
    bitmap.getContext("2d").putImageData(this.paint(layer, mask, rows, cols), 0, 0);
    ctx.setTransform(
      (px[0] - p0[0]) * ratio, (px[1] - p0[1]) * ratio,
      (py[0] - p0[0]) * ratio, (py[1] - p0[1]) * ratio,
      p0[0] * ratio, p0[1] * ratio);
    ctx.drawImage(bitmap, 0, 0);
  }
}
