// Bundles src/ into dist/ (committed; the server embeds dist/ at compile time).
// Deterministic: same sources + same lockfile => byte-identical output.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

const dist = new URL("./dist/", import.meta.url).pathname;
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist + "assets", { recursive: true });

const common = {
  bundle: true,
  minify: true,
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
  sourcemap: false,
  metafile: false,
};

// ES modules with code splitting: the first page loads app.js alone; the editors
// (CodeMirror) arrive as a chunk when a page needs them. Chunk names are content hashes.
await build({
  ...common,
  entryPoints: { app: "src/main.js" },
  outdir: dist + "assets",
  format: "esm",
  splitting: true,
  chunkNames: "chunk-[hash]",
  target: ["es2020"],
});
await build({
  ...common,
  entryPoints: ["src/app.css"],
  outfile: dist + "assets/app.css",
});
copyFileSync("src/index.html", dist + "index.html");
