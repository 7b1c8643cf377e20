#!/usr/bin/env node
// Extracts the ```ts example of README.md to build/readme/example.ts (type-checked by
// tsconfig.check.json) and returns its text (test/readme.test.mjs runs it).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

export function example() {
  const readme = readFileSync(root + "README.md", "utf8");
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  if (blocks.length !== 1) throw new Error(`README.md: expected one ts block, found ${blocks.length}`);
  return blocks[0];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  mkdirSync(root + "build/readme", { recursive: true });
  writeFileSync(root + "build/readme/example.ts", example());
  console.log("wrote build/readme/example.ts");
}
