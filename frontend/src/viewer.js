// The CT viewer: Cornerstone3D stack viewport fed by the portal's DICOMweb (wadors: image ids),
// progressive loading, window/level presets, zoom/pan/reset, axial/sagittal/coronal, cursor mm,
// and the structure overlay layers drawn from the portal's compact contour payloads.
import {
  init as coreInit,
  RenderingEngine,
  Enums,
  imageLoader,
  metaData,
  volumeLoader,
  setUseCPURendering,
  cornerstoneStreamingImageVolumeLoader,
} from "@cornerstonejs/core";
import { init as dicomImageLoaderInit, wadors } from "@cornerstonejs/dicom-image-loader";
import * as csTools from "@cornerstonejs/tools";
import { OverlayLayers } from "./overlays.js";

export const PRESETS = {
  soft_tissue: { label: "Soft tissue", width: 400, center: 40 },
  lung: { label: "Lung", width: 1500, center: -600 },
  bone: { label: "Bone", width: 2500, center: 480 },
  breast: { label: "Breast", width: 600, center: 50 },
};

let initialised = null;

function webglAvailable() {
  try {
    const canvas = document.createElement("canvas");
    return !!(canvas.getContext("webgl2") || canvas.getContext("webgl"));
  } catch {
    return false;
  }
}

async function initCornerstone() {
  if (!initialised) {
    initialised = (async () => {
      coreInit();
      // Headless or GPU-less browsers: Cornerstone's CPU rendering path draws the same images.
      if (!webglAvailable()) setUseCPURendering(true);
      dicomImageLoaderInit({ maxWebWorkers: Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) });
      volumeLoader.registerVolumeLoader("cornerstoneStreamingImageVolume", cornerstoneStreamingImageVolumeLoader);
      csTools.init();
      csTools.addTool(csTools.WindowLevelTool);
      csTools.addTool(csTools.PanTool);
      csTools.addTool(csTools.ZoomTool);
      csTools.addTool(csTools.StackScrollTool);
    })();
  }
  return initialised;
}

function tagValue(instance, tag) {
  const element = instance[tag];
  return element && element.Value ? element.Value : null;
}

// Image ids of a series from its DICOMweb metadata, sorted by position along the slice normal
// (ascending, the same order as the portal's Grid so overlay slice k is image k).
export async function seriesImageIds(dicomwebRoot, studyUid, seriesUid) {
  const base = `${dicomwebRoot.replace(/\/$/, "")}/studies/${studyUid}/series/${seriesUid}`;
  const response = await fetch(`${base}/metadata`, {
    credentials: "same-origin",
    headers: { Accept: "application/dicom+json" },
  });
  if (!response.ok) throw new Error(`series metadata: HTTP ${response.status}`);
  const instances = await response.json();
  if (!Array.isArray(instances) || instances.length === 0) throw new Error("series metadata: no instances");
  const origin = base.startsWith("http") ? "" : window.location.origin;
  const items = instances.map((instance) => {
    const sop = tagValue(instance, "00080018")[0];
    const ipp = (tagValue(instance, "00200032") || [0, 0, 0]).map(Number);
    const iop = (tagValue(instance, "00200037") || [1, 0, 0, 0, 1, 0]).map(Number);
    const normal = [
      iop[1] * iop[5] - iop[2] * iop[4],
      iop[2] * iop[3] - iop[0] * iop[5],
      iop[0] * iop[4] - iop[1] * iop[3],
    ];
    const imageId = `wadors:${origin}${base}/instances/${sop}/frames/1`;
    wadors.metaDataManager.add(imageId, instance);
    return { imageId, position: ipp[0] * normal[0] + ipp[1] * normal[1] + ipp[2] * normal[2] };
  });
  items.sort((a, b) => a.position - b.position);
  return items.map((item) => item.imageId);
}

let viewerCount = 0;
let sharedEngine = null;

