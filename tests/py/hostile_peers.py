#!/usr/bin/env python3
"""Misbehaving peers at the DICOM port, for the hostile-input tests. Prints
one JSON line with what it saw.

usage: hostile_peers.py HOST PORT stall COUNT SECONDS
           opens COUNT connections, sends 3 bytes of a PDU header on each,
           and holds them SECONDS (slowloris); reports how many the server
           closed early
       hostile_peers.py HOST PORT huge
           sends an A-ASSOCIATE-RQ header announcing a 4 GiB PDU and
           a few bytes of it; reports how the server answered
       hostile_peers.py HOST PORT flood COUNT
           COUNT connections opened and closed, about 1000 a second;
           reports the attempts per second
"""
import json
import socket
import struct
import sys
import time


def stall(host, port, count, seconds):
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"\x01\x00\x00")
        socks.append(s)
    print(json.dumps({"opened": len(socks)}), flush=True)
    deadline = time.time() + seconds
    closed = 0
    for s in socks:
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            if s.recv(1) == b"":
                closed += 1
        except socket.timeout:
            pass
        except OSError:
            closed += 1
    time.sleep(max(0.0, deadline - time.time()))
    for s in socks:
        s.close()
    print(json.dumps({"stalled": count, "closed_early": closed}), flush=True)


def huge(host, port):
    s = socket.create_connection((host, port), timeout=10)
    t0 = time.time()
    s.sendall(b"\x01\x00" + struct.pack(">I", 0xFFFFFFFF) + b"\x00\x01" + b"\x00" * 64)
    got = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except (socket.timeout, ConnectionResetError):
        pass
    answer = {0x07: "A-ABORT", 0x03: "A-ASSOCIATE-RJ"}.get(got[0], hex(got[0])) if got else "closed"
    print(json.dumps({"answer": answer, "seconds": round(time.time() - t0, 3)}), flush=True)


def flood(host, port, count):
    """Paced at about 1000 attempts per second."""
    t0 = time.time()
    refused = 0
    for k in range(count):
        ahead = t0 + k / 1000.0 - time.time()
        if ahead > 0:
            time.sleep(ahead)
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.close()
        except OSError:
            refused += 1
    dt = time.time() - t0
    print(json.dumps({"attempts": count, "refused": refused, "per_second": round(count / dt)}), flush=True)


def main():
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "stall":
        stall(host, port, int(sys.argv[4]), float(sys.argv[5]))
    elif mode == "huge":
        huge(host, port)
    elif mode == "flood":
        flood(host, port, int(sys.argv[4]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
