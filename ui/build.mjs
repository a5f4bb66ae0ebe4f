// Builds the UI with esbuild: ui/dist is what Tauri embeds and the local server serves.
// - dist/main.js: the app, bundled (markdown-it, DOMPurify, highlight.js's core), with each
//   highlight.js language split into its own chunk under dist/chunks, loaded on first use.
// - test-build/: the modules the unit tests import (`npm test` builds them first).
// Type checking is tsc's job (`tsc -p .` runs before this in `npm run build`).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

const common = { bundle: true, splitting: true, format: "esm", target: "es2022", logLevel: "warning" };

if (process.argv.includes("--test")) {
  rmSync("test-build", { recursive: true, force: true });
  await build({
    ...common,
    entryPoints: ["src/markdown.ts", "src/gauge.ts", "src/format.ts", "src/search.ts", "src/undo.ts", "src/plain.ts", "src/choices.ts"],
    outdir: "test-build",
    platform: "node",
    packages: "external", // the tests use node_modules as they are
  });
} else {
  rmSync("dist", { recursive: true, force: true });
  mkdirSync("dist", { recursive: true });
  await build({
    ...common,
    entryPoints: ["src/main.ts"],
    outdir: "dist",
    chunkNames: "chunks/[name]-[hash]",
    minify: true,
    legalComments: "linked",
    platform: "browser",
  });
  for (const f of ["index.html", "styles.css"]) copyFileSync(f, `dist/${f}`);
}
