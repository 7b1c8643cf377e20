// Checks docs/asyncapi.yaml (run by .ci/asyncapi.sh; docs/protocol.md, "AsyncAPI document"):
//   1. @asyncapi/parser parses and validates it; any error diagnostic fails. The schemas use
//      only the agreed JSON Schema subset (the header of the document).
//   2. Every request and event example of docs/protocol.md (the lines of its ```json blocks that
//      are a whole message, with or without a ← / → arrow) validates against its message's
//      schema; an event attribute its schema does not list fails too.
//   3. End to end, against a running `ctid --demo` (env CTID_WS = its ws URL, CSTA_SIM = the
//      csta-sim control API's http URL): a session of hot desking, calls, user data, agents,
//      forwarding, DND, malformed requests and a session resume. Every frame ctid sends is
//      validated against its event's schema (an event without a schema, or with an attribute its
//      schema does not list, fails); every request sent (except the deliberately malformed ones)
//      against its request's schema; EventServerInfo's SupportedRequests (and
//      RequestResumeSession) must be exactly the document's requests.
// `node check.mjs --offline` runs 1 and 2 only. Exit status 0 when everything passed.

import { Parser } from "@asyncapi/parser";
import Ajv from "ajv";
import WebSocket from "ws";
import YAML from "yaml";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const docPath = join(root, "docs", "asyncapi.yaml");
const protocolPath = join(root, "docs", "protocol.md");
const offline = process.argv.includes("--offline");
const DEADLINE_MS = 15000;

let failures = 0;
function fail(msg) {
  failures++;
  console.log(`FAIL ${msg}`);
}

// ---- 1. parse and validate the document ----

const text = readFileSync(docPath, "utf8");
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);
for (const d of diagnostics) {
  // severity: 0 error, 1 warning, 2 information, 3 hint
  const where = d.path && d.path.length ? ` at ${d.path.join(".")}` : "";
  if (d.severity === 0) fail(`asyncapi: ${d.code}: ${d.message}${where}`);
  else if (d.severity === 1) console.log(`warn asyncapi: ${d.code}: ${d.message}${where}`);
}
if (!document) {
  console.log("asyncapi: the document did not parse; stopping");
  process.exit(1);
}
const raw = YAML.parse(text);
const schemas = raw.components.schemas;
const messages = raw.components.messages;
const requestNames = Object.keys(messages).filter((n) => n.startsWith("Request"));
const eventNames = Object.keys(messages).filter((n) => n.startsWith("Event"));
console.log(
  `asyncapi: parsed, ${document.allMessages().length} messages (${requestNames.length} requests, ${eventNames.length} events), ${Object.keys(schemas).length} schemas`,
);

// The layout the code generators rely on.
const ALLOWED = new Set([
  "type", "enum", "const", "$ref", "properties", "required", "items", "additionalProperties",
  "oneOf", "minimum", "maximum", "minLength", "maxLength", "pattern", "description",
]);
function checkSubset(s, path) {
  if (s === true || s === false) return;
  for (const [k, v] of Object.entries(s)) {
    if (!ALLOWED.has(k)) fail(`layout: ${path} uses ${k}, outside the agreed JSON Schema subset`);
    if (k === "properties") for (const [p, ps] of Object.entries(v)) checkSubset(ps, `${path}.properties.${p}`);
    else if (k === "items" || k === "additionalProperties") checkSubset(v, `${path}.${k}`);
    else if (k === "oneOf") v.forEach((x, i) => checkSubset(x, `${path}.oneOf[${i}]`));
    else if (k === "$ref" && !/^#\/components\/schemas\/[A-Za-z0-9]+$/.test(v)) fail(`layout: ${path}: $ref ${v}`);
  }
}
for (const [n, s] of Object.entries(schemas)) checkSubset(s, `components.schemas.${n}`);
for (const [n, m] of Object.entries(messages)) {
  const key = n.startsWith("Request") ? "request" : n.startsWith("Event") ? "event" : null;
  const s = schemas[n];
  if (!key) fail(`layout: message ${n} is neither a request nor an event`);
  else if (m.name !== n) fail(`layout: message ${n} has name ${m.name}`);
  else if (m.payload?.$ref !== `#/components/schemas/${n}`) fail(`layout: message ${n}: payload is not $ref to its schema`);
  else if (!s || s.type !== "object" || s.properties?.[key]?.const !== n || !s.required?.includes(key))
    fail(`layout: schema ${n} lacks type object / a required ${key} with const ${n}`);
}
for (const op of ["sendRequest", "receiveEvent"]) {
  const got = (raw.operations[op]?.messages || []).map((r) => r.$ref.split("/").pop()).sort();
  const want = (op === "sendRequest" ? requestNames : eventNames).slice().sort();
  if (JSON.stringify(got) !== JSON.stringify(want)) fail(`layout: operation ${op} does not list exactly the ${op === "sendRequest" ? "requests" : "events"}`);
}

// ---- ajv over components.schemas ----

const ID = "https://ctid.invalid/asyncapi.json";
function rewriteRefs(v) {
  if (Array.isArray(v)) return v.map(rewriteRefs);
  if (v && typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) {
      o[k] = k === "$ref" ? x.replace("#/components/schemas/", "#/$defs/") : rewriteRefs(x);
    }
    return o;
  }
  return v;
}
const ajv = new Ajv({ allErrors: true, strict: true });
ajv.addSchema({ $id: ID, $defs: rewriteRefs(schemas) });
const validators = new Map();
function validator(name) {
  if (!validators.has(name)) validators.set(name, schemas[name] ? ajv.getSchema(`${ID}#/$defs/${name}`) : null);
  return validators.get(name);
}
for (const n of Object.keys(messages)) validator(n); // compile everything now: a bad schema fails here

