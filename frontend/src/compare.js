// Trainee comparison: vision-only and multimodal contours on two synchronised viewports with a
// difference overlay and Dice/HD95 against ground truth; the what-if panel re-contours with one
// field changed or omitted and shows the new multimodal contour next to the original.
import { CtViewer } from "./viewer.js";
import { layersFromConfig, modelLayer } from "./layers.js";
import { submitJob, followJob, fetchJob, progressBar, jobId } from "./jobs.js";
import { ApiError } from "./api.js";
import { fieldErrors } from "./editor.js";

function pickResult(config, model) {
  return (config.results || []).filter((r) => r.model === model).slice(-1)[0] || null;
}

function metricsTable(config) {
  const rows = (config.results || []).map((r) => {
    const m = r.metrics || {};
    const dice = m.dice ?? m.Dice;
    const hd95 = m.hd95 ?? m.HD95 ?? m.hd95_mm;
    return `<tr data-job="${r.job}"><td>${r.name}</td><td>${dice != null ? Number(dice).toFixed(3) : "—"}</td>
      <td>${hd95 != null ? Number(hd95).toFixed(1) + " mm" : "—"}</td></tr>`;
  });
  return `<table class="metrics"><thead><tr><th>Model</th><th>Dice</th><th>HD95</th></tr></thead>
    <tbody>${rows.join("") || '<tr><td colspan="3">No model results yet for this case.</td></tr>'}</tbody></table>
    ${config.structures.some((s) => s.ground_truth) ? "" : '<p class="muted">No ground truth for this case: metrics not available.</p>'}`;
}

// Keep the second viewer on the same slice, zoom and pan as the first.
function synchronise(a, b) {
  let busy = false;
  const follow = (source, target) => source.onRender(async () => {
    if (busy || source.orientation !== "axial" || target.orientation !== "axial") return;
    busy = true;
    try {
      const index = source.sliceIndex();
      if (target.sliceIndex() !== index) await target.setSlice(index);
      const camera = source.viewport.getCamera();
      target.viewport.setCamera({ parallelScale: camera.parallelScale, focalPoint: camera.focalPoint, position: camera.position });
      target.viewport.render();
    } finally {
      busy = false;
    }
  });
  follow(a, b);
  follow(b, a);
}

export async function startComparison(root, config) {
  const all = layersFromConfig(config);
  const groundTruth = all.filter((l) => l.key.startsWith("roi-") &&
    config.structures.find((s) => `roi-${s.id}` === l.key)?.ground_truth);
  const common = { dicomwebRoot: config.dicomweb_root, studyUid: config.case.study_uid, seriesUid: config.case.series_uid };
  const left = await new CtViewer(root.querySelector(".viewer-left"), { ...common, layers: groundTruth.map((l) => ({ ...l })), name: "vision" }).start();
  const right = await new CtViewer(root.querySelector(".viewer-right"), { ...common, layers: groundTruth.map((l) => ({ ...l })), name: "multimodal" }).start();
  synchronise(left, right);
  const shown = { vision: null, multimodal: null };
  const showResult = (result) => {
    const viewer = result.model === "vision" ? left : right;
    viewer.overlays.add(modelLayer(`job-${result.job}`, result.name, result.payload, result.model === "vision" ? "#ff3030" : "#ffd400"));
    shown[result.model] = result;
    if (shown.vision && shown.multimodal) {
      right.overlays.add({ key: "vision-copy", name: shown.vision.name, kind: "mask", payload: shown.vision.payload,
        color: "#ff3030", opacity: 0.3, visible: false });
      right.overlays.add({ key: "difference", name: "Difference (red: vision only, blue: multimodal only)", kind: "diff",
        pair: ["vision-copy", `job-${shown.multimodal.job}`], color: "#ff3030", secondColor: "#00a0ff", opacity: 0.55 });
    }
    root.querySelector(".metrics-box").innerHTML = metricsTable({ ...config, results: Object.values(shown).filter(Boolean) });
  };
  ["vision", "multimodal"].forEach((family) => {
    const result = pickResult(config, family);
    if (result) showResult(result);
  });
  root.querySelector(".metrics-box").innerHTML = metricsTable({ ...config, results: Object.values(shown).filter(Boolean) });
  setupRunMissing(root, config, shown, showResult);
  window.contextrt = { ...(window.contextrt || {}), viewers: [left, right] };
  setupWhatIf(root.querySelector(".what-if"), config, right);
  return [left, right];
}

