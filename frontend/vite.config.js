// Vite build of the ContextRT browser pages; settings follow Cornerstone3D's Vite guide
// (dicom-parser as CommonJS, ES-module workers, wasm codecs as assets).
import { defineConfig } from "vite";
import { viteCommonjs } from "@originjs/vite-plugin-commonjs";

export default defineConfig({
  base: "/static/",
  plugins: [viteCommonjs()],
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
    rollupOptions: { input: { main: "src/main.js" } },
  },
});
