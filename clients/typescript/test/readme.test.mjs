// README.md's example, run as written against ctid --demo (only its URL is replaced by the one of
// the running ctid): transpiled by the pinned TypeScript and run by node as a module of this
// package, so `import ... from "@ctid/client"` resolves to the build.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { example } from "../scripts/readme-example.mjs";
import { ctid } from "./helpers.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const { url } = await ctid();

test("the README example runs: connect, register, a call, hot desking, an error handled", async () => {
  const source = example();
  assert.ok(source.includes("ws://127.0.0.1:7000/ws"));
  const js = ts.transpileModule(source.replaceAll("ws://127.0.0.1:7000/ws", url), {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022 },
  }).outputText;
  mkdirSync(root + "build/readme", { recursive: true });
  const file = root + "build/readme/example.mjs";
  writeFileSync(file, js);
  const out = await new Promise((resolve, reject) =>
    execFile(process.execPath, [file], { timeout: 30000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
    ),
  );
  const lines = out.trim().split("\n");
  // the DN subscription saw the registration and the call, the error was a CtidError
  assert.ok(lines.includes("1006: EventRegistered"), out);
  assert.ok(lines.includes("1006: EventDialing"), out);
  assert.ok(lines.includes("1006: EventReleased"), out);
  assert.match(out, /^refused: 56 ConnID 00000000000000ff is not known/m);
});
