#!/usr/bin/env python3
"""Writes the small golden captures the replay unit tests read (test/unit/replay/). They are
committed; run this again only to change them: python3 test/data/make_captures.py"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
import pcap_writer as pw  # noqa: E402

REQUEST = b"GET /index.html HTTP/1.1\r\nHost: golden.test\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"


def reordered():
    """An HTTP exchange whose request segments arrive out of order, one of them twice and one
    overlapping its neighbours."""
    c = pw.TcpConversation("10.0.0.1", 41000, "10.0.0.2", 80).handshake()
    c.client_says(REQUEST, segment=10).server_says(RESPONSE).close()
    p = c.packets
    data = p[3:8]
    overlap = (data[1][0], pw.tcp("10.0.0.1", 41000, "10.0.0.2", 80, 1001 + 5, 5001, pw.ACK,
                                  REQUEST[5:15]))
    pw.write_pcap(os.path.join(HERE, "http-reordered.pcap"),
                  p[:3] + [data[2], data[0], overlap, data[1], data[0], data[4], data[3]] + p[8:])


def ipv6_midstream():
    """A v6 TCP flow captured after its handshake; the client's last data rides on its FIN."""
    c = pw.TcpConversation("fd00::1", 50000, "fd00::2", 8080)
    c.cseq, c.sseq = 2000, 9000
    c.client_says(b"first turn").server_says(b"answer")
    c.packets.append((c.time + 0.001, pw.tcp("fd00::1", 50000, "fd00::2", 8080, c.cseq, c.sseq,
                                             pw.FIN | pw.ACK, b"last words")))
    pw.write_pcap(os.path.join(HERE, "ipv6-midstream.pcap"), c.packets)


def dns_pcapng():
    """Two DNS queries and one answer over UDP, as pcapng."""
    query = bytes.fromhex("abcd01000001000000000000") + b"\x01a\x04test\x00\x00\x01\x00\x01"
    answer = bytes.fromhex("abcd81800001000100000000") + query[12:] + \
        bytes.fromhex("c00c000100010000003c00040a010101")
    packets = [(0.0, pw.udp("10.0.0.1", 5353, "10.0.0.53", 53, query)),
               (0.001, pw.udp("10.0.0.53", 53, "10.0.0.1", 5353, answer)),
               (0.002, pw.udp("10.0.0.1", 5353, "10.0.0.53", 53, query))]
    pw.write_pcapng(os.path.join(HERE, "dns.pcapng"), packets)


def linux_cooked():
    """tcpdump -i any: Linux cooked headers (SLL), with one ARP frame that is not IP."""
    def sll(packet):
        protocol = 0x0806 if packet.startswith(b"ARP") else pw.ETHERTYPE[packet[0] >> 4]
        return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\0\0\0\0\x01\0\0", protocol) + packet
    packets = [(0.0, pw.udp("10.0.0.1", 40000, "10.0.0.2", 9999, b"ping")),
               (0.001, b"ARP frame"),
               (0.002, pw.udp("10.0.0.2", 9999, "10.0.0.1", 40000, b"pong"))]
    pw.write_pcap(os.path.join(HERE, "cooked.pcap"), packets, linktype=113, frame=sll)


def truncated():
    """A pcap cut in the middle of its third packet."""
    path = os.path.join(HERE, "truncated.pcap")
    c = pw.TcpConversation("10.0.0.1", 41000, "10.0.0.2", 80).handshake()
    pw.write_pcap(path, c.packets)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 20)


def lost_syn_ack():
    """A handshake whose SYN-ACK the capture lost; the server's answer comes at its ISN + 1."""
    c = pw.TcpConversation("10.0.0.1", 41000, "10.0.0.2", 80).handshake()
    c.client_says(REQUEST).server_says(RESPONSE).close()
    pw.write_pcap(os.path.join(HERE, "lost-syn-ack.pcap"), c.packets[:1] + c.packets[2:])


def ack_before_data():
    """Capture reordering: the client's next request, acknowledging the answer's second
    segment, is recorded just before that segment."""
    c = pw.TcpConversation("10.0.0.1", 41000, "10.0.0.2", 80).handshake()
    c.client_says(REQUEST).server_says(RESPONSE, segment=20).client_says(REQUEST).close()
    p = c.packets
    # 3: request, 4-6: the answer's segments, 7: the second request
    pw.write_pcap(os.path.join(HERE, "ack-before-data.pcap"), p[:5] + [p[6], p[7], p[5]] + p[8:])


def ipv6_atomic_tcp():
    """TCP segments inside IPv6 atomic fragments (RFC 6946), as some middleboxes send them."""
    c = pw.TcpConversation("fd00::1", 41000, "fd00::2", 80).handshake()
    c.client_says(REQUEST).server_says(RESPONSE).close()
    packets = [(t, pw.ipv6_fragments(p, 2048)[0]) for t, p in c.packets]
    pw.write_pcap(os.path.join(HERE, "ipv6-atomic-tcp.pcap"), packets)


