#!/usr/bin/env python3
"""A deliberately low-level Storage SCU on plain sockets, to send what
ordinary toolkits never send: command sets split over several PDVs and PDUs,
tiny data fragments, several PDVs in one PDU, and malformed data sets.

usage: raw_dimse.py HOST PORT CALLING_AE CALLED_AE PLAN.json

PLAN.json is a list of steps, each:
  {"file": PATH,              Part-10 file whose data set is sent
   "cmd_frag": N,             command set cut in PDVs of N bytes (0: one PDV)
   "data_frag": N,            data set cut in PDVs of N bytes (0: max PDU)
   "pdvs_per_pdu": K,         PDVs packed into each P-DATA-TF (default 1);
                             command and data PDVs may share one
   "mutate": null | "truncate" | "garbage" | "odd_length" | "abort_midway"}
"truncate" cuts the data set in the middle of its last element (the header
announces more bytes than follow); "garbage" appends an element with a
nonsense VR and a length running past the end; "odd_length" appends a
well-formed private element whose value has 3 bytes (in the data set's own
encoding), so the data set has odd length; "abort_midway" sends half the data set, then
an A-ABORT, and ends there.

Prints one JSON line per step: {"uid", "status", "comment"}, then
{"end": "released"} (or how the association ended). Exits 0 when the
association was established and released.
"""
import json
import socket
import struct
import sys

APP_CONTEXT = b"1.2.840.10008.3.1.1.1"
IMPL_CLASS = b"1.2.826.0.1.3680043.9.9999.1"


def pad_uid(uid: bytes) -> bytes:
    return uid + b"\x00" if len(uid) % 2 else uid


def item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def ae16(title: str) -> bytes:
    return title.encode().ljust(16, b" ")


def read_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def read_pdu(sock):
    head = read_exact(sock, 6)
    kind, _, length = struct.unpack(">BBI", head)
    return kind, read_exact(sock, length)


