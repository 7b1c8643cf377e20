"""ctid's driver for pyssimist's mock CSTA server (tests/pyssimist.rs).

This is our own code. pyssimist (PyPI, GPL-3.0) is imported from the throwaway venv the test
installs; nothing of it is copied here. The driver runs `common.server.CstaServer` on
127.0.0.1:PORT (0 = any free port), prints `PORT <n>` on stdout once it listens, and plays the
switch behind it for a basic call, the way an OpenScape Voice CSTA interface would:

* the mock itself accepts the connection, speaks first (SystemStatus `enabled`), answers
  SystemRegister and MonitorStart (monitorCrossRefIDs 0, 1, … in its order);
* MakeCall A→B (no handler in the mock): MakeCallResponse, then ServiceInitiated and
  Originated to A's monitor, Delivered to both monitors; B answers after `ANSWER_DELAY`:
  Established to both;
* ClearConnection: ClearConnectionResponse, then ConnectionCleared of the cleared party to both
  monitors and of the remaining party to its own monitor;
* any other request: CSTAErrorCode `operation/serviceNotSupported`.

Every message is built with pyssimist's own API (`buildMessageFromFile` on its CstaPool
templates, `buildMessage` for the two messages it has no template for) and sent on the mock's
link. Its event templates carry ConnectionIDs without a callID; the driver adds the callID (a
real Connector always sends one). The driver exits when its stdin closes.

pyssimist 1.0.3 defects worked around below (none changes what goes on the wire):
1. `CstaServer.__init__` runs `del self.send`, which raises AttributeError (`send` is a method,
   not an instance attribute): `_SendSlot` gives it an instance attribute to delete.
2. `CstaApplication.send` asserts `user.monitorCrossRefID` for every message a user sends, but
   the mock only ever fills `user.parameters["monitorCrossRefID"]`, so its SystemStatus,
   SystemRegisterResponse and MonitorStartResponse all fail: the driver sets the attribute for
   the mock's own user after each `cleanup()` and for a device before the mock's MonitorStart
   handler runs.
3. A message without a handler is appended to `csta_endpoint.message_buffer`, a dict: the
   AttributeError makes the mock's select loop unregister the socket and go deaf for good.
   `_Unhandled` is the list it expects; it answers requests with CSTAErrorCode.
"""

import os
import sys
import threading
import time
import xml.etree.ElementTree as ET

from common.server import CstaServer, SipServer
from csta.CstaEndpoint import get_xml
from csta.CstaParser import buildMessage, buildMessageFromFile

ED4 = "http://www.ecma-international.org/standards/ecma-323/csta/ed4"
EVENT_INVOKE_ID = 9999
ANSWER_DELAY = 0.3

ERROR_XML = """<?xml version="1.0" encoding="UTF-8"?>
<CSTAErrorCode xmlns="%s"><operation>serviceNotSupported</operation></CSTAErrorCode>""" % ED4

MONITOR_STOP_RESPONSE_XML = (
    """<?xml version="1.0" encoding="UTF-8"?><MonitorStopResponse xmlns="%s"/>""" % ED4
)


def log(*parts):
    print("driver:", *parts, file=sys.stderr, flush=True)


