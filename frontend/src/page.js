// Page bootstrap shared by the Vite entries: reads the embedded page config, runs the page's start
// function and reports the outcome on <body data-ready> (the browser tests and benchmarks wait on it).
import { pageConfig } from "./api.js";

export async function runPage(start) {
  try {
    await start(pageConfig());
    document.body.dataset.ready = "true";
  } catch (error) {
    console.error(error);
    const box = document.getElementById("page-error");
    if (box) box.textContent = `Viewer error: ${error.message}`;
    document.body.dataset.ready = "error";
  }
}
