#!/usr/bin/env python3
"""A second, independent scanner: C-STOREs every DICOM file given (files or
folders) over one association with pynetdicom, sending each data set's bytes
exactly as they are in the file (no decode/re-encode).

Prints one line per instance: "STORED <SOPInstanceUID> 0xSSSS" on success,
"FAILED <SOPInstanceUID> 0xSSSS <comment>" otherwise; exits 0 only if every
instance was stored.

Prints "SENDING <SOPInstanceUID>" as each C-STORE starts.

usage: send_pynetdicom.py HOST PORT CALLING_AE CALLED_AE [--max-pdu N] [--pdu-delay S] PATH...
  --max-pdu N      our maximum receive PDU length (0 = unlimited)
  --pdu-delay S    wait S seconds before each P-DATA PDU (a slow link)
"""
import os
import sys
import time

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config
from pynetdicom.transport import AssociationSocket

_config.STORE_SEND_CHUNKED_DATASET = True


def files_in(paths):
    for p in paths:
        if os.path.isdir(p):
            for name in sorted(os.listdir(p)):
                full = os.path.join(p, name)
                if os.path.isfile(full):
                    yield full
        else:
            yield p


def slow_link(delay):
    send = AssociationSocket.send

    def delayed(self, bytestream):
        if bytestream[:1] == b"\x04":  # P-DATA-TF
            time.sleep(delay)
        send(self, bytestream)

    AssociationSocket.send = delayed


def main() -> int:
    args = sys.argv[1:]
    max_pdu = None
    if "--max-pdu" in args:
        i = args.index("--max-pdu")
        max_pdu = int(args[i + 1])
        del args[i : i + 2]
    if "--pdu-delay" in args:
        i = args.index("--pdu-delay")
        slow_link(float(args[i + 1]))
        del args[i : i + 2]
    host, port, calling, called = args[0], int(args[1]), args[2], args[3]
    files = list(files_in(args[4:]))
    metas = []
    contexts = set()
    for f in files:
        meta = read_file_meta_info(f)
        metas.append((f, str(meta.MediaStorageSOPInstanceUID)))
        contexts.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
    ae = AE(ae_title=calling)
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    ae.network_timeout = 60
    for sop_class, ts in sorted(contexts):
        ae.add_requested_context(sop_class, [ts])
    kwargs = {} if max_pdu is None else {"max_pdu": max_pdu}
    assoc = ae.associate(host, port, ae_title=called, **kwargs)
    if not assoc.is_established:
        print("ASSOCIATION FAILED", flush=True)
        return 2
    failures = 0
    for path, uid in metas:
        print(f"SENDING {uid}", flush=True)
        status = assoc.send_c_store(path)
        if "Status" not in status:
            print(f"FAILED {uid} none no response", flush=True)
            failures += 1
            break
        code = int(status.Status)
        if code == 0:
            print(f"STORED {uid} 0x{code:04X}", flush=True)
        else:
            comment = str(status.get("ErrorComment", ""))
            print(f"FAILED {uid} 0x{code:04X} {comment}", flush=True)
            failures += 1
    assoc.release()
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