class _SendSlot(SipServer):
    """Sits between CstaServer and SipServer in the MRO (defect 1)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.send = None


class _Unhandled(list):
    """Where the mock puts messages nobody handles (defect 3)."""

    def __init__(self, server):
        super().__init__()
        self.server = server

    def append(self, message):
        log("no handler for", message.event, "invoke", message.eventid)
        if message.is_request():
            self.server.transmit(buildMessage(ERROR_XML, {}, eventid=message.eventid))


class Switch(CstaServer, _SendSlot):
    def __init__(self, port):
        super().__init__("127.0.0.1", port)
        self.xrefs = {}  # device → monitorCrossRefID the mock gave it
        self.calls = {}  # callID → [calling, called]
        self.next_call = 1
        self.state_lock = threading.Lock()
        self.on("MonitorStart", Switch.monitor_start)
        self.on("MonitorStop", Switch.monitor_stop)
        self.on("MakeCall", Switch.make_call)
        self.on("ClearConnection", Switch.clear_connection)

    # ---------------------------------------------------------------- pyssimist plumbing

    def cleanup(self):
        # Called by the mock for every accepted connection: a fresh CstaApplication.
        super().cleanup()
        self.user.monitorCrossRefID = self.user.parameters["monitorCrossRefID"]  # defect 2
        self.csta_endpoint.message_buffer = _Unhandled(self)  # defect 3
        with self.state_lock:
            self.xrefs.clear()
            self.calls.clear()
        log("new connection")

    def transmit(self, message):
        self.csta_endpoint.link.send(message.contents())

    def respond(self, request, template, **values):
        """Answer `request` with pyssimist's `template`, same invoke ID."""
        self.transmit(buildMessageFromFile(get_xml(template), values, eventid=request.eventid))

    def event(self, template, monitored, call_id, **values):
        """Send pyssimist's event `template` on the monitor of `monitored`."""
        with self.state_lock:
            xref = self.xrefs.get(monitored)
        if xref is None:
            return
        values["CSTA_USE_MONITOR_CROSS_REF_ID"] = xref
        m = buildMessageFromFile(get_xml(template), values, eventid=EVENT_INVOKE_ID)
        with_call_id(m, call_id)
        self.transmit(m)

    # ---------------------------------------------------------------- handlers

    @staticmethod
    def monitor_start(server, request):
        device = request["deviceObject"]
        if device:
            # defect 2: the mock's handler sends as this user before it knows the attribute
            server.csta_endpoint.new_user(device).monitorCrossRefID = str(server.refid)
        CstaServer.monitor_user(server, request)
        if device:
            xref = server.get_user(device).parameters["monitorCrossRefID"]
            with server.state_lock:
                server.xrefs[device] = xref
            log("monitoring", device, "as", xref)

    @staticmethod
    def monitor_stop(server, request):
        xref = request["monitorCrossRefID"]
        with server.state_lock:
            for device, x in list(server.xrefs.items()):
                if str(x) == xref:
                    del server.xrefs[device]
        server.transmit(buildMessage(MONITOR_STOP_RESPONSE_XML, {}, eventid=request.eventid))

    @staticmethod
    def make_call(server, request):
        a, b = request["callingDevice"], request["calledDirectoryNumber"]
        with server.state_lock:
            call_id = "%016X" % (0xFF00010000000000 + server.next_call)
            server.next_call += 1
            server.calls[call_id] = [a, b]
        log("MakeCall", a, "->", b, "callID", call_id)
        m = buildMessageFromFile(get_xml("MakeCallResponse"), {"deviceID": a}, request.eventid)
        with_call_id(m, call_id)
        server.transmit(m)
        common = {"callingDevice": a, "calledDevice": b, "networkCallingDevice": a,
                  "networkCalledDevice": b}
        server.event("ServiceInitiatedEvent", a, call_id, deviceID=a, initiatingDevice=a,
                     localConnectionInfo="initiated", cause="makeCall",
                     networkCallingDevice=a, networkCalledDevice=b)
        server.event("OriginatedEvent", a, call_id, deviceID=a, localConnectionInfo="connected",
                     cause="newCall", **common)
        for monitored, local in ((a, "connected"), (b, "alerting")):
            server.event("DeliveredEvent", monitored, call_id, deviceID=b, alertingDevice=b,
                         deviceIdentifier=b, numberDialed=b, localConnectionInfo=local,
                         cause="newCall", **common)
        time.sleep(ANSWER_DELAY)
        for monitored in (a, b):
            server.event("EstablishedEvent", monitored, call_id, deviceID=b, answeringDevice=b,
                         numberDialed=b, localConnectionInfo="connected", cause="newCall",
                         **common)

    @staticmethod
    def clear_connection(server, request):
        call_id = request["callID"]
        device = request["deviceID"]
        with server.state_lock:
            parties = server.calls.pop(call_id, None)
        if parties is None or device not in parties:
            log("ClearConnection of an unknown connection", call_id, device)
            server.transmit(buildMessage(ERROR_XML, {}, eventid=request.eventid))
            return
        server.respond(request, "ClearConnectionResponse")
        for monitored in parties:
            local = "null" if monitored == device else "connected"
            server.event("ConnectionClearedEvent", monitored, call_id, deviceID=device,
                         releasingDevice=device, localConnectionInfo=local,
                         cause="normalClearing")
        for other in parties:
            if other != device:
                server.event("ConnectionClearedEvent", other, call_id, deviceID=other,
                             releasingDevice=other, localConnectionInfo="null",
                             cause="normalClearing")


def with_call_id(message, call_id):
    """Give every ConnectionID of `message` (an element with a deviceID child) a callID."""
    for element in message.body.root.iter():
        children = [child.tag.rsplit("}", 1)[-1] for child in element]
        if "deviceID" in children and "callID" not in children:
            call = ET.Element("{%s}callID" % ED4)
            call.text = call_id
            element.insert(0, call)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    out = sys.stdout
    sys.stdout = sys.stderr  # pyssimist prints progress; stdout carries only our PORT line
    server = Switch(port)
    server.serve_in_background()
    deadline = time.time() + 10
    while server.port == 0 and time.time() < deadline:
        time.sleep(0.01)
    print("PORT", server.port, file=out, flush=True)
    sys.stdin.read()  # the test closes our stdin (or dies): stop
    os._exit(0)


if __name__ == "__main__":
    main()
