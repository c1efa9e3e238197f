"""Writes small captures for the replay tests: pcap and pcapng, Ethernet frames around IPv4 or
IPv6 TCP/UDP packets with real checksums, and TCP conversations with correct sequence numbers
(so segments can then be reordered, repeated or overlapped on purpose)."""

import ipaddress
import struct

ETHERTYPE = {4: 0x0800, 6: 0x86DD}


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_packet(src, dst, protocol, l4):
    """An IPv4 or IPv6 packet around a transport header + payload whose checksum field (at the
    usual offset for TCP or UDP) is filled in here."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, protocol, len(l4))
    else:
        pseudo = s.packed + d.packed + struct.pack("!I3xB", len(l4), protocol)
    offset = 16 if protocol == 6 else 6
    l4 = l4[:offset] + struct.pack("!H", _checksum(pseudo + l4)) + l4[offset + 2:]
    if s.version == 4:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, protocol, 0,
                             s.packed, d.packed)
        header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
        return header + l4
    return struct.pack("!IHBB16s16s", 0x60000000, len(l4), protocol, 64, s.packed,
                       d.packed) + l4


def tcp(src, sport, dst, dport, seq, ack, flags, payload=b""):
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                         flags, 65535, 0, 0)
    return ip_packet(src, dst, 6, header + payload)


def udp(src, sport, dst, dport, payload):
    return ip_packet(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) +
                     payload)


SYN, FIN, PSH, ACK = 0x02, 0x01, 0x08, 0x10


class TcpConversation:
    """Packets of one TCP connection: handshake, data in either direction, close."""

    def __init__(self, client, cport, server, sport, time=0.0):
        self.c, self.cp, self.s, self.sp = client, cport, server, sport
        self.cseq, self.sseq = 1000, 5000
        self.time = time
        self.packets = []  # (time, ip packet)

    def _add(self, packet):
        self.time += 0.001
        self.packets.append((self.time, packet))

    def handshake(self):
        self._add(tcp(self.c, self.cp, self.s, self.sp, self.cseq, 0, SYN))
        self._add(tcp(self.s, self.sp, self.c, self.cp, self.sseq, self.cseq + 1, SYN | ACK))
        self.cseq += 1
        self.sseq += 1
        self._add(tcp(self.c, self.cp, self.s, self.sp, self.cseq, self.sseq, ACK))
        return self

    def client_says(self, data, segment=1400):
        for i in range(0, len(data), segment):
            chunk = data[i:i + segment]
            self._add(tcp(self.c, self.cp, self.s, self.sp, self.cseq, self.sseq, PSH | ACK,
                          chunk))
            self.cseq += len(chunk)
        return self

    def server_says(self, data, segment=1400):
        for i in range(0, len(data), segment):
            chunk = data[i:i + segment]
            self._add(tcp(self.s, self.sp, self.c, self.cp, self.sseq, self.cseq, PSH | ACK,
                          chunk))
            self.sseq += len(chunk)
        return self

    def close(self):
        self._add(tcp(self.c, self.cp, self.s, self.sp, self.cseq, self.sseq, FIN | ACK))
        self._add(tcp(self.s, self.sp, self.c, self.cp, self.sseq, self.cseq + 1, FIN | ACK))
        self._add(tcp(self.c, self.cp, self.s, self.sp, self.cseq + 1, self.sseq + 1, ACK))
        return self


def ethernet(packet):
    version = packet[0] >> 4
    return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + struct.pack("!H", ETHERTYPE[version]) + \
        packet


def write_pcap(path, packets, linktype=1, frame=ethernet, snaplen=262144):
    """packets: [(seconds, ip packet)]; linktype 1 is Ethernet."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        for time, packet in packets:
            data = frame(packet)
            f.write(struct.pack("<IIII", int(time), int(time % 1 * 1e6), len(data), len(data)))
            f.write(data)


def write_pcapng(path, packets):
    """The same packets as pcapng: a section header, one Ethernet interface, enhanced packet
    blocks (microsecond timestamps)."""
    def block(kind, body):
        body += b"\0" * (-len(body) % 4)
        length = 12 + len(body)
        return struct.pack("<II", kind, length) + body + struct.pack("<I", length)

    with open(path, "wb") as f:
        f.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        f.write(block(1, struct.pack("<HHI", 1, 0, 262144)))
        for time, packet in packets:
            data = ethernet(packet)
            micros = int(time * 1e6)
            f.write(block(6, struct.pack("<IIIII", 0, micros >> 32, micros & 0xFFFFFFFF,
                                         len(data), len(data)) + data))


def tso(packet):
    """An IPv4 packet as captured on the host that sent it with TCP segmentation offload: its
    total length is 0 (the NIC fills it in)."""
    return packet[:2] + b"\0\0" + packet[4:]


def ipv4_fragments(packet, size):
    """An IPv4 packet split into fragments whose payloads hold `size` bytes (a multiple of 8)."""
    header, payload = packet[:20], packet[20:]
    pieces = []
    for offset in range(0, len(payload), size):
        chunk = payload[offset:offset + size]
        more = offset + size < len(payload)
        fragment = bytearray(header)
        struct.pack_into("!HHH", fragment, 2, 20 + len(chunk), 0x1234,
                         (0x2000 if more else 0) | offset // 8)
        struct.pack_into("!H", fragment, 10, 0)
        struct.pack_into("!H", fragment, 10, _checksum(bytes(fragment)))
        pieces.append(bytes(fragment) + chunk)
    return pieces


def ipv6_fragments(packet, size, ident=0x1234):
    """An IPv6 packet (no extension headers) as fragments of `size` payload bytes (a multiple
    of 8) behind a Fragment header; with size >= the payload, one atomic fragment."""
    header, payload = packet[:40], packet[40:]
    pieces = []
    for offset in range(0, max(len(payload), 1), size):
        chunk = payload[offset:offset + size]
        more = offset + size < len(payload)
        fragment = struct.pack("!BBHI", header[6], 0, offset | (1 if more else 0), ident)
        pieces.append(header[:4] + struct.pack("!HB", 8 + len(chunk), 44) + header[7:] +
                      fragment + chunk)
    return pieces


def mpls(packet, labels=(16, 17)):
    """An Ethernet frame carrying `packet` under an MPLS label stack."""
    stack = b"".join(struct.pack("!I", label << 12 | (1 << 8 if i == len(labels) - 1 else 0) | 64)
                     for i, label in enumerate(labels))
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x88\x47" + stack + packet


def snap(packet):
    """An 802.3 frame with an LLC/SNAP header carrying `packet`."""
    body = b"\xaa\xaa\x03\0\0\0" + struct.pack("!H", ETHERTYPE[packet[0] >> 4]) + packet
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01" + struct.pack("!H", len(body)) + body


def arp():
    """An Ethernet frame with an ARP request: not IP."""
    return b"\xff" * 6 + b"\x02\0\0\0\0\x01\x08\x06" + bytes.fromhex(
        "0001080006040001020000000001c0a80001000000000000c0a80002")


def write_frames(path, frames, snaplen=262144):
    """Ethernet frames as they are: [(seconds, frame)]; a frame longer than `snaplen` is cut
    to it, its original length kept (as tcpdump -s does)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
        for time, frame in frames:
            kept = frame[:snaplen]
            f.write(struct.pack("<IIII", int(time), int(time % 1 * 1e6), len(kept), len(frame)))
            f.write(kept)
