"""The client wire protocol (proto/README.md) spoken directly, for tests that play a hostile or
misbehaving client: whatever libpktbroker would refuse to send, this sends."""

import socket
import struct

MAGIC, VERSION = 0x5042, 1
HELLO, WELCOME, SUBSCRIBE, SUBSCRIBED = 1, 2, 3, 4
PACKET, VERDICT, VERDICT_BATCH, ERROR, PING, PONG, PACKET_BATCH = 6, 7, 8, 15, 16, 17, 18
ACCEPT, DROP, REPEAT, PASS = 0, 1, 2, 3
EXCLUSIVE, CHAIN, BALANCE = 0, 1, 2
ROLE_OBSERVE, ROLE_VERDICT, ROLE_MANAGE, ROLE_CHANNEL = 1, 2, 4, 8
(CHANNEL_CREATE, CHANNEL_JOIN, CHANNEL_JOINED, CHANNEL_SEND, CHANNEL_FRAMES, CHANNEL_LEAVE,
 CHANNEL_LEFT, CHANNEL_FLOW, CHANNELS_REQUEST, CHANNELS_REPLY, CHANNEL_KICK, OK) = range(21, 33)
RECEIVE, SEND, MANAGE = 1, 2, 4


def string(text):
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def opt_u32(value):
    return struct.pack("!BI", 0, 0) if value is None else struct.pack("!BI", 1, value)


def frame(kind, body=b"", request_id=0):
    return struct.pack("!HBBIII", MAGIC, VERSION, kind, len(body), request_id, 0) + body


FEATURE_PACKET_BATCH = 1


def hello(name, roles=ROLE_VERDICT | ROLE_OBSERVE, features=0):
    """HELLO; the features word goes only when not 0, as libpktbroker sends it."""
    body = string(name) + struct.pack("!BBB", roles, VERSION, VERSION)
    return frame(HELLO, body + (struct.pack("!I", features) if features else b""), 1)


def subscribe(selector="", name="", mode=0, clash=EXCLUSIVE, priority=0, timeout_ms=1000,
              fallback=ACCEPT, request_id=2):
    body = (string(name) + string(selector) +
            struct.pack("!BBiIIB", mode, clash, priority, 0xffff, timeout_ms, fallback))
    return frame(SUBSCRIBE, body, request_id)


def verdict(token, code=ACCEPT, mark=None, payload=b""):
    return frame(VERDICT, struct.pack("!QB", token, code) + opt_u32(mark) +
                 struct.pack("!I", len(payload)) + payload)


def verdict_batch(entries):
    """entries: (token, code) pairs."""
    body = struct.pack("!I", len(entries))
    for token, code in entries:
        body += struct.pack("!QB", token, code) + opt_u32(None)
    return frame(VERDICT_BATCH, body)


def channel_join(name, rights=0, request_id=3):
    return frame(CHANNEL_JOIN, string(name) + struct.pack("!B", rights), request_id)


def channel_send(channel_id, data):
    return frame(CHANNEL_SEND, struct.pack("!II", channel_id, len(data)) + data)


def channel_leave(channel_id, request_id=4):
    return frame(CHANNEL_LEAVE, struct.pack("!I", channel_id), request_id)


def parse_frames(body):
    """CHANNEL_FRAMES: (channel_id, [(from_member, bytes), ...])."""
    channel_id, count = struct.unpack_from("!II", body)
    frames, at = [], 8
    for _ in range(count):
        sender, size = struct.unpack_from("!II", body, at)
        frames.append((sender, body[at + 8:at + 8 + size]))
        at += 8 + size
    return channel_id, frames


def parse_packet(body):
    token, subscription, _, queue, _, _, mark = struct.unpack_from("!QIBHBBI", body)
    # in/out ifindex (8), uid and gid (opt_u32: 5 each), timestamp (8), wire length (4)
    (length,) = struct.unpack_from("!I", body, 51)
    return {"token": token, "subscription": subscription, "queue": queue, "mark": mark,
            "payload": body[55:55 + length]}


def parse(datagram):
    """(type, request_id, decoded): PACKET and PACKET_BATCH decode to lists of packets, ERROR to
    (code, text), the rest to their raw bodies."""
    _, _, kind, length, request_id, _ = struct.unpack_from("!HBBIII", datagram)
    body = datagram[16:16 + length]
    if kind == PACKET:
        return kind, request_id, [parse_packet(body)]
    if kind == PACKET_BATCH:
        (count,) = struct.unpack_from("!I", body)
        packets, at = [], 4
        for _ in range(count):
            (size,) = struct.unpack_from("!I", body, at)
            packets.append(parse_packet(body[at + 4:at + 4 + size]))
            at += 4 + size
        return PACKET, request_id, packets
    if kind == ERROR:
        code, size = struct.unpack_from("!HH", body)
        return kind, request_id, (code, body[4:4 + size].decode(errors="replace"))
    return kind, request_id, body