/** Problems of one message against the document ([] when it conforms). Events are also held to
 * the attributes their schema lists (the document must say what ctid sends). */
function problems(msg) {
  const isReq = typeof msg.request === "string";
  const name = isReq ? msg.request : msg.event;
  if (typeof name !== "string") return ["neither request nor event"];
  const v = validator(name);
  if (!v || !messages[name]) return [`${name}: no schema in the document`];
  const out = [];
  if (!v(msg)) {
    for (const e of v.errors) out.push(`${name}${e.instancePath || ""}: ${e.message}${e.params?.allowedValues ? " " + JSON.stringify(e.params.allowedValues) : ""}`);
  }
  if (!isReq) {
    const known = schemas[name].properties;
    for (const k of Object.keys(msg)) if (!(k in known)) out.push(`${name}: attribute ${k} is not in its schema`);
  }
  return out;
}

// ---- 2. the examples of docs/protocol.md ----

const md = readFileSync(protocolPath, "utf8").split("\n");
let inJson = false;
let exampleCount = 0;
let refusedCount = 0;
let fragmentCount = 0;
const exampleNames = new Set();
let block = []; // the messages of the current ```json block: { line, msg }

// A request example that does not match its schema is right only when the document shows it
// refused for that (EventError 53 / 51 / 71 with its ReferenceID in the same block).
function checkBlock() {
  for (const { line, msg } of block) {
    const ps = problems(msg);
    if (!ps.length) continue;
    if (typeof msg.request === "string") {
      const answer = block.find((x) => x.msg.event && x.msg.ReferenceID === msg.ReferenceID);
      if (answer && answer.msg.event === "EventError" && [51, 53, 71].includes(answer.msg.ErrorCode)) {
        refusedCount++;
        continue;
      }
    }
    for (const p of ps) fail(`protocol.md:${line}: ${p}`);
  }
  block = [];
}

md.forEach((line, i) => {
  const t = line.trim();
  if (t.startsWith("```")) {
    if (inJson) checkBlock();
    inJson = !inJson && t === "```json";
    return;
  }
  if (!inJson) return;
  const body = t.replace(/^[←→]\s*/, "");
  if (body.startsWith('"UserData":') || body.startsWith('"Extensions":')) {
    // a KV list on its own (protocol.md 4)
    const kv = JSON.parse(body.slice(body.indexOf(":") + 1));
    const v = validator("KVList");
    fragmentCount++;
    if (!v(kv)) fail(`protocol.md:${i + 1}: KV list example: ${ajv.errorsText(v.errors)}`);
    return;
  }
  if (!body.startsWith('{"request"') && !body.startsWith('{"event"')) return;
  let msg;
  try {
    msg = JSON.parse(body);
  } catch (e) {
    fail(`protocol.md:${i + 1}: example is not JSON: ${e.message}`);
    return;
  }
  exampleCount++;
  exampleNames.add(msg.request || msg.event);
  block.push({ line: i + 1, msg });
});
console.log(`protocol.md: ${exampleCount} request/event examples (${exampleNames.size} different messages; ${refusedCount} invalid request(s) shown refused) and ${fragmentCount} KV list example(s) checked`);
if (exampleCount < 100) fail(`protocol.md: only ${exampleCount} examples found; the extraction is broken`);

