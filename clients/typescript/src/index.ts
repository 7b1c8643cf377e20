// @ctid/client: the client (client.ts) and the message types generated from docs/asyncapi.yaml
// (messages.ts).
export * from "./client.js";
export * from "./messages.js";