def fragments_both_ways():
    """Two UDP datagrams with the same IPv4 id, one each way, fragmented and interleaved; and
    an IPv6 datagram whose pieces overlap (dropped, RFC 5722)."""
    query = pw.udp("10.0.0.1", 40000, "10.0.0.2", 9999, b"q" * 40)
    answer = pw.udp("10.0.0.2", 9999, "10.0.0.1", 40000, b"a" * 40)
    q, a = pw.ipv4_fragments(query, 24), pw.ipv4_fragments(answer, 24)
    overlapping = pw.ipv6_fragments(pw.udp("fd00::1", 40001, "fd00::2", 9999, b"o" * 40), 24)
    first = bytearray(overlapping[1])
    first[42:44] = (16).to_bytes(2, "big")  # offset 16, overlapping the first piece's 24 bytes
    packets = [q[0], a[0], q[1], a[1], overlapping[0], bytes(first)]
    pw.write_pcap(os.path.join(HERE, "fragments.pcap"),
                  [(0.001 * i, p) for i, p in enumerate(packets)])


def fragments_hostile():
    """Pieces a reassembler must refuse: IPv4 pieces that overlap, and a datagram cut into 150
    pieces of 8 bytes. And an IPv6 atomic fragment with 4 bytes after its IP length (an
    Ethernet FCS), which are no part of its UDP payload."""
    overlap = pw.ipv4_fragments(pw.udp("10.0.0.1", 40000, "10.0.0.2", 9999, b"v" * 40), 24)
    second = bytearray(overlap[1])
    second[6:8] = (16 // 8).to_bytes(2, "big")  # offset 16, inside the first piece's 24 bytes
    second[10:12] = b"\0\0"
    tiny = pw.ipv4_fragments(pw.udp("10.0.0.1", 40001, "10.0.0.2", 9999, b"t" * 1192), 8)
    atomic = pw.ipv6_fragments(pw.udp("fd00::1", 40002, "fd00::2", 9999, b"whole"), 1024)[0]
    packets = [overlap[0], bytes(second)] + tiny + [atomic + b"\xde\xad\xbe\xef"]
    pw.write_pcap(os.path.join(HERE, "fragments-hostile.pcap"),
                  [(0.001 * i, p) for i, p in enumerate(packets)])


def long_hole():
    """A download captured on one side only after its request: the server's second segment
    is lost and 300 more follow, with no acknowledgement to tell (libtins would give the stream
    up at 512 waiting segments)."""
    c = pw.TcpConversation("10.0.0.1", 41000, "10.0.0.2", 80).handshake().client_says(REQUEST)
    answer = b"".join(b"%05d" % i * 20 for i in range(302))  # 100-byte segments, numbered
    start = len(c.packets)
    c.server_says(answer, segment=100)
    packets = c.packets[:start + 1] + c.packets[start + 2:]
    pw.write_pcap(os.path.join(HERE, "long-hole.pcap"), packets)


def link_layers():
    """One UDP exchange under each other link layer read: QinQ-tagged Ethernet, Linux cooked
    v2 (tcpdump -i any on newer libpcap) and BSD loopback (DLT_NULL, IPv6)."""
    def exchange(client, server):
        return [(0.0, pw.udp(client, 40000, server, 9999, b"ping")),
                (0.001, pw.udp(server, 9999, client, 40000, b"pong"))]

    def qinq(packet):
        return (b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01" + b"\x88\xa8\x00\x64\x81\x00\x00\x0a" +
                struct.pack("!H", pw.ETHERTYPE[packet[0] >> 4]) + packet)

    def sll2(packet):
        return struct.pack("!HHIHBB8s", pw.ETHERTYPE[packet[0] >> 4], 0, 2, 1, 0, 6,
                           b"\x02\0\0\0\0\x01\0\0") + packet

    def null(packet):
        return struct.pack("<I", 30) + packet  # AF_INET6 as some BSDs number it
    pw.write_pcap(os.path.join(HERE, "qinq.pcap"), exchange("10.0.0.1", "10.0.0.2"), frame=qinq)
    pw.write_pcap(os.path.join(HERE, "sll2.pcap"), exchange("10.0.0.1", "10.0.0.2"),
                  linktype=276, frame=sll2)
    pw.write_pcap(os.path.join(HERE, "loopback.pcap"), exchange("fd00::1", "fd00::2"),
                  linktype=0, frame=null)


if __name__ == "__main__":
    reordered()
    ipv6_midstream()
    dns_pcapng()
    linux_cooked()
    truncated()
    lost_syn_ack()
    ack_before_data()
    ipv6_atomic_tcp()
    fragments_both_ways()
    fragments_hostile()
    long_hole()
    link_layers()