if (offline) {
  finish({});
}

// ---- 3. end to end against ctid --demo ----

const wsUrl = process.env.CTID_WS;
const simUrl = process.env.CSTA_SIM;
if (!wsUrl || !simUrl) {
  console.log("e2e: set CTID_WS (ws://HOST:PORT/ws) and CSTA_SIM (http://HOST:PORT) or pass --offline");
  process.exit(2);
}

const seen = {}; // event name -> count validated
let framesValidated = 0;
let requestsSent = 0;

function deadline(ms, what) {
  let timer;
  const p = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
  });
  return { p, clear: () => clearTimeout(timer) };
}

class Conn {
  constructor(label) {
    this.label = label;
    this.events = [];
    this.waiters = [];
    this.nextRef = 1;
    this.lastSeq = 0;
  }

  static async open(label) {
    const c = new Conn(label);
    c.ws = new WebSocket(wsUrl);
    c.ws.on("message", (data, isBinary) => c.onFrame(data, isBinary));
    c.closed = new Promise((resolve) => c.ws.on("close", (code, reason) => resolve({ code, reason: String(reason) })));
    await new Promise((resolve, reject) => {
      c.ws.once("open", resolve);
      c.ws.once("error", reject);
    });
    c.first = await c.wait((e) => true, "first frame");
    return c;
  }

  onFrame(data, isBinary) {
    if (isBinary) {
      fail(`${this.label}: ctid sent a binary frame`);
      return;
    }
    let ev;
    try {
      ev = JSON.parse(String(data));
    } catch (e) {
      fail(`${this.label}: ctid sent a frame that is not JSON: ${String(data).slice(0, 80)}`);
      return;
    }
    framesValidated++;
    const name = ev.event;
    seen[name] = (seen[name] || 0) + 1;
    for (const p of problems(ev)) fail(`e2e ${this.label}: ${p}\n     ${JSON.stringify(ev)}`);
    if (typeof ev.EventSequenceNumber === "number" && name !== "EventSessionResumed") this.lastSeq = ev.EventSequenceNumber;
    this.events.push(ev);
    this.waiters = this.waiters.filter((w) => {
      if (w.pred(ev)) {
        w.resolve(ev);
        return false;
      }
      return true;
    });
  }

  /** The first event (already received since `from`, or to come) that `pred` accepts. */
  wait(pred, what, from = 0) {
    const have = this.events.slice(from).find(pred);
    if (have) return Promise.resolve(have);
    const d = deadline(DEADLINE_MS, `${this.label}: ${what}`);
    const got = new Promise((resolve) => this.waiters.push({ pred, resolve }));
    return Promise.race([got, d.p]).finally(d.clear);
  }

  sendRaw(text) {
    this.ws.send(text);
  }

  /** Sends a request (checked against its schema first) and waits for its answer. */
  async request(req) {
    const msg = { request: req.request, ReferenceID: this.nextRef++, ...req };
    for (const p of problems(msg)) fail(`e2e ${this.label}: request does not match its schema: ${p}`);
    requestsSent++;
    const from = this.events.length;
    this.ws.send(JSON.stringify(msg));
    return this.wait((e) => e.ReferenceID === msg.ReferenceID, `answer to ${msg.request} ${msg.ReferenceID}`, from);
  }

  /** Sends a request without checking it against the document; waits for its answer. */
  async requestUnchecked(req) {
    const msg = { request: req.request, ReferenceID: this.nextRef++, ...req };
    requestsSent++;
    const from = this.events.length;
    this.ws.send(JSON.stringify(msg));
    return this.wait((e) => e.ReferenceID === msg.ReferenceID, `answer to ${msg.request} ${msg.ReferenceID}`, from);
  }

  /** A request whose answer must be `event`. */
  async expect(req, event) {
    const ans = await this.request(req);
    if (ans.event !== event) throw new Error(`${this.label}: ${req.request} answered ${JSON.stringify(ans)}, expected ${event}`);
    return ans;
  }

