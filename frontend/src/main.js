// Entry point: picks the page (viewer + editor, comparison) from <body data-page> and starts it.
import "./style.css";
import { pageConfig } from "./api.js";
import { CtViewer } from "./viewer.js";
import { ContextEditor } from "./editor.js";
import { layersFromConfig } from "./layers.js";
import { startComparison } from "./compare.js";

async function startCasePage(config) {
  const viewer = new CtViewer(document.getElementById("viewer"), {
    dicomwebRoot: config.dicomweb_root,
    studyUid: config.case.study_uid,
    seriesUid: config.case.series_uid,
    layers: layersFromConfig(config),
  });
  window.contextrt = { viewer, config };
  const editorRoot = document.getElementById("editor");
  if (editorRoot) new ContextEditor(editorRoot, config, viewer).render();
  await viewer.start();
}

// Viewer alone (benchmarks, embedding): no editor, no portal APIs beyond DICOMweb.
async function startViewerPage(config) {
  const viewer = new CtViewer(document.getElementById("viewer"), {
    dicomwebRoot: config.dicomweb_root,
    studyUid: config.case.study_uid,
    seriesUid: config.case.series_uid,
    layers: layersFromConfig(config),
  });
  window.contextrt = { viewer, config };
  await viewer.start();
}

async function main() {
  const config = pageConfig();
  const page = document.body.dataset.page;
  try {
    if (page === "case") await startCasePage(config);
    else if (page === "viewer") await startViewerPage(config);
    else if (page === "compare") await startComparison(document.getElementById("compare"), config);
    document.body.dataset.ready = "true";
  } catch (error) {
    console.error(error);
    const box = document.getElementById("page-error");
    if (box) box.textContent = `Viewer error: ${error.message}`;
    document.body.dataset.ready = "error";
  }
}

main();
