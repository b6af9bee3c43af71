#!/usr/bin/env python3
"""A toy host process for switchboard-host (README, "Native hosts: switchboard-host").

It reads one JSON object a line on stdin and writes one a line on stdout. It answers each
viewer's offer (with a placeholder SDP: a real host hands the offer to its WebRTC stack and
the `iceServers` it was given), reports itself busy while a viewer is connected and idle when
the last one leaves. What it hears it notes on stderr.
"""

import json
import sys

viewers = set()


def send(message):
    print(json.dumps(message), flush=True)


def note(text):
    print(f"host.py: {text}", file=sys.stderr, flush=True)


for line in sys.stdin:
    message = json.loads(line)
    kind = message.get("type")
    if kind == "iceServers":
        note(f"room {message['roomId']}, {len(message['iceServers'])} ICE servers")
    elif kind == "identified":
        note(f"identified in room {message['roomId']}")
    elif kind == "producer" and message.get("description", {}).get("type") == "offer":
        viewer = message["sender"]
        note(f"offer from {viewer}")
        if not viewers:
            send({"control": "status", "status": "busy"})
        viewers.add(viewer)
        answer = "answer to " + message["description"]["sdp"]
        send({"action": "handshake", "data": {"type": "producer", "receiver": viewer,
                                              "description": {"type": "answer", "sdp": answer}}})
    elif kind == "clientDisconnect":
        note(f"{message['clientId']} left")
        viewers.discard(message["clientId"])
        if not viewers:
            send({"control": "status", "status": "idle"})
    else:
        note(f"heard {line.strip()}")