// One rendering engine for every viewer on the page: each engine holds its own WebGL contexts and
// browsers cap them (a third viewer would make the first lose its context).
function renderingEngine() {
  if (!sharedEngine) sharedEngine = new RenderingEngine("contextrt-engine");
  return sharedEngine;
}

export class CtViewer {
  constructor(container, { dicomwebRoot, studyUid, seriesUid, layers = [], name = "viewer" }) {
    this.container = container;
    this.dicomwebRoot = dicomwebRoot;
    this.studyUid = studyUid;
    this.seriesUid = seriesUid;
    this.name = name;
    this.id = `${name}-${++viewerCount}`;
    this.orientation = "axial";
    this.stats = { started: performance.now(), firstImageMs: null, allLoadedMs: null, loaded: 0, total: 0 };
    this.listeners = [];
    this.buildDom();
    this.overlays = new OverlayLayers(this, layers);
  }

  buildDom() {
    this.container.classList.add("ct-viewer");
    this.container.innerHTML = `
      <div class="viewer-toolbar">
        <select class="preset" aria-label="Window preset">
          ${Object.entries(PRESETS).map(([k, p]) => `<option value="${k}">${p.label} ${p.width}/${p.center}</option>`).join("")}
        </select>
        <button type="button" class="reset">Reset</button>
        <span class="orientation-buttons">
          <button type="button" data-orientation="axial" class="active">Axial</button>
          <button type="button" data-orientation="sagittal">Sagittal</button>
          <button type="button" data-orientation="coronal">Coronal</button>
        </span>
      </div>
      <div class="viewport-wrap">
        <div class="viewport" tabindex="0"></div>
        <canvas class="overlay-canvas"></canvas>
      </div>
      <div class="viewer-status">
        <input type="range" class="slice-slider" min="0" max="0" value="0" aria-label="Slice">
        <span class="slice-label">slice –</span>
        <span class="wl-label"></span>
        <span class="cursor-label"></span>
        <span class="load-label"></span>
      </div>`;
    this.viewportElement = this.container.querySelector(".viewport");
    this.overlayCanvas = this.container.querySelector(".overlay-canvas");
    this.slider = this.container.querySelector(".slice-slider");
    this.sliceLabel = this.container.querySelector(".slice-label");
    this.wlLabel = this.container.querySelector(".wl-label");
    this.cursorLabel = this.container.querySelector(".cursor-label");
    this.loadLabel = this.container.querySelector(".load-label");
    // Cornerstone's own right-click zoom needs the context menu suppressed.
    this.viewportElement.addEventListener("contextmenu", (e) => e.preventDefault());
  }

  async start() {
    await initCornerstone();
    this.imageIds = await seriesImageIds(this.dicomwebRoot, this.studyUid, this.seriesUid);
    this.stats.total = this.imageIds.length;
    this.renderingEngine = renderingEngine();
    this.slider.max = String(this.imageIds.length - 1);
    await this.showAxial(Math.floor(this.imageIds.length / 2));
    this.bindInputs();
    this.prefetchAll();
    return this;
  }

  get viewport() {
    return this.renderingEngine ? this.renderingEngine.getViewport(`vp-${this.id}`) : null;
  }

  setupToolGroup() {
    const { ToolGroupManager, Enums: ToolEnums } = csTools;
    const groupId = `tools-${this.id}`;
    if (ToolGroupManager.getToolGroup(groupId)) ToolGroupManager.destroyToolGroup(groupId);
    const group = ToolGroupManager.createToolGroup(groupId);
    group.addTool(csTools.WindowLevelTool.toolName);
    group.addTool(csTools.PanTool.toolName);
    group.addTool(csTools.ZoomTool.toolName);
    group.addTool(csTools.StackScrollTool.toolName);
    const B = ToolEnums.MouseBindings;
    group.setToolActive(csTools.WindowLevelTool.toolName, { bindings: [{ mouseButton: B.Primary }] });
    group.setToolActive(csTools.PanTool.toolName, { bindings: [{ mouseButton: B.Auxiliary }, { mouseButton: B.Primary, modifierKey: ToolEnums.KeyboardBindings.Shift }] });
    group.setToolActive(csTools.ZoomTool.toolName, { bindings: [{ mouseButton: B.Secondary }] });
    group.setToolActive(csTools.StackScrollTool.toolName, { bindings: [{ mouseButton: B.Wheel }] });
    group.addViewport(`vp-${this.id}`, this.renderingEngine.id);
    this.toolGroup = group;
  }