  /** A request whose answer must be EventError `code`; `invalid`: the request is deliberately
   * outside the document (not served, or missing what its schema requires). */
  async refused(req, code, invalid = false) {
    const ans = await (invalid ? this.requestUnchecked(req) : this.request(req));
    if (ans.event !== "EventError" || ans.ErrorCode !== code)
      throw new Error(`${this.label}: ${req.request} answered ${JSON.stringify(ans)}, expected EventError ${code}`);
    return ans;
  }

  close(code = 1000) {
    this.ws.close(code);
    return this.closed;
  }
}

async function sim(path, body) {
  const r = await fetch(`${simUrl}${path}`, { method: "POST", body: body ? JSON.stringify(body) : undefined });
  const j = await r.json().catch(() => ({}));
  if (!r.ok || j.ok === false) throw new Error(`csta-sim ${path}: HTTP ${r.status} ${JSON.stringify(j)}`);
  return j;
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    fail(`${name}: ${e && e.message ? e.message : e}`);
  }
}

const on = (name, dn, extra = () => true) => (e) => e.event === name && e.ThisDN === dn && extra(e);

let A, B;
await step("connect: first frame EventLinkConnected with a SessionID", async () => {
  A = await Conn.open("A");
  if (A.first.event !== "EventLinkConnected" || !A.first.SessionID) throw new Error(JSON.stringify(A.first));
  B = await Conn.open("B");
});

await step("RequestRegisterClient, RequestQueryServer: SupportedRequests = the document's requests", async () => {
  await A.expect({ request: "RequestRegisterClient", ApplicationName: "asyncapi-check" }, "EventACK");
  const info = await A.expect({ request: "RequestQueryServer" }, "EventServerInfo");
  const served = info.Extensions.SupportedRequests.split(",").concat(["RequestResumeSession"]).sort();
  const doc = requestNames.slice().sort();
  const missing = served.filter((n) => !doc.includes(n));
  const extra = doc.filter((n) => !served.includes(n));
  if (missing.length || extra.length)
    throw new Error(`served but not in the document: [${missing}]; in the document but not served: [${extra}]`);
});

await step("RequestRegisterAddress on several DNs (A: 1001 1002 1003 1004 2001 3001 3101; B: 1002 2001 1001)", async () => {
  for (const dn of ["1001", "1002", "1003", "1004", "2001", "3001"]) {
    await A.expect({ request: "RequestRegisterAddress", ThisDN: dn, RegisterMode: "ModeShare" }, "EventRegistered");
  }
  await A.expect({ request: "RequestRegisterAddress", ThisDN: "3101", RegisterMode: "ModeShare", ControlMode: "RegisterDefault", AddressType: "AddressTypeRouteDN" }, "EventRegistered");
  for (const dn of ["1002", "2001", "1001"]) {
    await B.expect({ request: "RequestRegisterAddress", ThisDN: dn, RegisterMode: "ModeMonitor" }, "EventRegistered");
  }
  await A.expect({ request: "RequestQueryAddress", ThisDN: "1001", InfoType: "AddressInfoDNStatus" }, "EventAddressInfo");
  await A.expect({ request: "RequestQueryAddress", ThisDN: "2010", InfoType: "AddressInfoAddressType" }, "EventAddressInfo");
});

await step("hot desking: initiate, initiate again (1161), cancel, cancel again (1161), PrivateMsgID 3 (51)", async () => {
  await A.expect({ request: "RequestPrivateService", ThisDN: "2001", PrivateMsgID: 1, Extensions: { HOST_DN: "1001" } }, "EventPrivateInfo");
  await B.wait(on("EventPrivateInfo", "2001", (e) => e.PrivateMsgID === 1), "B's copy of EventPrivateInfo 1");
  await A.refused({ request: "RequestPrivateService", ThisDN: "2001", PrivateMsgID: 1, Extensions: { HOST_DN: "1002" } }, 1161);
  await A.expect({ request: "RequestQueryAddress", ThisDN: "2001", InfoType: "AddressInfoDNStatus" }, "EventAddressInfo");
  await A.expect({ request: "RequestPrivateService", ThisDN: "2001", PrivateMsgID: 2 }, "EventPrivateInfo");
  await A.refused({ request: "RequestPrivateService", ThisDN: "2001", PrivateMsgID: 2 }, 1161);
  await A.refused({ request: "RequestPrivateService", ThisDN: "2001", PrivateMsgID: 3 }, 51);
  await A.refused({ request: "RequestPrivateService", ThisDN: "2001", PrivateMsgID: 1 }, 53);
});

