// Copies the console's third-party browser assets from node_modules (after `npm ci`) into the
// Python package, and records each copied file's source and sha256 in vendor.json. The Python
// test tests/console/test_assets.py fails when the copies drift from this list or from package-lock.json.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";

const target = "../src/autovision/console/static/vendor";
const files = {
  "uPlot.esm.js": "uplot/dist/uPlot.esm.js",
  "uPlot.min.css": "uplot/dist/uPlot.min.css",
  "uPlot.LICENSE": "uplot/LICENSE",
};
const lock = JSON.parse(readFileSync("package-lock.json", "utf8"));
mkdirSync(target, { recursive: true });
const manifest = {};
for (const [name, source] of Object.entries(files)) {
  const from = `node_modules/${source}`;
  copyFileSync(from, `${target}/${name}`);
  const pkg = source.split("/")[0];
  manifest[name] = {
    source,
    version: lock.packages[`node_modules/${pkg}`].version,
    sha256: createHash("sha256").update(readFileSync(from)).digest("hex"),
  };
}
writeFileSync(`${target}/vendor.json`, JSON.stringify(manifest, null, 2) + "\n");
