"""An audit repository for the tests: accepts syslog over TLS (RFC 5425)
with Python's ssl module (OpenSSL) and appends every byte received, frames
as they came, to OUT. TLS 1.2 or later only, as BCP 195 asks.

usage: syslog_tls_server.py PORT CERT KEY OUT [--min-tls 1.2|1.3]
"""
import argparse
import socket
import ssl
import sys
import threading


def serve(conn, out, lock):
    with conn:
        while True:
            try:
                data = conn.recv(65536)
            except (ssl.SSLError, OSError) as e:
                print(f"connection ended: {e}", file=sys.stderr, flush=True)
                return
            if not data:
                return
            with lock:
                out.write(data)
                out.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("cert")
    p.add_argument("key")
    p.add_argument("out")
    p.add_argument("--min-tls", default="1.2", choices=["1.2", "1.3"])
    a = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[a.min_tls]
    ctx.load_cert_chain(a.cert, a.key)
    lock = threading.Lock()
    with open(a.out, "ab") as out, socket.create_server(("127.0.0.1", a.port)) as s:
        print(f"listening on {a.port}", flush=True)
        while True:
            raw, peer = s.accept()
            try:
                conn = ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as e:
                print(f"handshake with {peer} failed: {e}", file=sys.stderr, flush=True)
                raw.close()
                continue
            print(f"connection from {peer}: {conn.version()}", flush=True)
            threading.Thread(target=serve, args=(conn, out, lock), daemon=True).start()


if __name__ == "__main__":
    main()