let conn;
await step("a call 1001 → 1002 with user data, answered at the phone (csta-sim), hold / retrieve, DTMF, query", async () => {
  const from = A.events.length;
  const d = await A.expect({ request: "RequestMakeCall", ThisDN: "1001", OtherDN: "1002", UserData: { CaseID: "C-1", Tags: [["t", "a"], ["t", "b"]], Blob: { $binary: "AAE=" } } }, "EventDialing");
  conn = d.ConnID;
  await A.wait(on("EventRinging", "1002", (e) => e.ConnID === conn), "EventRinging on 1002", from);
  await sim("/phones/1002/answer");
  await A.wait(on("EventEstablished", "1001", (e) => e.ConnID === conn), "EventEstablished on 1001", from);
  await A.wait(on("EventEstablished", "1002", (e) => e.ConnID === conn), "EventEstablished on 1002", from);
  await A.expect({ request: "RequestHoldCall", ThisDN: "1001", ConnID: conn }, "EventHeld");
  await A.expect({ request: "RequestRetrieveCall", ThisDN: "1001", ConnID: conn }, "EventRetrieved");
  await A.expect({ request: "RequestSendDTMF", ThisDN: "1001", ConnID: conn, DTMFDigits: "12#" }, "EventDTMFSent");
  await A.expect({ request: "RequestQueryCall", ThisDN: "1001", ConnID: conn }, "EventPartyInfo");
});

await step("user data: attach, update, delete a pair, delete all", async () => {
  await A.expect({ request: "RequestAttachUserData", ThisDN: "1001", ConnID: conn, UserData: { Lang: "fr", Score: 42 } }, "EventAttachedDataChanged");
  await A.expect({ request: "RequestUpdateUserData", ThisDN: "1002", ConnID: conn, UserData: { Lang: "en" } }, "EventAttachedDataChanged");
  await A.expect({ request: "RequestDeletePair", ThisDN: "1001", ConnID: conn, DataKey: "Lang" }, "EventAttachedDataChanged");
  await A.refused({ request: "RequestDeletePair", ThisDN: "1001", ConnID: conn, DataKey: "Nope" }, 53);
  await A.expect({ request: "RequestDeleteUserData", ThisDN: "1001", ConnID: conn }, "EventAttachedDataChanged");
});

await step("two-step transfer 1001 → 1003 (answered at the phone), then release", async () => {
  const from = A.events.length;
  const d = await A.expect({ request: "RequestInitiateTransfer", ThisDN: "1001", ConnID: conn, OtherDN: "1003" }, "EventDialing");
  await A.wait(on("EventRinging", "1003", (e) => e.ConnID === d.ConnID), "EventRinging on 1003", from);
  await sim("/phones/1003/answer");
  await A.wait(on("EventEstablished", "1001", (e) => e.ConnID === d.ConnID), "consultation established", from);
  await A.expect({ request: "RequestCompleteTransfer", ThisDN: "1001", ConnID: d.ConnID, TransferConnID: conn }, "EventReleased");
  await A.wait(on("EventPartyChanged", "1003"), "EventPartyChanged on 1003", from);
  await A.expect({ request: "RequestReleaseCall", ThisDN: "1002", ConnID: conn }, "EventReleased");
  await A.wait(on("EventReleased", "1003", (e) => e.ConnID === conn), "EventReleased on 1003", from);
});

