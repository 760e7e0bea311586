// Builds the viewer into the Python package's static folder, served at
// /static/viewer/. The service worker is a separate build (vite.sw.config.ts)
// because it must be one classic script with no shared chunks.
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const OUT_DIR = fileURLToPath(
  new URL("../src/fetlock/web/static/viewer", import.meta.url),
);

// The codecs of @cornerstonejs/dicom-image-loader locate their WebAssembly with
// `new URL("@cornerstonejs/codec-x/decodewasm", import.meta.url)`, a bare
// package specifier that Vite leaves alone and the browser cannot resolve.
// Rewrite each into a `?url` import so Vite emits the .wasm file as a hashed
// asset and hands the decoder its real address.
function cornerstoneCodecWasm(): Plugin {
  const pattern = /new URL\(\s*["'](@cornerstonejs\/codec-[^"']+)["']\s*,\s*import\.meta\.url\s*\)/g;
  return {
    name: "fetlock-cornerstone-codec-wasm",
    enforce: "pre",
    transform(code, id) {
      if (!id.includes("@cornerstonejs/dicom-image-loader") || !pattern.test(code)) {
        return null;
      }
      pattern.lastIndex = 0;
      const imports: string[] = [];
      const rewritten = code.replace(pattern, (_match, specifier: string) => {
        const name = `__fetlockWasm${imports.length}`;
        imports.push(`import ${name} from ${JSON.stringify(`${specifier}?url`)};`);
        return `new URL(${name}, self.location.href)`;
      });
      return { code: `${imports.join("\n")}\n${rewritten}`, map: null };
    },
  };
}

export default defineConfig({
  base: "/static/viewer/",
  plugins: [cornerstoneCodecWasm()],
  worker: {
    format: "es",
    plugins: () => [cornerstoneCodecWasm()],
    rollupOptions: {
      output: { entryFileNames: "assets/[name]-[hash].js" },
    },
  },
  optimizeDeps: {
    exclude: ["@cornerstonejs/dicom-image-loader"],
    include: ["dicom-parser"],
  },
  build: {
    outDir: OUT_DIR,
    emptyOutDir: true,
    target: "es2022",
    manifest: true,
    // Cornerstone and vtk.js are large; one viewer chunk is expected.
    chunkSizeWarningLimit: 6000,
    // Inlining the codecs as data: URLs would defeat the service worker cache.
    assetsInlineLimit: 0,
    rollupOptions: {
      // The Emscripten codecs mention Node's fs and path on a branch that
      // never runs in a browser; Vite's notice about each is noise.
      onwarn(warning, warn) {
        if (!/externalized for browser compatibility/.test(warning.message)) {
          warn(warning);
        }
      },
      input: { viewer: fileURLToPath(new URL("src/viewer.ts", import.meta.url)) },
      output: {
        entryFileNames: "[name]-[hash].js",
        chunkFileNames: "assets/[name]-[hash].js",
        assetFileNames: "assets/[name]-[hash][extname]",
      },
    },
  },
});
