// The clinical-context editor: a form built from the server's schema, per-field errors from the
// server's validation, versions with diff, prompt preview, note extraction and "contour with this context".
import { api, ApiError } from "./api.js";
import { submitJob, followJob, progressBar, jobId } from "./jobs.js";
import { modelLayer } from "./layers.js";

function fieldInput(spec, value) {
  const id = `field-${spec.name}`;
  let control;
  if (spec.kind === "choice") {
    const options = ['<option value="">— unknown —</option>'].concat(spec.choices.map((c) =>
      `<option value="${c}" ${String(value) === String(c) ? "selected" : ""}>${(spec.choice_labels || {})[c] || c}</option>`));
    control = `<select id="${id}" name="${spec.name}">${options.join("")}</select>`;
  } else if (spec.kind === "bool") {
    const v = value === true ? "true" : value === false ? "false" : "";
    control = `<select id="${id}" name="${spec.name}">
      <option value="" ${v === "" ? "selected" : ""}>— unknown —</option>
      <option value="true" ${v === "true" ? "selected" : ""}>Yes</option>
      <option value="false" ${v === "false" ? "selected" : ""}>No</option></select>`;
  } else {
    // Numbers are typed as text so that the server, not the browser, decides what is valid.
    control = `<input id="${id}" name="${spec.name}" type="text" inputmode="${spec.kind === "text" ? "text" : "decimal"}"
      value="${value ?? ""}" autocomplete="off">`;
  }
  const range = spec.minimum !== null && spec.minimum !== undefined ? ` (${spec.minimum}–${spec.maximum})` : "";
  return `<div class="field" data-field="${spec.name}">
    <label for="${id}">${spec.label}${range}</label>${control}
    ${spec.help ? `<small class="help">${spec.help}</small>` : ""}
    <div class="field-error" role="alert"></div></div>`;
}

export function readForm(form, schema) {
  const data = {};
  for (const spec of schema.fields) {
    const raw = form.elements[spec.name].value.trim();
    if (raw === "") continue;
    if (spec.kind === "bool") data[spec.name] = raw === "true";
    else data[spec.name] = raw;
  }
  return data;
}

// DRF ({field: ["msg"]}) and plain ({errors: {field: "msg"}}) error bodies alike.
export function fieldErrors(body) {
  if (body && body.field && body.detail) return { [body.field]: body.detail };
  const source = body && body.errors ? body.errors : body && body.data && typeof body.data === "object" ? body.data : body;
  const out = {};
  if (!source || typeof source !== "object") return out;
  for (const [key, value] of Object.entries(source)) {
    out[key] = Array.isArray(value) ? value.join(" ") : typeof value === "object" ? JSON.stringify(value) : String(value);
  }
  return out;
}

function showErrors(form, errors) {
  form.querySelectorAll(".field").forEach((el) => {
    const message = errors[el.dataset.field];
    el.classList.toggle("invalid", !!message);
    el.querySelector(".field-error").textContent = message || "";
  });
  const general = Object.entries(errors).filter(([k]) => !form.querySelector(`[data-field="${k}"]`));
  form.querySelector(".form-error").textContent = general.map(([k, v]) => (k === "__all__" || k === "detail" || k === "non_field_errors" ? v : `${k}: ${v}`)).join(" ");
}

function diffVersions(older, newer) {
  const keys = new Set([...Object.keys(older || {}), ...Object.keys(newer || {})]);
  const rows = [];
  for (const key of [...keys].sort()) {
    const a = older ? older[key] : undefined;
    const b = newer[key];
    if (JSON.stringify(a) !== JSON.stringify(b)) rows.push({ field: key, before: a, after: b });
  }
  return rows;
}

export class ContextEditor {
  constructor(root, config, viewer) {
    this.root = root;
    this.config = config;
    this.viewer = viewer;
    this.schema = config.schema;
    this.versions = config.versions || [];
  }

  current() {
    return this.versions.length ? this.versions[this.versions.length - 1] : null;
  }

  render() {
    const data = this.current() ? this.current().data : {};
    this.root.innerHTML = `
      <form class="context-form" novalidate>
        <h2>Clinical context <small class="version-label"></small></h2>
        <div class="fields">${this.schema.fields.map((f) => fieldInput(f, data[f.name])).join("")}</div>
        <div class="form-error" role="alert"></div>
        <div class="buttons">
          <button type="submit" class="save">Save new version</button>
          <button type="button" class="preview">Preview prompt</button>
          <button type="button" class="contour">Contour with this context</button>
        </div>
        <div class="risk"></div>
        <pre class="prompt-preview" aria-label="Prompt preview"></pre>
        <div class="job-progress"></div>
      </form>
      <details class="note-box"><summary>Paste a clinical note</summary>
        <textarea class="note" rows="6" aria-label="Clinical note"></textarea>
        <button type="button" class="extract">Propose values</button>
        <div class="proposal"></div>
      </details>
      <section class="history"><h3>History</h3><ol class="versions"></ol></section>`;
    this.form = this.root.querySelector(".context-form");
    this.form.addEventListener("submit", (e) => { e.preventDefault(); this.save(); });
    this.root.querySelector(".preview").addEventListener("click", () => this.preview());
    this.root.querySelector(".contour").addEventListener("click", () => this.contour());
    this.root.querySelector(".extract").addEventListener("click", () => this.extract());
    this.renderHistory();
  }

