"""pktreplay on captures shaped like real-world ones (issue 12): answers that come late, a
segment the capture lost, captures that start mid-connection or hold one side only, DNS
queries sent together, a server that never stops, late retransmissions, fragments and atomic
fragments, TSO lengths, MPLS and 802.3 frames, snap-length cuts, ICMP unreachable. Each
capture is written for the test (pcap_writer) or recorded here, and replayed against a live
server: nginx, dnsmasq, or a small Python server where the server's timing is the point."""

import os
import socket
import struct
import threading
import time

import pcap_writer as pw
from netns import main, run, tcp_listener
from test_replay import ReplayCase

GET = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"
STATUSES = ["complete", "capture_gap", "server_silent", "reset", "refused", "unreachable",
            "closed_early", "response_differs", "no_recorded_answer", "stalled",
            "turn_bytes_exceeded", "turn_time_exceeded", "not_started", "skipped"]


def dns_query(ident, name, qtype):
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + \
        struct.pack("!HH", qtype, 1)


class ReplayCaptures(ReplayCase):
    def dnsmasq(self):
        self.server("dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                    "--listen-address=127.0.0.1", "--listen-address=::1", "--bind-interfaces",
                    "--user=root", "--pid-file=", "--address=/a.test/10.1.1.1",
                    "--address=/b.test/10.2.2.2", port=53, udp=True)

    def serve(self, port, conversation):
        """A TCP server on 127.0.0.1:`port` running `conversation(connection)` for one client."""
        listener = tcp_listener(self, "127.0.0.1", port)

        def accept():
            connection, _ = listener.accept()
            with connection:
                try:
                    conversation(connection)
                except OSError:
                    pass
        threading.Thread(target=accept, daemon=True).start()

    def write(self, name, packets, writer=pw.write_pcap):
        path = os.path.join(self.scratch(), name)
        writer(path, packets)
        return path

    def only(self, report):
        (flow,) = report["flows"]
        return flow

    # Defect 1
    def test_an_answer_after_the_turn_timed_out_goes_to_the_next_turn(self):
        def slow(connection):
            connection.recv(100)
            connection.sendall(b"1")  # of the 2 bytes recorded: the turn ends by its timeout
            connection.recv(100)      # and the client's next turn comes
            connection.sendall(b"2")  # its answer, while the reply to the first is still read
            connection.recv(100)

        self.serve(9000, slow)
        c = pw.TcpConversation("127.0.0.1", 41000, "127.0.0.1", 9000).handshake()
        c.client_says(b"A").server_says(b"1x").client_says(b"B").server_says(b"2").close()
        path = self.write("late.pcap", c.packets)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", "--no-plugins",
                                      "--turn-timeout", "200", expect_exit=0)
        flow = self.only(report)
        self.assertEqual((flow["status"], flow["bytes_received"]), ("complete", 2))

    # Defect 2
    def test_a_lost_segment_is_a_counted_gap_and_the_connection_stays_one_flow(self):
        self.nginx({"index.html": b"hello\n"})
        c = pw.TcpConversation("127.0.0.1", 41000, "127.0.0.1", 80).handshake()
        lost = None
        for i in range(1000):
            c.client_says(GET)
            if i == 10:
                lost = len(c.packets)
            c.server_says(HELLO)
        c.close()
        packets = c.packets[:lost] + c.packets[lost + 1:]
        # A second connection loses the last segment of its answer, just before the close.
        d = pw.TcpConversation("127.0.0.1", 41001, "127.0.0.1", 80, time=c.time).handshake()
        d.client_says(GET).server_says(HELLO, segment=20).close()
        packets += d.packets[:-4] + d.packets[-3:]
        path = self.write("gap.pcap", packets)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", expect_exit=1)
        first, second = report["flows"]
        self.assertEqual((first["status"], first["turns"], first["gaps"], first["gap_bytes"]),
                         ("capture_gap", 2000, 1, len(HELLO)))
        self.assertEqual(first["bytes_received"], 1000 * second["bytes_received"])
        self.assertEqual((second["status"], second["gaps"], second["gap_bytes"]),
                         ("capture_gap", 1, len(HELLO) - 40))
        self.assertEqual((report["summary"]["capture_gap"], report["summary"]["failed"]), (2, 2))

    # Defect 3
    def test_a_capture_that_starts_mid_connection_finds_the_server(self):
        self.nginx({"index.html": b"hello\n"})

        def midstream(client_port, server_port, start):
            c = pw.TcpConversation("127.0.0.1", client_port, "127.0.0.1", server_port,
                                   time=start)
            c.server_says(b"ld\n")  # the end of an answer to a request before the capture
            c.client_says(GET).server_says(HELLO)
            return c.packets

        packets = midstream(45000, 80, 0)            # a well-known port
        packets += midstream(20000, 8080, 1)         # a plugin's port (http)
        packets += midstream(50000, 40000, 2)        # two ephemeral ports: cannot tell
        # The SYN-ACK tells, whatever the ports say.
        c = pw.TcpConversation("127.0.0.1", 50001, "127.0.0.1", 40001, time=3)
        c.handshake()
        packets += c.packets[1:]
        c.packets = []
        c.client_says(GET).server_says(HELLO)
        packets += c.packets
        path = self.write("midstream.pcap", packets)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1:80", expect_exit=1)
        flows = report["flows"]
        self.assertEqual([(f["recorded_server"], f["status"]) for f in flows[:2] + flows[3:]],
                         [("127.0.0.1:80", "complete"), ("127.0.0.1:8080", "complete"),
                          ("127.0.0.1:40001", "complete")])
        self.assertEqual(flows[2]["status"], "skipped")
        # The orphan answer is dropped.
        self.assertEqual([f["turns"] for f in flows[:2] + flows[3:]], [2, 2, 2])
        self.assertEqual(flows[1]["plugin"], "http")
        self.assertIn("no handshake in the capture, and neither port 40000 nor 50000",
                      flows[2]["reason"])

    # Defect 4
    def test_a_flow_without_its_server_side_reads_the_answer_and_compares_nothing(self):
        self.nginx({"index.html": b"hello\n"})
        c = pw.TcpConversation("127.0.0.1", 41000, "127.0.0.1", 80).handshake()
        c.client_says(GET).server_says(HELLO).close()
        client_only = [p for p in c.packets if p[1][12:16] == p[1][16:20] and
                       struct.unpack("!H", p[1][20:22])[0] == 41000]
        path = self.write("one-sided.pcap", client_only)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", expect_exit=0)
        flow = self.only(report)
        self.assertEqual(flow["status"], "complete")
        self.assertGreater(flow["bytes_received"], len(HELLO))  # nginx's answer was read
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", "--compare",
                                      expect_exit=1)
        self.assertEqual(self.only(report)["status"], "no_recorded_answer")

    # Defect 5
    def test_dns_queries_sent_together_wait_for_every_answer(self):
        self.dnsmasq()
        queries = [dns_query(1, "a.test", 1), dns_query(2, "a.test", 28),
                   dns_query(3, "b.test", 1)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # dnsmasq's answers
            s.connect(("127.0.0.1", 53))
            answers = []
            for query in queries:
                s.send(query)
                answers.append(s.recv(512))
        # A and AAAA leave together, as a resolver sends them; then a third query.
        client, server = ("127.0.0.1", 40000), ("127.0.0.1", 53)
        order = [(client, queries[0]), (client, queries[1]), (server, answers[0]),
                 (server, answers[1]), (client, queries[2]), (server, answers[2])]
        packets = [(0.001 * i, pw.udp(*src, *(server if src == client else client), data))
                   for i, (src, data) in enumerate(order)]
        path = self.write("together.pcap", packets)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", "--compare",
                                      expect_exit=0)
        flow = self.only(report)
        self.assertEqual((flow["status"], flow["turns"]), ("complete", 5))
        self.assertEqual(flow["bytes_received"], sum(map(len, answers)))

    # Defect 6
    def test_a_server_that_never_stops_is_ended_by_the_turn_bounds(self):
        def flood(connection):
            connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            while True:  # the http plugin waits for the close
                connection.sendall(b"x" * 65536)

        def trickle(connection):
            connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            while True:
                connection.sendall(b"x")
                time.sleep(0.05)

        path = os.path.join(self.scratch(), "stream.pcap")
        self.synthetic_http(path, GET, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nshort")
        self.serve(9001, flood)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1:9001", "--turn-max-bytes",
                                      "8", expect_exit=1)
        flow = self.only(report)
        self.assertEqual((flow["status"], flow["turn"]), ("turn_bytes_exceeded", 2))
        self.assertLess(flow["bytes_received"], (8 << 20) + 65536 * 4)
        self.serve(9002, trickle)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1:9002", "--turn-max-time",
                                      "1", expect_exit=1)
        self.assertEqual(self.only(report)["status"], "turn_time_exceeded")

        # A server that never reads a 20 MB upload and keeps saying something meanwhile: the
        # write is bounded in time too, and what it says is no progress.
        def deaf(connection):
            while True:
                connection.sendall(b"x")
                time.sleep(0.1)

        c = pw.TcpConversation("127.0.0.1", 41000, "127.0.0.1", 80).handshake()
        c.client_says(b"PUT / HTTP/1.1\r\n\r\n" + b"u" * (20 << 20), segment=65000)
        c.server_says(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").close()
        upload = self.write("upload.pcap", c.packets)
        self.serve(9003, deaf)
        _, report, _ = self.pktreplay(upload, "--target", "127.0.0.1:9003", "--turn-max-time",
                                      "1", expect_exit=1)
        self.assertEqual((self.only(report)["status"], self.only(report)["turn"]),
                         ("turn_time_exceeded", 1))
        self.serve(9004, deaf)
        _, report, _ = self.pktreplay(upload, "--target", "127.0.0.1:9004", "--flow-timeout",
                                      "1000", expect_exit=1)
        self.assertEqual(self.only(report)["status"], "stalled")

    # Defect 7
    def test_a_retransmission_after_the_close_is_counted_not_a_new_flow(self):
        self.nginx({"index.html": b"hello\n"})
        c = pw.TcpConversation("127.0.0.1", 41000, "127.0.0.1", 80).handshake()
        c.client_says(GET)
        alert_at = len(c.packets)
        c.server_says(HELLO).close()
        c.packets.append((c.time + 0.2, c.packets[alert_at][1]))  # the answer again, late
        path = self.write("late-retransmission.pcap", c.packets)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", expect_exit=0)
        self.assertEqual(self.only(report)["status"], "complete")
        self.assertEqual(report["capture"]["late_segments"], 1)

    # Defect 8
    def test_fragmented_and_atomic_fragment_queries_are_whole_packets(self):
        self.dnsmasq()
        v4 = pw.udp("127.0.0.1", 40000, "127.0.0.1", 53, dns_query(7, "a.test", 1) + b"\0" * 0)
        v6 = pw.udp("::1", 40001, "::1", 53, dns_query(8, "b.test", 1))
        atomic = pw.udp("::1", 40002, "::1", 53, dns_query(9, "a.test", 1))
        packets = [(0.001 * i, p) for i, p in enumerate(
            pw.ipv4_fragments(v4, 16) + pw.ipv6_fragments(v6, 16) +
            pw.ipv6_fragments(atomic, 1024))]
        path = self.write("fragments.pcap", packets)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", "--map",
                                      "[::1]:53=[::1]:53", expect_exit=0)
        self.assertEqual(self.statuses(report), ["complete"] * 3)
        self.assertTrue(all(f["bytes_received"] > 0 for f in report["flows"]))
        self.assertEqual((report["capture"]["reassembled"], report["capture"]["fragments"]),
                         (2, 0))

    # Defect 9
    def test_a_tso_capture_uses_the_captured_length(self):
        body = bytes(i % 251 for i in range(5000))
        self.nginx({"big.bin": body})
        request = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        c = pw.TcpConversation("127.0.0.1", 41000, "127.0.0.1", 80).handshake()
        c.client_says(request)
        answer_at = len(c.packets)
        c.server_says(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + body, segment=9000)
        c.close()
        time_, packet = c.packets[answer_at]
        c.packets[answer_at] = (time_, pw.tso(packet))
        path = self.write("tso.pcap", c.packets)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", expect_exit=0)
        self.assertEqual((report["capture"]["tso_lengths"], report["capture"]["bad_packets"]),
                         (1, 0))
        flow = self.only(report)
        self.assertEqual((flow["status"], flow["turns"]), ("complete", 2))

    # Defect 10
    def test_what_was_left_out_is_said_with_numbers(self):
        frames = [(0, pw.arp()), (0.1, pw.arp()),
                  (0.2, pw.ethernet(pw.tcp("10.0.0.1", 1, "10.0.0.2", 80, 1, 1, pw.ACK,
                                           b"x" * 100))),
                  (0.3, pw.ethernet(b"\x45\0\0\x10" + b"\0" * 20))]
        path = self.write("nothing.pcap", frames, lambda p, f: pw.write_frames(p, f, snaplen=80))
        status, _, stderr = self.pktreplay(path, "--target", "127.0.0.1")
        self.assertEqual(status, 3)
        self.assertIn("nothing to replay (1 IP packets, no TCP or UDP flow carrying data; "
                      "left out: 1 cut short (snap length, or IPv4 over 64 KiB), 2 not IP (ARP, LLDP, STP, ...), "
                      "1 not parsed (bad lengths or headers))", stderr)

        # MPLS and 802.3 LLC/SNAP frames carry IP that is replayed.
        self.nginx({"index.html": b"hello\n"})
        frames = []
        for port, frame in ((41000, pw.mpls), (41001, pw.snap)):
            c = pw.TcpConversation("127.0.0.1", port, "127.0.0.1", 80, time=port - 41000)
            c.handshake().client_says(GET).server_says(HELLO).close()
            frames += [(t, frame(p)) for t, p in c.packets]
        path = self.write("mpls-snap.pcap", frames, pw.write_frames)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", expect_exit=0)
        self.assertEqual(self.statuses(report), ["complete"] * 2)

    # Defect 12
    def test_ftp_data_connections_active_by_eprt_or_port_and_passive_by_pasv(self):
        content = bytes(i * 13 % 251 for i in range(300_000))
        self.vsftpd({"file.bin": content})
        download = os.path.join(self.scratch(), "download.bin")
        # EPRT (curl's default) and PORT; and passive mode by PASV (227) next to EPSV.
        for mode in (["--ftp-port", "127.0.0.1"], ["--ftp-port", "127.0.0.1", "--disable-eprt"],
                     ["--disable-epsv"]):
            capture = self.capture("tcp", lambda: run("curl", "-s", *mode, "-o", download,
                                                      "ftp://127.0.0.1/file.bin"))
            _, report, _ = self.pktreplay(capture, "--target", "127.0.0.1", "--compare",
                                          expect_exit=0)
            control, data = report["flows"]
            self.assertEqual((control["status"], control["plugin"]), ("complete", "ftp"), mode)
            self.assertEqual((data["status"], data["parent"]), ("complete", control["id"]))
            self.assertEqual(data["bytes_received"], len(content))

    def test_an_answer_larger_than_the_memory_cap_is_counted_not_compared(self):
        self.nginx({"big.bin": bytes(i % 251 for i in range(3 << 20))})
        capture = self.capture("tcp port 80", lambda: run("curl", "-s", "-o", "/dev/null",
                                                          "http://127.0.0.1/big.bin"))
        _, report, _ = self.pktreplay(capture, "--target", "127.0.0.1", "--compare",
                                      "--max-flow-memory", "1", expect_exit=0)
        flow = self.only(report)
        self.assertEqual(flow["status"], "complete")  # not a truncated copy compared to it all
        self.assertGreater(flow["bytes_received"], 3 << 20)

    def test_a_reset_an_early_close_and_no_route_each_say_so(self):
        def reset(connection):
            connection.recv(100)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        def close_after_one(connection):
            connection.recv(100)
            connection.sendall(b"1")
            # Half-close, then read until the client goes: closing with its "B" unread would
            # send a reset instead.
            connection.shutdown(socket.SHUT_WR)
            while connection.recv(100):
                pass

        c = pw.TcpConversation("127.0.0.1", 41000, "127.0.0.1", 9000).handshake()
        c.client_says(b"A").server_says(b"1").client_says(b"B").server_says(b"2").close()
        path = self.write("two-turns.pcap", c.packets)
        for port, server, status in ((9005, reset, "reset"), (9006, close_after_one,
                                                              "closed_early")):
            self.serve(port, server)
            _, report, _ = self.pktreplay(path, "--target", f"127.0.0.1:{port}", "--no-plugins",
                                          expect_exit=1)
            self.assertEqual(self.only(report)["status"], status)
        # No route to the target: nothing leaves the namespace.
        _, report, _ = self.pktreplay(path, "--target", "192.0.2.1", "--no-plugins",
                                      expect_exit=1)
        self.assertEqual(self.only(report)["status"], "unreachable")

    # Beyond: --pcap-out
    def test_the_live_traffic_is_written_as_a_capture_that_replays_the_same(self):
        self.nginx({"index.html": b"hello\n", "big.bin": bytes(range(256)) * 400})
        self.dnsmasq()

        def traffic():
            run("curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "http://127.0.0.1/index.html",
                "http://127.0.0.1/big.bin")
            run("dig", "@127.0.0.1", "a.test", "+tries=1")

        capture = self.capture("tcp port 80 or udp port 53", traffic)
        live = os.path.join(self.scratch(), "live.pcap")
        _, first, _ = self.pktreplay(capture, "--target", "127.0.0.1", "--pcap-out", live,
                                     expect_exit=0)
        # The written capture reads back as the same flows, and replays equal to the live run.
        _, again, _ = self.pktreplay(live, "--target", "127.0.0.1", "--compare", expect_exit=0)
        self.assertEqual(again["capture"]["link_type"], "RAW")
        def shape(report):  # flows ran at once: the written capture has them in live order
            return sorted((f["protocol"], f["turns"], f["bytes_sent"]) for f in report["flows"])
        self.assertEqual(shape(again), shape(first))
        self.assertEqual(self.statuses(again), ["complete"] * 2)
        listing = run("tcpdump", "-nn", "-r", live).stdout
        self.assertIn("Flags [S]", listing)
        self.assertIn("A? a.test.", listing)
        status, _, stderr = self.pktreplay(capture, "--target", "127.0.0.1", "--pcap-out",
                                           "/nonexistent/dir/x.pcap")
        self.assertEqual(status, 2)
        self.assertIn("--pcap-out /nonexistent/dir/x.pcap: ", stderr)

    def test_ftp_uploads_end_as_recorded_passive_and_active(self):
        content = bytes(i * 7 % 251 for i in range(200_000))
        root = self.vsftpd({}, upload=True)
        upload = os.path.join(self.scratch(), "up.bin")
        with open(upload, "wb") as f:
            f.write(content)
        for mode in ([], ["--ftp-port", "127.0.0.1"]):
            capture = self.capture("tcp", lambda: run("curl", "-s", *mode, "-T", upload,
                                                      "ftp://127.0.0.1/incoming/up.bin"))
            os.remove(os.path.join(root, "incoming", "up.bin"))  # anonymous cannot overwrite
            # The upload's end (the client's close) is what the server waits for to say 226.
            _, report, _ = self.pktreplay(capture, "--target", "127.0.0.1", "--compare",
                                          expect_exit=0)
            control, data = report["flows"]
            self.assertEqual((control["status"], data["status"], data["parent"]),
                             ("complete", "complete", control["id"]), mode)
            self.assertEqual(data["bytes_sent"], len(content))
            with open(os.path.join(root, "incoming", "up.bin"), "rb") as f:
                self.assertEqual(f.read(), content)
            os.remove(os.path.join(root, "incoming", "up.bin"))

    # Defect 11 and the summary
    def test_udp_to_a_closed_port_is_refused_and_the_summary_counts_every_status(self):
        path = self.write("closed.pcap", [
            (0, pw.udp("127.0.0.1", 40000, "127.0.0.1", 53, dns_query(1, "a.test", 1)))])
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1:5399", expect_exit=1)
        self.assertEqual(self.only(report)["status"], "refused")
        summary = report["summary"]
        self.assertEqual({k: summary[k] for k in STATUSES + ["ok", "failed"]},
                         dict({k: 0 for k in STATUSES}, refused=1, ok=0, failed=1))
        status, _, stderr = self.pktreplay(path, "--target", "127.0.0.1",
                                           "--max-flow-memory", "0")
        self.assertEqual(status, 2)
        self.assertIn("--max-flow-memory, --turn-timeout, --flow-timeout, --turn-max-time and "
                      "--turn-max-bytes must be positive", stderr)


if __name__ == "__main__":
    main()
