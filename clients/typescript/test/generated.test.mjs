// The committed generated files cannot drift: src/messages.ts is what docs/asyncapi.yaml gives,
// and the web monitor's crates/server/src/web/ctid-client.js is a fresh build of src/client.ts.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { generate, SOURCE, TARGET } from "../scripts/gen-types.mjs";
import { build, TARGET as BROWSER } from "../scripts/build-browser.mjs";
import { EVENT_NAMES, REQUEST_NAMES } from "../dist/index.js";

test("src/messages.ts equals a fresh generation from docs/asyncapi.yaml", () => {
  const doc = readFileSync(SOURCE, "utf8");
  assert.equal(readFileSync(TARGET, "utf8"), generate(doc), "run `npm run gen` in clients/typescript");
});

test("every request and event of the document has its interface and its place in the unions", () => {
  const text = readFileSync(TARGET, "utf8");
  const doc = readFileSync(SOURCE, "utf8");
  const messages = [...doc.matchAll(/^ {4}((?:Request|Event)[A-Za-z_0-9]+):\n {6}name: /gm)].map((m) => m[1]);
  assert.ok(messages.length > 50, `${messages.length} messages`);
  assert.deepEqual([...REQUEST_NAMES, ...EVENT_NAMES].sort(), [...messages].sort());
  for (const name of messages) {
    assert.match(text, new RegExp(`^export interface ${name} \\{$`, "m"), name);
    assert.match(text, new RegExp(`^  \\| ${name};?$`, "m"), `${name} in its union`);
  }
  assert.ok(REQUEST_NAMES.includes("RequestResumeSession") && EVENT_NAMES.includes("EventSessionResumed"));
});

test("the web monitor's ctid-client.js is a fresh browser build of src/client.ts", () => {
  assert.equal(readFileSync(BROWSER, "utf8"), build(), "run `npm run build:browser` in clients/typescript");
});
