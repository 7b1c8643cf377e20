// Type checks of the generated messages and the client's API: `npm run check` compiles this file;
// every @ts-expect-error must be an error, or the check fails.
import { CtidClient, EVENT_NAMES, REQUEST_NAMES, isEvent } from "../src/index.js";
import type { Event, EventTypes, KVList, OutgoingRequest, Request, RequestMakeCall, RequestTypes } from "../src/index.js";

const client = new CtidClient();

// A request of the document, its ReferenceID left to the client.
const ok: OutgoingRequest = { request: "RequestRegisterAddress", ThisDN: "1001", RegisterMode: "ModeMonitor" };
void client.request(ok);
// @ts-expect-error an enumeration value that is not in the document
const badMode: OutgoingRequest = { request: "RequestRegisterAddress", ThisDN: "1001", RegisterMode: "Share" };
// @ts-expect-error a required attribute missing (OtherDN)
const noOther: OutgoingRequest = { request: "RequestMakeCall", ThisDN: "1001" };
// @ts-expect-error an attribute of the wrong type
const badRef: Request = { request: "RequestQueryServer", ReferenceID: "7" };
// @ts-expect-error not a request of the document
const unknown: OutgoingRequest = { request: "RequestFoo" };
void [badMode, noOther, badRef, unknown];

// KV lists: both forms, nested, binary.
const kv: KVList = { Case: [["Tag", "vip"], ["Tag", "fr"]], Blob: { $binary: "AAE=" }, Score: 42 };
// @ts-expect-error booleans are not KV values
const badKv: KVList = { flag: true };
void [kv, badKv];

// The maps from name to type, and narrowing by name.
const mk: RequestTypes["RequestMakeCall"] = { request: "RequestMakeCall", ReferenceID: 1, ThisDN: "1001", OtherDN: "1002" } satisfies RequestMakeCall;
void mk;
function onEvent(ev: Event): string | undefined {
  if (isEvent(ev, "EventDialing")) return ev.ConnID; // narrowed
  if (ev.event === "EventError") return String(ev.ErrorCode + 0);
  return undefined;
}
void onEvent;
const names: ReadonlyArray<keyof RequestTypes> = REQUEST_NAMES;
const events: ReadonlyArray<keyof EventTypes> = EVENT_NAMES;
void [names, events];

async function helpers(): Promise<void> {
  const dialing = await client.makeCall("1001", "1002");
  const conn: string | undefined = dialing.ConnID; // absent when the answer was EventACK
  // @ts-expect-error ConnID may be absent (EventACK)
  const sure: string = dialing.ConnID;
  const reg = await client.register("2001");
  const host: string | undefined = reg.Extensions?.HOST_DN;
  void [conn, sure, host];
}
void helpers;
