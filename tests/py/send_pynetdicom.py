#!/usr/bin/env python3
"""A second, independent scanner: C-STOREs every DICOM file given (files or
folders) over one association with pynetdicom, sending each data set's bytes
exactly as they are in the file (no decode/re-encode).

Prints one line per instance: "STORED <SOPInstanceUID> 0xSSSS" on success,
"FAILED <SOPInstanceUID> 0xSSSS <comment>" otherwise; exits 0 only if every
instance was stored.

Prints "SENDING <SOPInstanceUID>" as each C-STORE starts. On a failure it
also prints pynetdicom's own debug log (the last records, kept in memory),
so that a run that fails once in a while can be told apart from ours.

usage: send_pynetdicom.py HOST PORT CALLING_AE CALLED_AE [--max-pdu N] [--pdu-delay S] PATH...
  --max-pdu N      our maximum receive PDU length (0 = unlimited)
  --pdu-delay S    wait S seconds before each P-DATA PDU (a slow link)
"""
import collections
import logging
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


class Recent(logging.Handler):
    """Keeps the last records, formatted only if they are printed."""

    def __init__(self, keep):
        super().__init__(logging.DEBUG)
        self.records = collections.deque(maxlen=keep)
        self.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d %(threadName)s %(levelname)s %(message)s", "%H:%M:%S")
        )

    def emit(self, record):
        self.records.append(record)

    def dump(self):
        print("--- pynetdicom's last log records ---", file=sys.stderr)
        for record in self.records:
            print(self.format(record), file=sys.stderr)
        sys.stderr.flush()


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
    recent = Recent(400)
    logger = logging.getLogger("pynetdicom")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(recent)
    logger.propagate = False
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
        recent.dump()
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
    if failures:
        recent.dump()
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