await step("conference 1001 + 1002 + 1003, delete 1003, clear", async () => {
  const from = A.events.length;
  const d = await A.expect({ request: "RequestMakeCall", ThisDN: "1001", OtherDN: "1002" }, "EventDialing");
  await A.wait(on("EventRinging", "1002", (e) => e.ConnID === d.ConnID), "ringing", from);
  await A.expect({ request: "RequestAnswerCall", ThisDN: "1002", ConnID: d.ConnID }, "EventEstablished");
  const c = await A.expect({ request: "RequestInitiateConference", ThisDN: "1001", ConnID: d.ConnID, OtherDN: "1003" }, "EventDialing");
  await A.wait(on("EventRinging", "1003", (e) => e.ConnID === c.ConnID), "consultation ringing", from);
  await A.expect({ request: "RequestAnswerCall", ThisDN: "1003", ConnID: c.ConnID }, "EventEstablished");
  await A.expect({ request: "RequestCompleteConference", ThisDN: "1001", ConnID: c.ConnID, ConferenceConnID: d.ConnID }, "EventPartyAdded");
  await A.expect({ request: "RequestDeleteFromConference", ThisDN: "1001", ConnID: d.ConnID, OtherDN: "1003" }, "EventPartyDeleted");
  await A.expect({ request: "RequestClearCall", ThisDN: "1001", ConnID: d.ConnID }, "EventReleased");
  await A.wait(on("EventReleased", "1002", (e) => e.ConnID === d.ConnID), "1002 released", from);
});

await step("a call the caller abandons, an off-hook without dialling, a redirect", async () => {
  let from = A.events.length;
  const d = await A.expect({ request: "RequestMakeCall", ThisDN: "1001", OtherDN: "1002" }, "EventDialing");
  await A.wait(on("EventRinging", "1002", (e) => e.ConnID === d.ConnID), "ringing", from);
  await A.expect({ request: "RequestReleaseCall", ThisDN: "1001", ConnID: d.ConnID }, "EventReleased");
  await A.wait(on("EventAbandoned", "1002", (e) => e.ConnID === d.ConnID), "EventAbandoned on 1002", from);
  from = A.events.length;
  await sim("/phones/1004/offhook");
  const off = await A.wait(on("EventOffHook", "1004"), "EventOffHook on 1004", from);
  await sim("/phones/1004/hangup");
  await A.wait(on("EventOnHook", "1004", (e) => e.ConnID === off.ConnID), "EventOnHook on 1004", from);
  from = A.events.length;
  const r = await A.expect({ request: "RequestMakeCall", ThisDN: "1001", OtherDN: "1002" }, "EventDialing");
  await A.wait(on("EventRinging", "1002", (e) => e.ConnID === r.ConnID), "ringing", from);
  await A.expect({ request: "RequestRedirectCall", ThisDN: "1002", ConnID: r.ConnID, OtherDN: "1003" }, "EventReleased");
  await A.wait(on("EventRinging", "1003", (e) => e.ConnID === r.ConnID), "ringing on 1003", from);
  await A.expect({ request: "RequestReleaseCall", ThisDN: "1001", ConnID: r.ConnID }, "EventReleased");
});

await step("agent 2001: login to 3001, ready, a queued call, not ready (reason, ACW), logout", async () => {
  let from = A.events.length;
  await A.expect({ request: "RequestAgentLogin", ThisDN: "2001", AgentID: "2001", ThisQueue: "3001" }, "EventAgentLogin");
  await A.wait(on("EventAgentNotReady", "2001"), "EventAgentNotReady after the login", from);
  await A.expect({ request: "RequestAgentReady", ThisDN: "2001" }, "EventAgentReady");
  from = A.events.length;
  const q = await A.expect({ request: "RequestMakeCall", ThisDN: "1001", OtherDN: "3001" }, "EventDialing");
  await A.wait(on("EventQueued", "3001", (e) => e.ConnID === q.ConnID), "EventQueued on 3001", from);
  await A.wait(on("EventDiverted", "3001", (e) => e.ConnID === q.ConnID), "EventDiverted on 3001", from);
  await A.wait(on("EventRinging", "2001", (e) => e.ConnID === q.ConnID), "EventRinging on 2001", from);
  await A.expect({ request: "RequestReleaseCall", ThisDN: "1001", ConnID: q.ConnID }, "EventReleased");
  await A.expect({ request: "RequestAgentNotReady", ThisDN: "2001", Extensions: { ReasonCode: 12 } }, "EventAgentNotReady");
  await A.expect({ request: "RequestAgentNotReady", ThisDN: "2001", AgentWorkMode: "AgentAfterCallWork" }, "EventAgentNotReady");
  await A.expect({ request: "RequestAgentLogout", ThisDN: "2001" }, "EventAgentLogout");
  await A.refused({ request: "RequestAgentReady", ThisDN: "2001" }, 1161);
});