  async showAxial(index) {
    this.orientation = "axial";
    this.renderingEngine.enableElement({
      viewportId: `vp-${this.id}`,
      type: Enums.ViewportType.STACK,
      element: this.viewportElement,
    });
    this.setupToolGroup();
    await this.viewport.setStack(this.imageIds, index);
    if (this.stats.firstImageMs === null) this.stats.firstImageMs = performance.now() - this.stats.started;
    this.applyPreset(this.currentPreset || "soft_tissue");
    this.viewport.render();
    this.updateLabels();
  }

  async showVolume(orientation) {
    // Sagittal/coronal reformat from a streamed volume of the same image ids.
    this.orientation = orientation;
    const volumeId = `cornerstoneStreamingImageVolume:${this.seriesUid}`;
    if (!this.volume) {
      this.volume = await volumeLoader.createAndCacheVolume(volumeId, { imageIds: this.imageIds });
      this.volume.load();
    }
    this.renderingEngine.enableElement({
      viewportId: `vp-${this.id}`,
      type: Enums.ViewportType.ORTHOGRAPHIC,
      element: this.viewportElement,
      defaultOptions: { orientation: Enums.OrientationAxis[orientation.toUpperCase()] },
    });
    this.setupToolGroup();
    await this.viewport.setVolumes([{ volumeId }]);
    this.applyPreset(this.currentPreset || "soft_tissue");
    this.viewport.render();
    this.updateLabels();
  }

  async setOrientation(orientation) {
    this.container.querySelectorAll("[data-orientation]").forEach((b) =>
      b.classList.toggle("active", b.dataset.orientation === orientation));
    if (orientation === "axial") await this.showAxial(this.sliceIndex());
    else await this.showVolume(orientation);
    this.overlays.draw();
  }

  sliceIndex() {
    const vp = this.viewport;
    if (this.orientation === "axial" && vp && vp.getCurrentImageIdIndex) return vp.getCurrentImageIdIndex();
    return Number(this.slider.value) || 0;
  }

  currentImageId() {
    return this.orientation === "axial" ? this.imageIds[this.sliceIndex()] : null;
  }

  async setSlice(index) {
    if (this.orientation !== "axial") return;
    const clamped = Math.max(0, Math.min(this.imageIds.length - 1, index));
    await this.viewport.setImageIdIndex(clamped);
  }

  applyPreset(key) {
    const preset = PRESETS[key];
    if (!preset) return;
    this.currentPreset = key;
    this.setWindow(preset.width, preset.center);
    this.container.querySelector(".preset").value = key;
  }

  setWindow(width, center) {
    const vp = this.viewport;
    vp.setProperties({ voiRange: { lower: center - width / 2, upper: center + width / 2 } });
    vp.render();
    this.updateLabels();
  }

  windowLevel() {
    const vp = this.viewport;
    const properties = vp && vp.getProperties ? vp.getProperties() : null;
    const range = properties ? properties.voiRange : null;
    if (!range) return null;
    return { width: Math.round(range.upper - range.lower), center: Math.round((range.upper + range.lower) / 2) };
  }

  reset() {
    const vp = this.viewport;
    vp.resetCamera();
    this.applyPreset(this.currentPreset || "soft_tissue");
    vp.render();
  }