class WireClient:
    """A raw SOCK_SEQPACKET connection to the broker."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(path)  # blocking: waits while the broker's backlog is full
        self.sock.settimeout(timeout)
        self.packets = []  # PACKETs read while waiting for something else

    def send(self, datagram):
        self.sock.send(datagram)

    def receive(self):
        """The next message, or None when the broker closed the connection."""
        data = self.sock.recv(1 << 18)
        return parse(data) if data else None

    def expect(self, kind):
        """Reads until a message of `kind` (PACKETs are kept in self.packets); fails on ERROR
        unless that was asked for, and on close."""
        while True:
            message = self.receive()
            if message is None:
                raise AssertionError(f"the broker closed the connection waiting for type {kind}")
            if message[0] == kind:
                return message
            if message[0] == PACKET:
                self.packets.extend(message[2])
            elif message[0] == ERROR:
                raise AssertionError(f"error {message[2]} waiting for type {kind}")

    def start(self, name, selector="", **options):
        """HELLO, then one subscription; returns its id."""
        self.send(hello(name))
        self.expect(WELCOME)
        self.send(subscribe(selector, **options))
        return struct.unpack("!I", self.expect(SUBSCRIBED)[2])[0]

    def next_packets(self, count):
        """The next `count` packets (errors and replies in between are skipped)."""
        while len(self.packets) < count:
            message = self.receive()
            if message is None:
                raise AssertionError("the broker closed the connection")
            if message[0] == PACKET:
                self.packets.extend(message[2])
        taken, self.packets = self.packets[:count], self.packets[count:]
        return taken

    def closed(self, timeout=5.0):
        """True once the broker has closed the connection (messages before that are skipped).
        A broker that closes with messages of ours unread resets the connection instead."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(1 << 18)
                if not data:
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


class ChannelMember(WireClient):
    """A session that joins one channel: HELLO with the channel role, then CHANNEL_JOIN.
    Frames, flow changes and errors that arrive are kept in order."""

    def __init__(self, path, channel, rights=0, name="member", timeout=5.0, roles=ROLE_CHANNEL):
        super().__init__(path, timeout)
        self.frames, self.errors, self.flow, self.left = [], [], [], []
        self.send(hello(name, roles))
        self.expect(WELCOME)
        self.channel = channel
        self.id = self.member = self.rights = None
        if channel:
            self.join(channel, rights)

    def join(self, channel, rights=0):
        """Joins; returns the ERROR (code, text) on refusal, else None."""
        self.send(channel_join(channel, rights))
        message = self.wait_reply(3)
        if message[0] == ERROR:
            return message[2]
        self.id, self.member, self.rights, self.link, self.max_frame = struct.unpack(
            "!IIBBI", message[2])
        return None

    def wait_reply(self, request_id):
        while True:
            message = self.receive()
            if message is None:
                raise AssertionError("the broker closed the connection")
            if message[1] == request_id:
                return message
            self.keep(message)

    def keep(self, message):
        kind, _, body = message
        if kind == CHANNEL_FRAMES:
            self.frames.extend(parse_frames(body)[1])
        elif kind == CHANNEL_FLOW:
            self.flow.append(struct.unpack("!IB", body)[1] == 1)
        elif kind == CHANNEL_LEFT:
            (size,) = struct.unpack_from("!H", body, 4)
            self.left.append(body[6:6 + size].decode())
        elif kind == ERROR:
            self.errors.append(body)

    def put(self, data):
        self.send(channel_send(self.id, data))

    def sync(self, request_id=77):
        """A PING answered: the broker has handled everything sent before it."""
        self.send(frame(PING, b"", request_id))
        self.wait_reply(request_id)

    def drain(self, quiet=0.3):
        """Reads until nothing arrives for `quiet` seconds; returns the frames so far."""
        self.sock.settimeout(quiet)
        try:
            while True:
                message = self.receive()
                if message is None:
                    break
                self.keep(message)
        except socket.timeout:
            pass
        finally:
            self.sock.settimeout(5.0)
        return self.frames

    def wait_frames(self, count, timeout=5.0):
        self.sock.settimeout(timeout)
        while len(self.frames) < count:
            message = self.receive()
            if message is None:
                raise AssertionError("the broker closed the connection")
            self.keep(message)
        return self.frames
