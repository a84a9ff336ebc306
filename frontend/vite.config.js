// Vite build of the ContextRT browser pages; settings follow Cornerstone3D's Vite guide
// (dicom-parser as CommonJS, ES-module workers, wasm codecs as assets).
import { defineConfig } from "vite";
import { viteCommonjs } from "@originjs/vite-plugin-commonjs";

export default defineConfig({
  base: "/static/",
  plugins: [viteCommonjs()],
  // xmlbuilder2 (pulled in by Cornerstone's metadata package) extends Node's EventEmitter:
  // give it the browser implementation instead of Vite's empty stub.
  resolve: { alias: { events: "events/events.js" } },
  optimizeDeps: {
    exclude: ["@cornerstonejs/dicom-image-loader"],
    include: ["dicom-parser"],
  },
  worker: { format: "es" },
  assetsInclude: ["**/*.wasm"],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    manifest: true,
    target: "es2022",
    chunkSizeWarningLimit: 6000,
    // The scoring page is its own entry so a rater's scripts carry no model-comparison code.
    rollupOptions: { input: { main: "src/main.js", scoring: "src/scoring_page.js" } },
  },
});