  renderHistory() {
    const current = this.current();
    this.root.querySelector(".version-label").textContent = current ? `version ${current.version}` : "no saved version";
    const risk = current && current.risk_group ? `NCCN risk group: ${current.risk_group}` : "";
    this.root.querySelector(".risk").textContent = risk;
    const list = this.root.querySelector(".versions");
    list.innerHTML = "";
    [...this.versions].reverse().forEach((version) => {
      const index = this.versions.indexOf(version);
      const older = index > 0 ? this.versions[index - 1].data : null;
      const diff = version.diff || diffVersions(older, version.data);
      const item = document.createElement("li");
      item.dataset.version = version.version;
      const when = version.created ? new Date(version.created).toLocaleString() : "";
      item.innerHTML = `<strong>v${version.version}</strong> ${version.author || ""} ${when}
        <ul class="diff">${diff.map((d) => `<li><code>${d.field}</code>: ${d.before ?? "—"} → ${d.after ?? "—"}</li>`).join("") || "<li>no change</li>"}</ul>`;
      list.appendChild(item);
    });
  }

  async save() {
    const data = readForm(this.form, this.schema);
    const button = this.form.querySelector(".save");
    button.disabled = true;
    try {
      const payload = { data };
      if (this.sourceNote) payload.note = this.sourceNote; // the server keeps it only with PHI masked
      const version = await api(this.config.api.context_versions, { method: "POST", body: payload });
      this.sourceNote = "";
      showErrors(this.form, {});
      this.versions.push(version);
      this.renderHistory();
      this.form.dataset.saved = String(version.version);
      this.root.querySelector(".prompt-preview").textContent = version.prompt_text || "";
    } catch (error) {
      if (error instanceof ApiError && error.status === 400) showErrors(this.form, fieldErrors(error.body));
      else showErrors(this.form, { __all__: error.message });
    } finally {
      button.disabled = false;
    }
  }

  async preview() {
    try {
      const body = await api(this.config.api.prompt_preview, { method: "POST", body: { data: readForm(this.form, this.schema) } });
      showErrors(this.form, {});
      this.root.querySelector(".prompt-preview").textContent = body.prompt_text ?? "";
      this.root.querySelector(".risk").textContent = body.risk_group ? `NCCN risk group: ${body.risk_group}` : "";
    } catch (error) {
      showErrors(this.form, error instanceof ApiError && error.status === 400 ? fieldErrors(error.body) : { __all__: error.message });
    }
  }

  async extract() {
    const note = this.root.querySelector(".note").value;
    const box = this.root.querySelector(".proposal");
    try {
      const body = await api(this.config.api.extract_note, { method: "POST", body: { note } });
      const proposed = body.proposed || {};
      box.innerHTML = `<p>Masked note: <q class="masked">${(body.masked_note || "").replace(/</g, "&lt;")}</q></p>
        <ul>${Object.entries(proposed).map(([k, v]) => `<li><code>${k}</code> = ${v}</li>`).join("")}</ul>
        <button type="button" class="accept">Use these values</button>`;
      box.querySelector(".accept").addEventListener("click", () => {
        for (const [key, value] of Object.entries(proposed)) {
          const input = this.form.elements[key];
          if (input) input.value = String(value);
        }
        this.sourceNote = note;
      });
    } catch (error) {
      box.textContent = `Could not extract: ${error.message}`;
    }
  }

  async contour() {
    const current = this.current();
    const status = this.root.querySelector(".job-progress");
    if (!current) {
      showErrors(this.form, { __all__: "Save the context first: a job runs on a saved version." });
      return;
    }
    const update = progressBar(status);
    try {
      const job = await submitJob(this.config, {
        kind: "inference",
        caseId: this.config.case.id,
        checkpoint: this.config.checkpoints.multimodal,
        contextVersion: current.id,
      });
      update(job);
      const final = await followJob(this.config, jobId(job), update);
      if (final.state === "succeeded" && final.contour && this.viewer) {
        this.viewer.overlays.add(modelLayer(`job-${jobId(job)}`, `Multimodal (v${current.version})`, final.contour, "#ffd400"));
        status.dataset.contour = "shown";
      }
    } catch (error) {
      update({ state: "failed", message: error.message });
    }
  }
}