await step("routing point 3101: EventRouteRequest, RequestRouteCall", async () => {
  const from = A.events.length;
  const d = await A.expect({ request: "RequestMakeCall", ThisDN: "1001", OtherDN: "3101" }, "EventDialing");
  await A.wait(on("EventRouteRequest", "3101", (e) => e.ConnID === d.ConnID), "EventRouteRequest", from);
  await A.expect({ request: "RequestRouteCall", ThisDN: "3101", ConnID: d.ConnID, OtherDN: "1002", RouteType: "RouteTypeDefault" }, "EventRouteUsed");
  await A.wait(on("EventRinging", "1002", (e) => e.ConnID === d.ConnID), "ringing on 1002", from);
  await A.expect({ request: "RequestReleaseCall", ThisDN: "1001", ConnID: d.ConnID }, "EventReleased");
});

await step("DND on / off, a busy destination, forwarding set / cancel", async () => {
  await A.expect({ request: "RequestSetDNDOn", ThisDN: "1003" }, "EventDNDOn");
  const from = A.events.length;
  const d = await A.expect({ request: "RequestMakeCall", ThisDN: "1001", OtherDN: "1003" }, "EventDialing");
  await A.wait(on("EventDestinationBusy", "1001", (e) => e.ConnID === d.ConnID), "EventDestinationBusy", from);
  await A.expect({ request: "RequestReleaseCall", ThisDN: "1001", ConnID: d.ConnID }, "EventReleased");
  await A.expect({ request: "RequestSetDNDOff", ThisDN: "1003" }, "EventDNDOff");
  await A.expect({ request: "RequestCallForwardSet", ThisDN: "1003", OtherDN: "1004", ForwardMode: "ForwardModeUnconditional" }, "EventForwardSet");
  await A.expect({ request: "RequestQueryAddress", ThisDN: "1003", InfoType: "AddressInfoDNStatus" }, "EventAddressInfo");
  await A.expect({ request: "RequestCallForwardCancel", ThisDN: "1003" }, "EventForwardCancel");
});

await step("malformed and refused requests get EventError (53, 51, 41, 71, 56, 1905)", async () => {
  const errs = async (send, want, what) => {
    const from = A.events.length;
    send();
    const e = await A.wait((x) => x.event === "EventError" && x.ErrorCode === want, what, from);
    return e;
  };
  await errs(() => A.sendRaw("{not json"), 53, "invalid JSON");
  await errs(() => A.sendRaw("[1,2]"), 53, "an array");
  await errs(() => A.sendRaw('{"request":"RequestQueryServer"}'), 53, "no ReferenceID");
  await errs(() => A.sendRaw('{"request":"RequestQueryServer","ReferenceID":0}'), 53, "ReferenceID 0");
  await errs(() => A.sendRaw('{"request":"RequestRegisterAddress","ReferenceID":900,"ThisDN":"1001","ThisDN":"1002"}'), 53, "a repeated attribute");
  await errs(() => A.sendRaw('{"request":"RequestRegisterAddress","ReferenceID":901,"ThisDN":1001}'), 53, "ThisDN a number");
  await errs(() => A.sendRaw('{"request":"RequestRegisterAddress","ReferenceID":902,"ThisDN":"1001","RegisterMode":"Share"}'), 53, "a bad enumeration");
  await errs(() => A.sendRaw('{"request":"RequestAttachUserData","ReferenceID":903,"ThisDN":"1001","ConnID":"0000000000000001","UserData":{"a":true}}'), 53, "a bad KV list");
  await errs(() => A.sendRaw('{"request":"RequestFoo","ReferenceID":904}'), 51, "an unknown request");
  await errs(() => A.ws.send(Buffer.from([1, 2, 3]), { binary: true }), 53, "a binary frame");
  await A.refused({ request: "RequestRegisterAll" }, 51, true); // phase L: recognised, not served
  await A.refused({ request: "RequestGiveMusicTreatment", ThisDN: "1001" }, 51, true); // not planned
  await A.refused({ request: "RequestQueryAddress", ThisDN: "1001", InfoType: "AddressInfoAgentStatus" }, 51);
  await A.refused({ request: "RequestMakeCall", ThisDN: "1001", OtherDN: "1002", MakeCallType: "MakeCallDirectAgent" }, 51);
  await A.refused({ request: "RequestMakeCall", ThisDN: "1005", OtherDN: "1002" }, 41);
  await A.refused({ request: "RequestMakeCall", ThisDN: "1001", OtherDN: "10 02" }, 71);
  await A.refused({ request: "RequestHoldCall", ThisDN: "1001" }, 53, true); // ConnID missing
  await A.refused({ request: "RequestHoldCall", ThisDN: "1001", ConnID: "00000000000000ff" }, 56);
  await A.refused({ request: "RequestMakeCall", ThisDN: "1001", OtherDN: "1001" }, 1140);
  await A.refused({ request: "RequestUnregisterAddress", ThisDN: "1010" }, 41);
  await B.refused({ request: "RequestHoldCall", ThisDN: "1002", ConnID: "00000000000000ff" }, 41);
  await A.refused({ request: "RequestResumeSession", SessionID: A.first.SessionID, EventSequenceNumber: 1 }, 1905);
});