  updateLabels() {
    if (!this.imageIds) return;
    if (this.orientation === "axial") {
      const index = this.sliceIndex();
      this.slider.disabled = false;
      this.slider.value = String(index);
      this.sliceLabel.textContent = `slice ${index + 1} / ${this.imageIds.length}`;
      this.container.dataset.slice = String(index);
    } else {
      this.slider.disabled = true;
      this.sliceLabel.textContent = `${this.orientation} reformat`;
    }
    const wl = this.windowLevel();
    if (wl) {
      this.wlLabel.textContent = `W ${wl.width} / L ${wl.center}`;
      this.container.dataset.window = `${wl.width}/${wl.center}`;
    }
  }

  updateLoadLabel() {
    const { loaded, total } = this.stats;
    this.loadLabel.textContent = loaded >= total ? `${total} images loaded` : `loading ${loaded}/${total}`;
    this.container.dataset.loaded = String(loaded);
  }

  // Stream the rest of the series into the cache after the first image is on screen.
  async prefetchAll() {
    const order = [...this.imageIds.keys()];
    const mid = this.sliceIndex();
    order.sort((a, b) => Math.abs(a - mid) - Math.abs(b - mid));
    let next = 0;
    const worker = async () => {
      while (next < order.length) {
        const imageId = this.imageIds[order[next++]];
        try {
          await imageLoader.loadAndCacheImage(imageId);
        } catch (error) {
          console.warn("prefetch failed", imageId, error);
        }
        this.stats.loaded += 1;
        if (this.stats.loaded % 5 === 0 || this.stats.loaded === this.stats.total) this.updateLoadLabel();
      }
    };
    await Promise.all([worker(), worker(), worker(), worker(), worker(), worker()]);
    this.stats.allLoadedMs = performance.now() - this.stats.started;
    this.updateLoadLabel();
    this.container.dataset.allLoaded = "true";
  }

  bindInputs() {
    const el = this.viewportElement;
    const redraw = () => {
      this.updateLabels();
      this.overlays.draw();
      this.listeners.forEach((fn) => fn(this));
    };
    el.addEventListener(Enums.Events.IMAGE_RENDERED, redraw);
    this.container.querySelector(".preset").addEventListener("change", (e) => this.applyPreset(e.target.value));
    this.container.querySelector(".reset").addEventListener("click", () => this.reset());
    this.container.querySelectorAll("[data-orientation]").forEach((b) =>
      b.addEventListener("click", () => this.setOrientation(b.dataset.orientation)));
    this.slider.addEventListener("input", () => this.setSlice(Number(this.slider.value)));
    el.addEventListener("keydown", (e) => {
      const steps = { ArrowUp: 1, ArrowRight: 1, PageUp: 10, ArrowDown: -1, ArrowLeft: -1, PageDown: -10 };
      if (e.key in steps) {
        e.preventDefault();
        this.setSlice(this.sliceIndex() + steps[e.key]);
      } else if (e.key === "Home") this.setSlice(0);
      else if (e.key === "End") this.setSlice(this.imageIds.length - 1);
    });
    el.addEventListener("mousedown", () => el.focus());
    el.addEventListener("mousemove", (e) => {
      const rect = el.getBoundingClientRect();
      const world = this.viewport.canvasToWorld([e.clientX - rect.left, e.clientY - rect.top]);
      this.cursorLabel.textContent = `x ${world[0].toFixed(1)} y ${world[1].toFixed(1)} z ${world[2].toFixed(1)} mm`;
    });
    window.addEventListener("resize", () => {
      this.renderingEngine.resize(true, true);
      this.overlays.draw();
    });
  }

  onRender(fn) {
    this.listeners.push(fn);
  }

  // Canvas (CSS px) position of the corner of pixel (col, row) on the displayed axial image.
  imagePlane() {
    const imageId = this.currentImageId();
    return imageId ? metaData.get("imagePlaneModule", imageId) : null;
  }
}
