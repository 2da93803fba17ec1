#!/usr/bin/env python3
"""Tries one association with pynetdicom and prints, as one JSON line, how it
ended: accepted (then released), or rejected with the exact result, source
and reason/diagnostic bytes of the A-ASSOCIATE-RJ PDU.

usage: assoc_probe.py HOST PORT CALLING_AE CALLED_AE [HOLD_SECONDS]
With HOLD_SECONDS, an accepted association is held open that long (after
printing "established") before the C-ECHO and the release.
"""
import json
import sys
import time

from pynetdicom import AE, evt
from pynetdicom.pdu import A_ASSOCIATE_RJ

VERIFICATION = "1.2.840.10008.1.1"


def main() -> int:
    host, port, calling, called = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    seen = {}

    def on_pdu(event):
        if isinstance(event.pdu, A_ASSOCIATE_RJ):
            seen["result"] = event.pdu.result
            seen["source"] = event.pdu.source
            seen["reason"] = event.pdu.reason_diagnostic

    ae = AE(ae_title=calling)
    ae.acse_timeout = 10
    ae.network_timeout = 10
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(host, port, ae_title=called, evt_handlers=[(evt.EVT_PDU_RECV, on_pdu)])
    if "result" in seen:
        # The A-ASSOCIATE-RJ PDU as received. (pynetdicom itself sometimes
        # reports such an association as aborted: when the acceptor closes
        # the connection right after the RJ, its state machine may see the
        # close first. It does so against DCMTK's storescp --refuse too.)
        out = {"outcome": "rejected", **seen}
    elif assoc.is_established:
        if len(sys.argv) > 5:
            print("established", flush=True)
            time.sleep(float(sys.argv[5]))
        status = assoc.send_c_echo()
        assoc.release()
        out = {"outcome": "accepted", "echo_status": int(status.Status) if "Status" in status else None}
    elif assoc.is_rejected:
        out = {"outcome": "rejected without an A-ASSOCIATE-RJ PDU seen"}
    elif assoc.is_aborted:
        out = {"outcome": "aborted"}
    else:
        out = {"outcome": "failed"}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
