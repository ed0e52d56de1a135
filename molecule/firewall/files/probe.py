"""Try one TCP connection to HOST PORT and print what happened: open, refused, filtered."""

import errno
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
try:
    socket.create_connection((host, port), timeout=3).close()
    print("open")
except ConnectionRefusedError:
    print("refused")  # nothing listens (no firewall in the way)
except TimeoutError:
    print("filtered")  # dropped
except OSError as exc:
    # firewalld rejects with icmp admin-prohibited, which Linux reports as EHOSTUNREACH.
    print("filtered" if exc.errno == errno.EHOSTUNREACH else f"error {exc}")
