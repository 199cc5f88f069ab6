// The vendored charting library, exchange/page/vendor/, is exactly uPlot's npm package at the
// version package.json pins (licence included). `node vendor.mjs` checks it (npm test runs it);
// `node vendor.mjs --write` copies it after a version bump (npm run vendor).
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const vendor = resolve(import.meta.dirname, "../vendor");
const uplot = resolve(import.meta.dirname, "node_modules/uplot");
const files = [
  ["dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["dist/uPlot.min.css", "uPlot.min.css"],
  ["LICENSE", "uPlot.LICENSE"],
];
const version = JSON.parse(readFileSync(join(uplot, "package.json"), "utf8")).version;
const write = process.argv.includes("--write");
let drift = 0;
for (const [from, to] of files) {
  const source = readFileSync(join(uplot, from));
  if (write) {
    writeFileSync(join(vendor, to), source);
    continue;
  }
  let copy;
  try {
    copy = readFileSync(join(vendor, to));
  } catch {
    copy = Buffer.alloc(0);
  }
  if (!copy.equals(source)) {
    console.error(`exchange/page/vendor/${to} is not uplot@${version}'s ${from}: run npm run vendor`);
    drift += 1;
  }
}
if (drift > 0) process.exit(1);
console.log(write ? `vendored uplot@${version}` : `exchange/page/vendor holds uplot@${version}, unchanged`);
