// Blinded rubric scoring inside the viewer: the CT with the anonymised contour (and the reference when the
// study shows it), the rubric form beside it, autosave of every change, keyboard shortcuts, submit → next.
// Everything shown comes from the rater item API, which carries no hint of the contour's source.
import { api, ApiError } from "./api.js";
import { CtViewer } from "./viewer.js";

function hexColour(rgb, fallback) {
  if (!Array.isArray(rgb) || rgb.length !== 3) return fallback;
  return `#${rgb.map((v) => Number(v).toString(16).padStart(2, "0")).join("")}`;
}

function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export class RubricForm {
  constructor(root, item, config) {
    this.root = root;
    this.item = item;
    this.config = config;
    this.scores = { ...(item.scores || {}) };
    this.comment = item.comment || "";
    this.focused = 0;
    this.locked = item.status === "submitted";
    this.saving = Promise.resolve();
    this.commentTimer = null;
  }

  get criteria() {
    return this.item.rubric.criteria;
  }

  render() {
    const item = this.item;
    const progress = item.progress || { submitted: 0, total: item.total_items };
    const context = item.case.prompt_text
      ? `<p class="score-context"><span class="muted">Clinical context:</span> ${escapeHtml(item.case.prompt_text)}</p>` : "";
    this.root.innerHTML = `
      <div class="score-head">
        <strong class="score-title">${escapeHtml(item.contour)}</strong>
        <span class="muted">item ${item.position} of ${item.total_items}</span>
      </div>
      <label class="score-progress">Progress
        <progress max="${progress.total}" value="${progress.submitted}"></progress>
        <span class="progress-label">${progress.submitted} / ${progress.total} submitted</span>
      </label>
      ${context}
      <form class="rubric" autocomplete="off">
        ${this.criteria.map((c, i) => this.criterionHtml(c, i)).join("")}
        <label class="score-comment">Comment
          <textarea name="comment" rows="3" maxlength="5000">${escapeHtml(this.comment)}</textarea>
        </label>
        <div class="score-total">Total: <span class="total-value"></span> / ${escapeHtml(item.rubric.max_total)}</div>
        <div class="score-actions">
          <button type="submit" class="submit-item">Submit and next</button>
          <span class="save-state" role="status" aria-live="polite">${this.locked ? "Submitted — locked" : "No changes yet"}</span>
        </div>
        <div class="form-error" role="alert"></div>
      </form>
      <details class="shortcuts"><summary>Keyboard shortcuts</summary>
        <ul>
          <li><kbd>↑</kbd> / <kbd>↓</kbd> (or <kbd>k</kbd> / <kbd>j</kbd>): previous / next criterion</li>
          <li><kbd>1</kbd>…<kbd>9</kbd>: choose the first…ninth allowed score of the highlighted criterion</li>
          <li><kbd>Ctrl</kbd>+<kbd>Enter</kbd>: submit and open the next item</li>
        </ul>
        <p class="muted">Inside the image: wheel or arrow keys scroll slices.</p>
      </details>`;
    this.form = this.root.querySelector("form.rubric");
    this.stateLabel = this.root.querySelector(".save-state");
    this.errorBox = this.root.querySelector(".form-error");
    this.form.addEventListener("change", (e) => this.onChange(e));
    this.form.addEventListener("input", (e) => {
      if (e.target.name === "comment") this.onCommentInput(e.target.value);
    });
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.root.querySelectorAll(".criterion").forEach((node, i) => node.addEventListener("click", () => this.focus(i)));
    document.addEventListener("keydown", (e) => this.onKey(e));
    if (this.locked) this.form.querySelectorAll("input, textarea, button").forEach((el) => { el.disabled = true; });
    this.focus(this.firstUnscored());
    this.updateTotal();
  }

  criterionHtml(c, i) {
    // Rubric sets written by coordinators keep examples as text (one per line) or as a list.
    const exampleList = Array.isArray(c.examples) ? c.examples : String(c.examples || "").split("\n").filter((x) => x.trim());
    const examples = exampleList.length
      ? `<details class="examples"><summary>Examples</summary><ul>${exampleList.map((x) => `<li>${escapeHtml(x)}</li>`).join("")}</ul></details>` : "";
    const options = c.steps.map((step, k) => `
      <label class="step"><input type="radio" name="crit-${escapeHtml(c.key)}" value="${escapeHtml(step)}"
        data-key="${escapeHtml(c.key)}" ${this.scores[c.key] === step ? "checked" : ""}>
        <kbd>${k + 1}</kbd> ${escapeHtml(step)}</label>`).join("");
    return `<fieldset class="criterion" data-index="${i}" data-key="${escapeHtml(c.key)}">
      <legend>${escapeHtml(c.label)} <span class="muted">(max ${escapeHtml(c.max_score)})</span></legend>
      <p class="criterion-description">${escapeHtml(c.description)}</p>${examples}
      <div class="steps">${options}</div>
    </fieldset>`;
  }

  firstUnscored() {
    const index = this.criteria.findIndex((c) => !(c.key in this.scores));
    return index < 0 ? 0 : index;
  }

  focus(index) {
    const n = this.criteria.length;
    this.focused = ((index % n) + n) % n;
    this.root.querySelectorAll(".criterion").forEach((node, i) => node.classList.toggle("focused", i === this.focused));
  }

  onKey(e) {
    if (this.locked) return;
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      this.submit();
      return;
    }
    const target = e.target;
    // Typing in the comment, or scrolling slices inside the image, is not a rubric shortcut.
    if (target.closest && (target.closest("textarea, input[type=text], select") || target.closest(".ct-viewer"))) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "ArrowDown" || e.key === "j") {
      e.preventDefault();
      this.focus(this.focused + 1);
    } else if (e.key === "ArrowUp" || e.key === "k") {
      e.preventDefault();
      this.focus(this.focused - 1);
    } else if (/^[1-9]$/.test(e.key)) {
      const criterion = this.criteria[this.focused];
      const step = criterion.steps[Number(e.key) - 1];
      if (step === undefined) return;
      e.preventDefault();
      const input = this.form.querySelector(`input[data-key="${CSS.escape(criterion.key)}"][value="${CSS.escape(step)}"]`);
      input.checked = true;
      this.setScore(criterion.key, step);
      if (this.focused < this.criteria.length - 1) this.focus(this.focused + 1);
    }
  }

  onChange(e) {
    const input = e.target;
    if (input.type === "radio" && input.dataset.key) {
      this.focus(this.criteria.findIndex((c) => c.key === input.dataset.key));
      this.setScore(input.dataset.key, input.value);
    }
  }

  setScore(key, value) {
    this.scores[key] = value;
    this.updateTotal();
    this.save({ scores: { [key]: value } });
  }

  onCommentInput(value) {
    this.comment = value;
    clearTimeout(this.commentTimer);
    this.stateLabel.textContent = "Editing…";
    this.commentTimer = setTimeout(() => this.save({ comment: value }), 400);
  }

  updateTotal() {
    const total = this.criteria.reduce((sum, c) => sum + (c.key in this.scores ? Number(this.scores[c.key]) : 0), 0);
    const complete = this.criteria.every((c) => c.key in this.scores);
    this.root.querySelector(".total-value").textContent = `${total}${complete ? "" : " (incomplete)"}`;
  }

  // Saves run one after another so the server sees them in the order they were made.
  save(change) {
    this.stateLabel.textContent = "Saving…";
    this.saving = this.saving.then(async () => {
      try {
        const saved = await api(this.config.item_url + "draft/", { method: "PUT", body: change });
        this.item.revision = saved.revision;
        this.stateLabel.textContent = "Draft saved";
        this.errorBox.textContent = "";
        document.body.dataset.saved = String(saved.revision);
      } catch (error) {
        this.stateLabel.textContent = "Not saved";
        this.errorBox.textContent = error instanceof ApiError ? error.message : `Could not save: ${error.message}`;
      }
    });
    return this.saving;
  }

  async submit() {
    if (this.locked) return;
    clearTimeout(this.commentTimer);
    const missing = this.criteria.filter((c) => !(c.key in this.scores)).map((c) => c.label);
    if (missing.length) {
      this.errorBox.textContent = `Score every criterion before submitting; missing: ${missing.join(", ")}`;
      this.focus(this.firstUnscored());
      return;
    }
    await this.save({ comment: this.form.querySelector("textarea[name=comment]").value });
    try {
      const done = await api(this.config.item_url + "submit/", { method: "POST" });
      this.locked = true;
      this.stateLabel.textContent = "Submitted — locked";
      window.location.assign(done.next_token ? this.config.item_page.replace("__token__", done.next_token)
        : `${this.config.worklist_url}?finished=1`);
    } catch (error) {
      this.errorBox.textContent = error instanceof ApiError ? error.message : `Could not submit: ${error.message}`;
    }
  }
}

export async function startScoring(root, config) {
  const item = await api(config.item_url);
  const layers = [];
  const contour = await api(item.contour_url);
  layers.push({ key: "contour", name: item.contour, kind: "mask", payload: contour,
    color: hexColour(contour.color, "#ffd700"), opacity: 0.4, visible: true });
  if (item.reference_url) {
    const reference = await api(item.reference_url);
    layers.push({ key: "reference", name: "Reference", kind: "mask", payload: reference,
      color: hexColour(reference.color, "#00c8ff"), opacity: 0.3, visible: true });
  }
  const form = new RubricForm(root, item, config);
  form.render();
  const viewer = new CtViewer(document.getElementById("viewer"), {
    dicomwebRoot: config.dicomweb_root, studyUid: item.case.study_uid, seriesUid: item.case.series_uid, layers,
  });
  window.contextrt = { viewer, config, form };
  await viewer.start();
}