await step("session resume: drop the connection, an event meanwhile, resume on a new connection", async () => {
  const D = await Conn.open("D");
  await D.expect({ request: "RequestRegisterAddress", ThisDN: "1005" }, "EventRegistered");
  const session = D.first.SessionID;
  const last = D.lastSeq;
  D.ws.terminate(); // no close frame: the session is detached, not ended
  await D.closed;
  await sim("/phones/1005/dnd", { on: true });
  await A.refused({ request: "RequestSetDNDOn", ThisDN: "1005" }, 41); // a sequence number moves on
  const E = await Conn.open("E");
  // ctid may not have noticed the drop yet: the resume is allowed all the same (protocol.md 6.9)
  const r = await E.request({ request: "RequestResumeSession", SessionID: session, EventSequenceNumber: last });
  if (r.event !== "EventSessionResumed") throw new Error(JSON.stringify(r));
  await E.wait(on("EventDNDOn", "1005"), "the replayed EventDNDOn");
  await sim("/phones/1005/dnd", { on: false });
  await E.wait(on("EventDNDOff", "1005"), "a live EventDNDOff");
  const F = await Conn.open("F");
  await F.refused({ request: "RequestResumeSession", SessionID: "0".repeat(32), EventSequenceNumber: 3 }, 1901);
  await E.expect({ request: "RequestUnregisterAddress", ThisDN: "1005" }, "EventUnregistered");
  await E.close(1000);
  await F.close(1000);
});

await step("the CSTA link drops (csta-sim fault): EventLinkDisconnected, 54 meanwhile, EventLinkConnected", async () => {
  const from = A.events.length;
  await sim("/faults/drop");
  await A.wait((e) => e.event === "EventLinkDisconnected", "EventLinkDisconnected", from);
  const ans = await A.request({ request: "RequestSetDNDOn", ThisDN: "1004" });
  if (ans.event === "EventError" && ans.ErrorCode !== 54) throw new Error(`expected 54 or EventDNDOn, got ${JSON.stringify(ans)}`);
  await A.wait((e) => e.event === "EventLinkConnected", "EventLinkConnected", from);
  await B.wait((e) => e.event === "EventLinkConnected" && !e.SessionID, "B's EventLinkConnected");
  if (ans.event === "EventDNDOn") await A.expect({ request: "RequestSetDNDOff", ThisDN: "1004" }, "EventDNDOff");
});

await step("unregister and close", async () => {
  await A.expect({ request: "RequestUnregisterAddress", ThisDN: "3101" }, "EventUnregistered");
  await B.close(1000);
  await A.close(1000);
});

finish(seen);

function finish(seenEvents) {
  const names = Object.keys(seenEvents).sort();
  if (!offline) {
    const total = names.reduce((n, k) => n + seenEvents[k], 0);
    console.log(`e2e: ${requestsSent} requests sent, ${framesValidated} event frames validated (${names.length} different events):`);
    console.log("  " + names.map((n) => `${n} ${seenEvents[n]}`).join(", "));
    const never = eventNames.filter((n) => !seenEvents[n]);
    console.log(`e2e: events of the document not seen in this run: ${never.join(", ") || "none"}`);
    if (total !== framesValidated) fail("e2e: counting is broken");
  }
  console.log(failures ? `asyncapi check: ${failures} failure(s)` : "asyncapi check: all passed");
  process.exit(failures ? 1 : 0);
}