// Run the model(s) with no result yet on the current context, and show each contour when it arrives.
function setupRunMissing(root, config, shown, showResult) {
  const box = root.querySelector(".run-models");
  const missing = ["vision", "multimodal"].filter((f) => !shown[f] && config.checkpoints[f]);
  if (!box || missing.length === 0) return;
  const base = config.versions.length ? config.versions[config.versions.length - 1] : null;
  box.innerHTML = `<button type="button">Run ${missing.join(" and ")} model${missing.length > 1 ? "s" : ""}</button>
    <div class="job-progress"></div>`;
  box.querySelector("button").addEventListener("click", async (event) => {
    event.target.disabled = true;
    const update = progressBar(box.querySelector(".job-progress"));
    await Promise.all(missing.map(async (family) => {
      try {
        const job = await submitJob(config, { kind: "inference", caseId: config.case.id,
          checkpoint: config.checkpoints[family], contextVersion: base ? base.id : null });
        const final = await followJob(config, jobId(job), update);
        if (final.state !== "succeeded" || !final.contour) return;
        const detail = await fetchJob(config, jobId(job));
        const label = family === "vision" ? "Vision-only" : "Multimodal";
        showResult({ job: jobId(job), model: family, name: `${label} (${config.checkpoints[family]})`,
          payload: final.contour, metrics: (detail.results && detail.results.metrics) || {} });
      } catch (error) {
        update({ state: "failed", message: `${family}: ${error.message}` });
      }
    }));
    box.dataset.done = "true";
  });
}

function setupWhatIf(panel, config, originalViewer) {
  if (!panel) return;
  const fields = config.schema.fields.filter((f) => f.in_prompt !== false);
  const base = config.versions.length ? config.versions[config.versions.length - 1] : null;
  panel.innerHTML = `
    <h2>What if…</h2>
    <p class="muted">Change one field of ${base ? `context v${base.version}` : "the (empty) context"} or leave it unknown, and re-contour with the multimodal model.</p>
    <form class="what-if-form" novalidate>
      <label>Field <select name="field">${fields.map((f) => `<option value="${f.name}">${f.label}</option>`).join("")}</select></label>
      <label>New value <select name="value"></select></label>
      <button type="submit">Re-contour</button>
      <div class="field-error" role="alert"></div>
    </form>
    <div class="job-progress"></div>
    <div class="viewer-whatif"></div>`;
  const form = panel.querySelector("form");
  const valueSelect = form.elements.value;
  const fillValues = () => {
    const spec = fields.find((f) => f.name === form.elements.field.value);
    const current = base ? base.data[spec.name] : undefined;
    const values = spec.kind === "bool" ? ["true", "false"] : spec.kind === "choice" ? spec.choices : [];
    valueSelect.innerHTML = `<option value="__omit__">— omit (unknown) —</option>` +
      values.map((v) => `<option value="${v}" ${String(v) === String(current) ? "disabled" : ""}>${(spec.choice_labels || {})[v] || v}${String(v) === String(current) ? " (current)" : ""}</option>`).join("");
  };
  form.elements.field.addEventListener("change", fillValues);
  fillValues();
  let whatIfViewer = null;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const field = form.elements.field.value;
    const value = valueSelect.value;
    const context = { ...(base ? base.data : {}) };
    if (value === "__omit__") delete context[field];
    else context[field] = value === "true" ? true : value === "false" ? false : value;
    const update = progressBar(panel.querySelector(".job-progress"));
    form.querySelector(".field-error").textContent = "";
    try {
      const job = await submitJob(config, {
        kind: "what_if", caseId: config.case.id, checkpoint: config.checkpoints.multimodal,
        contextVersion: base ? base.id : null, params: { context },
      });
      update(job);
      const final = await followJob(config, jobId(job), update);
      if (final.state !== "succeeded") return;
      if (!whatIfViewer) {
        const originalLayers = originalViewer.overlays.layers.filter((l) => l.kind === "mask" && l.key.startsWith("job-"));
        whatIfViewer = await new CtViewer(panel.querySelector(".viewer-whatif"), {
          dicomwebRoot: config.dicomweb_root, studyUid: config.case.study_uid, seriesUid: config.case.series_uid,
          layers: originalLayers.map((l) => ({ ...l, name: `${l.name} (original)` })), name: "whatif",
        }).start();
        synchronise(originalViewer, whatIfViewer);
      }
      const label = value === "__omit__" ? `${field} omitted` : `${field} = ${value}`;
      whatIfViewer.overlays.add(modelLayer(`whatif-${jobId(job)}`, `What-if: ${label}`, final.contour, "#00e0ff"));
      panel.dataset.contour = "shown";
    } catch (error) {
      const message = error instanceof ApiError && error.status === 400 ? Object.values(fieldErrors(error.body)).join(" ") : error.message;
      form.querySelector(".field-error").textContent = message;
      update({ state: "failed", message });
    }
  });
}
