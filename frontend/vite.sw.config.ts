// The service worker: one classic script, written next to the viewer bundle as
// sw.js and served by Fetlock at /sw.js so that its scope is the whole site.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    outDir: fileURLToPath(new URL("../src/fetlock/web/static/viewer", import.meta.url)),
    emptyOutDir: false,
    target: "es2022",
    minify: false,
    lib: {
      entry: fileURLToPath(new URL("src/sw.ts", import.meta.url)),
      formats: ["iife"],
      name: "fetlockServiceWorker",
      fileName: () => "sw.js",
    },
  },
});
