# tests/tools/ws-echo-server.py PORT - a minimal WebSocket echo server (RFC 6455, stdlib only),
# run inside an agent sandbox by the preview proxy test: it answers the upgrade, then echoes
# every text or binary frame back prefixed with "echo:" until a close frame.
import base64, hashlib, socket, struct, sys

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(8)


def serve(c):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(4096)
        if not chunk:
            return
        data += chunk
    key = ""
    for line in data.decode("latin-1").split("\r\n"):
        if line.lower().startswith("sec-websocket-key:"):
            key = line.split(":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    buf = data.split(b"\r\n\r\n", 1)[1]

    def read(n):
        nonlocal buf
        while len(buf) < n:
            x = c.recv(65536)
            if not x:
                raise EOFError
            buf += x
        r, buf = buf[:n], buf[n:]
        return r

    while True:
        h = read(2)
        op, n = h[0] & 15, h[1] & 127
        if n == 126:
            n = struct.unpack(">H", read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", read(8))[0]
        mask = read(4) if h[1] & 128 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(read(n)))
        if op == 8:
            c.sendall(b"\x88\x00")
            return
        out = b"echo:" + payload
        ln = bytes([len(out)]) if len(out) < 126 else b"\x7e" + struct.pack(">H", len(out))
        c.sendall(bytes([0x80 | op]) + ln + out)


while True:
    conn, _ = srv.accept()
    try:
        serve(conn)
    except Exception:
        pass
    conn.close()
