# tests/tools/ws-client.py URL [BEARER-TOKEN] - a minimal WebSocket client (stdlib only) for
# the preview proxy test: upgrades, checks Sec-WebSocket-Accept, sends "hello-ws" (masked, as a
# client must), prints the status line, "accept-ok"/"accept-bad" and the echoed text, then
# closes. Exit 0 even on a refused upgrade (the status line says what happened).
import base64, hashlib, os, socket, struct, sys
from urllib.parse import urlsplit

u = urlsplit(sys.argv[1])
token = sys.argv[2] if len(sys.argv) > 2 else ""
s = socket.create_connection((u.hostname, u.port), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
path = u.path + ("?" + u.query if u.query else "")
auth = "Authorization: Bearer %s\r\n" % token if token else ""
s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
           % (path, u.hostname, u.port, key, auth)).encode())
resp = b""
while b"\r\n\r\n" not in resp:
    x = s.recv(4096)
    if not x:
        break
    resp += x
head, _, buf = resp.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode("latin-1"))
if b" 101 " not in head.split(b"\r\n")[0] + b" ":
    sys.exit(0)
want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
hdrs = {}
for line in head.split(b"\r\n")[1:]:
    k, _, v = line.partition(b":")
    hdrs[k.strip().lower()] = v.strip()
print("accept-ok" if hdrs.get(b"sec-websocket-accept") == want else "accept-bad")


def read(n):
    global buf
    while len(buf) < n:
        x = s.recv(65536)
        if not x:
            raise EOFError
        buf += x
    r, buf = buf[:n], buf[n:]
    return r


msg = b"hello-ws"
mask = os.urandom(4)
s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
h = read(2)
n = h[1] & 127
if n == 126:
    n = struct.unpack(">H", read(2))[0]
print(read(n).decode())
s.sendall(bytes([0x88, 0x80]) + os.urandom(4))
s.close()
