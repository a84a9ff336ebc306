// Entry point: picks the page (viewer + editor, comparison) from <body data-page> and starts it.
// The blinded scoring page has its own entry (scoring_page.js).
import "./style.css";
import { runPage } from "./page.js";
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

function startPage(config) {
  const page = document.body.dataset.page;
  if (page === "case") return startCasePage(config);
  if (page === "viewer") return startViewerPage(config);
  if (page === "compare") return startComparison(document.getElementById("compare"), config);
  return undefined;
}

runPage(startPage);
