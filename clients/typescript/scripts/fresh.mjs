// Write a generated file, or with --check on the command line only compare it: the generators'
// shared ending (gen-types.mjs, build-browser.mjs). Exits 1 when --check finds it stale.
import { readFileSync, writeFileSync } from "node:fs";

export function writeOrCheck(target, fresh, name, howToFix) {
  if (!process.argv.includes("--check")) {
    writeFileSync(target, fresh);
    console.log(`wrote ${name}`);
    return;
  }
  let current = "";
  try {
    current = readFileSync(target, "utf8");
  } catch {
    // missing: stale
  }
  if (current !== fresh) {
    console.error(`${name} is not fresh: ${howToFix}`);
    process.exit(1);
  }
  console.log(`${name} is fresh`);
}
