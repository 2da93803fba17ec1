#!/usr/bin/env python3
"""A PACS made with pynetdicom: accepts every storage SOP class in every
transfer syntax, writes each received data set bit-exactly as a Part-10 file
<OUT>/<SOPInstanceUID>.<n>.dcm, and answers 0x0000, except for the SOP
Instance UIDs given with --refuse UID=STATUS (hex), which get that status and
are not stored (with --refuse-once UID=A700, only the first time it is
sent), and those given with --abort-on UID, on which it aborts the
association (A-ABORT) instead of answering, every time they are sent. With
--warn UID=B000 it stores the instance and answers that warning status; with
--delay SECONDS it waits that long before answering each C-STORE (a slow
archive); with --abort-all-for SECONDS it aborts on every C-STORE for that
long after it starts (a PACS whose storage or database is down).

usage: pacs_scp.py PORT AE_TITLE OUT_DIR [--refuse UID=A900]... [--refuse-once UID=A700]...
                   [--abort-on UID]...
                   [--warn UID=B000]... [--delay SECONDS] [--abort-all-for SECONDS]
Prints "ready" once listening, and one line per C-STORE received
(STORED, REFUSED or ABORTED, then the UID; STORED then gives the DIMSE
priority: 0 medium, 1 high, 2 low).
"""
import io
import itertools
import os
import sys
import threading
import time

from pydicom.filewriter import write_file_meta_info
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

ALL_TS = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
]


def uid_statuses(args, flag):
    """Takes every `flag UID=STATUS` (hex) out of args."""
    found = {}
    while flag in args:
        i = args.index(flag)
        uid, status = args[i + 1].split("=")
        found[uid] = int(status, 16)
        del args[i : i + 2]
    return found


def main() -> int:
    args = sys.argv[1:]
    refuse = uid_statuses(args, "--refuse")
    refuse_once = uid_statuses(args, "--refuse-once")
    warn = uid_statuses(args, "--warn")
    delay = 0.0
    if "--delay" in args:
        i = args.index("--delay")
        delay = float(args[i + 1])
        del args[i : i + 2]
    abort_all_until = 0.0
    if "--abort-all-for" in args:
        i = args.index("--abort-all-for")
        abort_all_until = time.monotonic() + float(args[i + 1])
        del args[i : i + 2]
    abort_on = set()
    while "--abort-on" in args:
        i = args.index("--abort-on")
        abort_on.add(args[i + 1])
        del args[i : i + 2]
    # Every association request is rejected (A-ASSOCIATE-RJ, calling AE
    # title not recognised): a PACS not yet configured for this box.
    reject_associations = "--reject-associations" in args
    if reject_associations:
        args.remove("--reject-associations")
    port, ae_title, out = int(args[0]), args[1], args[2]
    counter = itertools.count()
    lock = threading.Lock()

    def on_store(event):
        uid = str(event.request.AffectedSOPInstanceUID)
        if delay:
            time.sleep(delay)
        if uid in refuse:
            print(f"REFUSED {uid} 0x{refuse[uid]:04X}", flush=True)
            return refuse[uid]
        with lock:
            once = refuse_once.pop(uid, None)
        if once is not None:
            print(f"REFUSED {uid} 0x{once:04X}", flush=True)
            return once
        if uid in abort_on or time.monotonic() < abort_all_until:
            print(f"ABORTED {uid}", flush=True)
            # Blocks until the A-ABORT is sent and the connection closed, so
            # the status returned below never reaches the peer.
            event.assoc.abort(block=True)
            return 0xA700
        with lock:
            n = next(counter)
        buf = io.BytesIO()
        buf.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(buf, event.file_meta, enforce_standard=True)
        buf.write(event.request.DataSet.getvalue())
        tmp = os.path.join(out, f".{uid}.{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
        os.rename(tmp, os.path.join(out, f"{uid}.{n}.dcm"))
        print(f"STORED {uid} priority {event.request.Priority}", flush=True)
        return warn.get(uid, 0x0000)

    ae = AE(ae_title=ae_title)
    ae.maximum_associations = 16
    ae.network_timeout = 120
    ae.dimse_timeout = 120
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TS)
    ae.add_supported_context(Verification)
    if reject_associations:
        ae.require_calling_aet = ["NOT-THIS-BOX"]
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    print("ready", flush=True)
    try:
        threading.Event().wait()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