def meta_and_dataset(path):
    data = open(path, "rb").read()
    assert data[128:132] == b"DICM", path
    pos = 132
    meta = {}
    while pos + 8 <= len(data):
        group, elem = struct.unpack("<HH", data[pos : pos + 4])
        if group != 2:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            (length,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            head = 12
        else:
            (length,) = struct.unpack("<H", data[pos + 6 : pos + 8])
            head = 8
        meta[elem] = data[pos + head : pos + head + length].rstrip(b"\x00 ")
        pos += head + length
    return meta[0x0002], meta[0x0003], meta[0x0010], data[pos:]


def element(tag_group, tag_elem, value: bytes) -> bytes:
    return struct.pack("<HHI", tag_group, tag_elem, len(value)) + value


def store_command(sop_class: bytes, sop_instance: bytes, msg_id: int) -> bytes:
    body = b"".join(
        [
            element(0, 0x0002, pad_uid(sop_class)),
            element(0, 0x0100, struct.pack("<H", 0x0001)),
            element(0, 0x0110, struct.pack("<H", msg_id)),
            element(0, 0x0700, struct.pack("<H", 0x0000)),
            element(0, 0x0800, struct.pack("<H", 0x0000)),
            element(0, 0x1000, pad_uid(sop_instance)),
        ]
    )
    return element(0, 0x0000, struct.pack("<I", len(body))) + body


def parse_command(data: bytes) -> dict:
    out = {}
    pos = 0
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack("<HHI", data[pos : pos + 8])
        out[(group, elem)] = data[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return out


def associate(sock, calling, called, contexts):
    items = [item(0x10, APP_CONTEXT)]
    for cid, (abstract, ts) in contexts.items():
        sub = item(0x30, abstract) + item(0x40, ts)
        items.append(item(0x20, bytes([cid, 0, 0, 0]) + sub))
    user = item(0x51, struct.pack(">I", 16384)) + item(0x52, IMPL_CLASS)
    items.append(item(0x50, user))
    body = struct.pack(">HH", 1, 0) + ae16(called) + ae16(calling) + b"\x00" * 32 + b"".join(items)
    sock.sendall(struct.pack(">BBI", 1, 0, len(body)) + body)
    kind, payload = read_pdu(sock)
    if kind == 3:
        raise SystemExit(json.dumps({"end": "rejected", "rj": list(payload[1:4])}))
    if kind != 2:
        raise SystemExit(json.dumps({"end": f"unexpected PDU type {kind}"}))
    accepted = {}
    peer_max = 0
    pos = 68
    while pos + 4 <= len(payload):
        kind, _, length = struct.unpack(">BBH", payload[pos : pos + 4])
        value = payload[pos + 4 : pos + 4 + length]
        if kind == 0x21 and value[2] == 0:
            accepted[value[0]] = True
        if kind == 0x50:
            upos = 0
            while upos + 4 <= len(value):
                ukind, _, ulen = struct.unpack(">BBH", value[upos : upos + 4])
                if ukind == 0x51:
                    (peer_max,) = struct.unpack(">I", value[upos + 4 : upos + 8])
                upos += 4 + ulen
        pos += 4 + length
    return accepted, peer_max


def pdvs(cid: int, data: bytes, is_command: bool, frag: int):
    """PDV items (each a bytes object) carrying data, frag bytes at most each."""
    pieces = [data[i : i + frag] for i in range(0, len(data), frag)] if frag else [data]
    out = []
    for i, piece in enumerate(pieces):
        control = (1 if is_command else 0) | (2 if i == len(pieces) - 1 else 0)
        out.append(struct.pack(">IBB", len(piece) + 2, cid, control) + piece)
    return out


def send_pdvs(sock, items, per_pdu):
    for i in range(0, len(items), per_pdu):
        body = b"".join(items[i : i + per_pdu])
        sock.sendall(struct.pack(">BBI", 4, 0, len(body)) + body)


def mutate(dataset: bytes, how, ts: bytes):
    if how == "truncate":
        # Drop the last 100 bytes: the last element's header now announces
        # more bytes than follow.
        return dataset[:-100]
    if how == "garbage":
        # An element after the pixel data with the invalid VR "Q!" and a
        # length far past the end.
        return dataset + struct.pack("<HH", 0x7FE1, 0x0010) + b"Q!" + struct.pack("<H", 0xFFF0) + b"\x01\x02\x03"
    if how == "odd_length":
        # A private creator (7FE1,0010) LO "ODD": every element is well
        # formed, only the value (and so the data set) has odd length.
        if ts == b"1.2.840.10008.1.2":
            return dataset + struct.pack("<HHI", 0x7FE1, 0x0010, 3) + b"ODD"
        if ts == b"1.2.840.10008.1.2.1":
            return dataset + struct.pack("<HH", 0x7FE1, 0x0010) + b"LO" + struct.pack("<H", 3) + b"ODD"
        if ts == b"1.2.840.10008.1.2.2":
            return dataset + struct.pack(">HH", 0x7FE1, 0x0010) + b"LO" + struct.pack(">H", 3) + b"ODD"
        raise SystemExit(f"odd_length: transfer syntax {ts.decode()} not supported")
    return dataset


def read_response(sock):
    command = b""
    while True:
        kind, payload = read_pdu(sock)
        if kind != 4:
            return None, kind
        pos = 0
        while pos < len(payload):
            (length,) = struct.unpack(">I", payload[pos : pos + 4])
            control = payload[pos + 5]
            command += payload[pos + 6 : pos + 4 + length]
            pos += 4 + length
            if control & 2:
                return parse_command(command), kind


def main() -> int:
    host, port, calling, called, plan_path = sys.argv[1:6]
    plan = json.load(open(plan_path))
    steps = []
    contexts = {}
    by_key = {}
    for step in plan:
        sop_class, sop_instance, ts, dataset = meta_and_dataset(step["file"])
        key = (sop_class, ts)
        if key not in by_key:
            cid = 1 + 2 * len(by_key)
            by_key[key] = cid
            contexts[cid] = key
        steps.append((step, by_key[key], sop_class, sop_instance, mutate(dataset, step.get("mutate"), ts)))
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    accepted, peer_max = associate(sock, calling, called, contexts)
    limit = (peer_max or 1 << 20) - 6
    for msg_id, (step, cid, sop_class, sop_instance, dataset) in enumerate(steps, start=1):
        if cid not in accepted:
            print(json.dumps({"uid": sop_instance.decode(), "status": None, "comment": "context not accepted"}), flush=True)
            continue
        command = store_command(sop_class, sop_instance, msg_id)
        per_pdu = step.get("pdvs_per_pdu", 1)
        cmd_items = pdvs(cid, command, True, step.get("cmd_frag", 0))
        data_frag = step.get("data_frag", 0) or limit
        data_frag = min(data_frag, max(1, limit // max(per_pdu, 1) - 6))
        data_items = pdvs(cid, dataset, False, data_frag)
        if step.get("mutate") == "abort_midway":
            # Half the data set, then A-ABORT from the service user.
            send_pdvs(sock, cmd_items + data_items[: len(data_items) // 2], per_pdu)
            sock.sendall(struct.pack(">BBI", 7, 0, 4) + bytes([0, 0, 0, 0]))
            print(json.dumps({"end": "aborted by us"}), flush=True)
            sock.close()
            return 0
        # The last command PDV and the first data PDVs may share a PDU.
        send_pdvs(sock, cmd_items + data_items, per_pdu)
        rsp, kind = read_response(sock)
        if rsp is None:
            print(json.dumps({"end": f"PDU type {kind} instead of a response"}), flush=True)
            return 1
        status = struct.unpack("<H", rsp[(0, 0x0900)])[0]
        comment = rsp.get((0, 0x0902), b"").rstrip(b"\x00 ").decode(errors="replace")
        print(json.dumps({"uid": sop_instance.decode(), "status": status, "comment": comment}), flush=True)
    sock.sendall(struct.pack(">BBI", 5, 0, 4) + b"\x00" * 4)
    kind, _ = read_pdu(sock)
    print(json.dumps({"end": "released" if kind == 6 else f"PDU type {kind}"}), flush=True)
    sock.close()
    return 0 if kind == 6 else 1


if __name__ == "__main__":
    sys.exit(main())
