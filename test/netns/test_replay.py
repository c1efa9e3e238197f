"""pktreplay against real servers in a namespace: captures made here with tcpdump of curl, dig
and an FTP download (or written by pcap_writer.py where the capture needs something a real
client will not do: reordered and repeated segments, 500 flows, pcapng, a broken file), replayed
over ordinary sockets."""

import json
import os
import re
import subprocess
import threading
import time

import pcap_writer as pw
from netns import PLUGINS, NetnsTestCase, main, run, tcp_listener, wait_for, write_files

PKTREPLAY = os.environ.get("PKTREPLAY", "")
HERE = os.path.dirname(os.path.abspath(__file__))

def pattern(size, seed):
    return bytes((i * 7 + seed) % 251 for i in range(size))


class ReplayCase(NetnsTestCase):
    """Runs pktreplay, records captures on loopback, writes synthetic ones."""

    def pktreplay(self, *args, expect_exit=None):
        """Runs pktreplay --json; returns (exit status, parsed JSON or None, stderr)."""
        env = dict(os.environ, PKTBROKER_PLUGIN_PATH=PLUGINS)
        result = subprocess.run([PKTREPLAY, "--json", *args], capture_output=True, text=True,
                                env=env, timeout=120)
        if expect_exit is not None:
            self.assertEqual(result.returncode, expect_exit, result.stdout + result.stderr)
        report = json.loads(result.stdout) if result.stdout.strip() else None
        return result.returncode, report, result.stderr

    def statuses(self, report):
        return [flow["status"] for flow in report["flows"]]

    def capture(self, filter_expression, action):
        """Runs `action` while tcpdump records loopback traffic; returns the pcap's path.

        A recording must hold every packet: a segment tcpdump drops (its buffer overflows on a
        loaded machine) leaves a hole in the recorded answer, which --compare then reports as
        differing. Such a recording is made again (`action` must be repeatable). Connections
        still closing (a server's readiness probe answered late) are waited out first, so they
        do not appear as flows of their own."""
        wait_for(lambda: not run("ss", "-tnH", "state", "connected", "exclude", "time-wait")
                 .stdout.strip(), what="earlier connections to close")
        path = os.path.join(self.scratch(), "capture.pcap")
        for _ in range(3):
            tcpdump = subprocess.Popen(
                ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-B", "32768", "-w", path,
                 filter_expression], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self.addCleanup(lambda p=tcpdump: p.poll() is None and p.kill())
            self.assertIn("listening on lo", tcpdump.stderr.readline())
            action()
            time.sleep(0.2)
            tcpdump.terminate()
            _, statistics = tcpdump.communicate(timeout=10)
            dropped = re.search(r"(\d+) packets? dropped by kernel", statistics)
            if dropped is not None and int(dropped.group(1)) == 0:
                return path
        self.fail(f"tcpdump dropped packets in three recordings: {statistics}")

    def synthetic_http(self, path, request, response, reorder=False):
        """One HTTP exchange as pcap_writer builds it; with `reorder`, the request's segments
        arrive out of order, one twice and one overlapping its neighbour."""
        conversation = pw.TcpConversation("127.0.0.1", 41000, "127.0.0.1", 80).handshake()
        conversation.client_says(request, segment=10)
        conversation.server_says(response).close()
        packets = conversation.packets
        if reorder:
            data = packets[3:3 + (len(request) + 9) // 10]
            overlap = pw.tcp("127.0.0.1", 41000, "127.0.0.1", 80, 1001 + 5, 5001, pw.ACK,
                             request[5:15])
            shuffled = [data[2], data[0], (data[1][0], overlap), data[1], data[0]] + data[3:]
            packets = packets[:3] + shuffled + packets[3 + len(data):]
        pw.write_pcap(path, packets)


class Replay(ReplayCase):
    def test_http_requests_replay_with_equal_bodies_and_differences_are_reported(self):
        files = {"index.html": b"hello\n", "big.bin": pattern(200_000, 1), "c.txt": b"c" * 5000}
        root = self.nginx(files)

        def requests():
            # Two requests on one kept-alive connection, then two more connections.
            run("curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "http://127.0.0.1/index.html",
                "http://127.0.0.1/big.bin")
            run("curl", "-s", "-o", "/dev/null", "http://127.0.0.1/c.txt")
            run("curl", "-s", "-o", "/dev/null", "http://127.0.0.1/missing")

        capture = self.capture("tcp port 80", requests)
        _, report, _ = self.pktreplay(capture, "--target", "127.0.0.1", "--compare",
                                      expect_exit=0)
        self.assertEqual(self.statuses(report), ["complete"] * 3)
        self.assertEqual([flow["plugin"] for flow in report["flows"]], ["http"] * 3)
        self.assertEqual(report["flows"][0]["turns"], 4)  # request, response, request, response
        self.assertGreater(report["flows"][0]["bytes_received"], 200_000)

        write_files(root, {"big.bin": pattern(200_000, 2)})  # same size, other content
        _, report, _ = self.pktreplay(capture, "--target", "127.0.0.1", "--compare",
                                      expect_exit=1)
        first = report["flows"][0]
        self.assertEqual((first["status"], first["turn"]), ("response_differs", 4))
        self.assertEqual(self.statuses(report)[1:], ["complete"] * 2)

    def test_ftp_data_connection_is_replayed_to_the_port_the_live_server_announces(self):
        content = pattern(300_000, 3)
        self.vsftpd({"file.bin": content})
        scratch = self.scratch()
        download = os.path.join(scratch, "download.bin")
        capture = self.capture("tcp", lambda: run("curl", "-s", "--ftp-pasv", "-o", download,
                                                  "ftp://127.0.0.1/file.bin"))
        _, report, _ = self.pktreplay(capture, "--target", "127.0.0.1", "--compare",
                                      expect_exit=0)
        control, data = report["flows"]
        self.assertEqual((control["status"], control["plugin"]), ("complete", "ftp"))
        self.assertEqual((data["status"], data["parent"]), ("complete", control["id"]))
        self.assertNotEqual(data["live_server"], data["recorded_server"])  # a new passive port
        self.assertEqual(data["bytes_received"], len(content))

    def test_dns_queries_over_udp_get_one_answer_each(self):
        self.server("dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                    "--listen-address=127.0.0.1", "--bind-interfaces", "--user=root",
                    "--pid-file=", "--address=/a.test/10.1.1.1", "--address=/b.test/10.2.2.2",
                    port=53, udp=True)

        def queries():
            for name in ("a.test", "b.test", "www.a.test"):
                run("dig", "@127.0.0.1", name, "+short", "+tries=1")

        capture = self.capture("udp port 53", queries)
        _, report, _ = self.pktreplay(capture, "--target", "127.0.0.1", "--compare",
                                      expect_exit=0)
        self.assertEqual(self.statuses(report), ["complete"] * 3)
        self.assertEqual({flow["plugin"] for flow in report["flows"]}, {"dns"})

    def test_reordered_retransmitted_and_overlapping_segments_replay_as_one_request(self):
        self.nginx({"index.html": b"hello\n"})
        path = os.path.join(self.scratch(), "reordered.pcap")
        request = b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        response = (b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
        self.synthetic_http(path, request, response, reorder=True)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", expect_exit=0)
        (flow,) = report["flows"]
        self.assertEqual(flow["status"], "complete")
        self.assertEqual(flow["bytes_sent"], len(request))  # each byte once, in order

    def test_pcapng_and_ipv6_captures(self):
        self.nginx({"index.html": b"hello\n"})
        request = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
        conversation = pw.TcpConversation("::1", 41001, "::1", 80).handshake()
        conversation.client_says(request).server_says(b"HTTP/1.1 200 OK\r\n"
                                                      b"Content-Length: 6\r\n\r\nhello\n")
        path = os.path.join(self.scratch(), "v6.pcapng")
        pw.write_pcapng(path, conversation.close().packets)
        _, report, _ = self.pktreplay(path, "--target", "::1", expect_exit=0)
        (flow,) = report["flows"]
        self.assertEqual((flow["status"], flow["live_server"]), ("complete", "[::1]:80"))

        capture = self.capture("tcp port 80", lambda: run("curl", "-s", "-o", "/dev/null", "-g",
                                                          "http://[::1]/index.html"))
        _, report, _ = self.pktreplay(capture, "--target", "::1", "--compare", expect_exit=0)
        self.assertEqual(self.statuses(report), ["complete"])

    def test_500_flows_at_once(self):
        self.nginx({"index.html": b"hello\n"})
        packets = []
        for i in range(500):
            conversation = pw.TcpConversation(f"127.0.{i // 200}.{i % 200 + 2}", 20000 + i,
                                              "127.0.0.1", 80, time=i * 0.0001)
            conversation.handshake().client_says(
                b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n").server_says(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n").close()
            packets += conversation.packets
        packets.sort(key=lambda p: p[0])
        path = os.path.join(self.scratch(), "many.pcap")
        pw.write_pcap(path, packets)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", "--concurrency", "500",
                                      expect_exit=0)
        self.assertEqual(self.statuses(report), ["complete"] * 500)

    def test_broken_captures_and_unreachable_targets_fail_clearly(self):
        self.nginx({"index.html": b"hello\n"})
        scratch = self.scratch()
        good = os.path.join(scratch, "good.pcap")
        self.synthetic_http(good, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

        truncated = os.path.join(scratch, "truncated.pcap")
        with open(good, "rb") as f:
            data = f.read()
        with open(truncated, "wb") as f:
            f.write(data[:len(data) - 30])
        status, _, stderr = self.pktreplay(truncated, "--target", "127.0.0.1")
        self.assertEqual(status, 3)
        self.assertIn("truncated.pcap: after packet 9: truncated dump file", stderr)

        wifi = os.path.join(scratch, "wifi.pcap")
        pw.write_pcap(wifi, [(0, b"\0" * 40)], linktype=105, frame=lambda packet: packet)
        status, _, stderr = self.pktreplay(wifi, "--target", "127.0.0.1")
        self.assertEqual(status, 3)
        self.assertIn("unsupported link type IEEE802_11", stderr)

        pings = os.path.join(scratch, "pings.pcap")
        pw.write_pcap(pings, [(0, pw.ip_packet("10.0.0.1", "10.0.0.2", 1, b"\x08\0\0\0\0\0\0\0")),
                              (0.1, b"\x45garbage-that-is-no-ip-packet-at-all")])
        status, _, stderr = self.pktreplay(pings, "--target", "127.0.0.1")
        self.assertEqual(status, 3)
        self.assertIn("nothing to replay (2 IP packets, no TCP or UDP flow carrying data; left out: "
                      "1 not parsed (bad lengths or headers), 1 neither TCP nor UDP)", stderr)

        status, report, stderr = self.pktreplay(good, "--target", "127.0.0.1:81")
        self.assertEqual(status, 1)
        self.assertEqual(self.statuses(report), ["refused"])
        self.assertIn("refused or could not be reached for every flow", stderr)

        status, _, stderr = self.pktreplay(good, "--target", "localhost")
        self.assertEqual(status, 2)
        self.assertIn("bad --target 'localhost'", stderr)

    def test_original_timing_keeps_the_recorded_gaps_scaled_by_speed(self):
        self.nginx({"index.html": b"hello\n"})
        packets = []
        for i, start in enumerate((0.0, 1.2)):  # the second flow starts 1.2 s after the first
            conversation = pw.TcpConversation("127.0.0.1", 42000 + i, "127.0.0.1", 80,
                                              time=start)
            conversation.handshake().client_says(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
            conversation.server_says(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
            packets += conversation.close().packets
        path = os.path.join(self.scratch(), "gap.pcap")
        pw.write_pcap(path, packets)
        # Lower bounds only: a busy machine may be slower, never faster than the recording.
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", "--timing", "original",
                                      expect_exit=0)
        self.assertGreaterEqual(report["summary"]["elapsed_s"], 1.2)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", "--timing", "original",
                                      "--speed", "2", expect_exit=0)
        self.assertGreaterEqual(report["summary"]["elapsed_s"], 0.6)

    def test_silent_and_stalled_servers_and_the_memory_cap(self):
        tcp_listener(self, "127.0.0.1", 8080)  # accepts connections, never answers
        path = os.path.join(self.scratch(), "silent.pcap")
        self.synthetic_http(path, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1:8080", "--turn-timeout",
                                      "200", expect_exit=1)
        self.assertEqual([(f["status"], f["turn"]) for f in report["flows"]],
                         [("server_silent", 2)])
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1:8080", "--turn-timeout",
                                      "60000", "--flow-timeout", "300", expect_exit=1)
        self.assertEqual([(f["status"], f["turn"]) for f in report["flows"]], [("stalled", 2)])

        big = os.path.join(self.scratch(), "big.pcap")
        self.synthetic_http(big, b"GET / HTTP/1.1\r\n\r\n", b"x" * (3 << 20))
        status, _, stderr = self.pktreplay(big, "--target", "127.0.0.1", "--max-memory", "2")
        self.assertEqual(status, 3)
        self.assertIn("big.pcap: its packets take more than 2 MiB (--max-memory)", stderr)

    def test_a_server_that_streams_on_costs_no_more_than_the_turn_cap(self):
        def answer(listener, megabytes):
            connection, _ = listener.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                for _ in range(megabytes):
                    connection.sendall(b"x" * (1 << 20))

        path = os.path.join(self.scratch(), "stream.pcap")
        self.synthetic_http(path, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nshort")
        # Under AddressSanitizer freed buffers wait in a quarantine (256 MiB by default) that
        # would count as kept; without one, the sanitizer's memory is the baseline's too.
        asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=0"]))
        env = dict(os.environ, PKTBROKER_PLUGIN_PATH=PLUGINS, ASAN_OPTIONS=asan)

        def replay_against(port, megabytes):
            listener = tcp_listener(self, "127.0.0.1", port)
            threading.Thread(target=answer, args=(listener, megabytes), daemon=True).start()
            result = subprocess.run(["/usr/bin/time", "-f", "maxrss_kib=%M", PKTREPLAY, "--json",
                                     path, "--target", f"127.0.0.1:{port}",
                                     "--max-flow-memory", "1"],
                                    capture_output=True, text=True, env=env, timeout=120)
            (flow,) = json.loads(result.stdout)["flows"]
            self.assertEqual((flow["status"], flow["plugin"]), ("complete", "http"))
            self.assertGreater(flow["bytes_received"], megabytes << 20)
            return int(result.stderr.split("maxrss_kib=")[1]) / 1024

        # The same replay with a 1 MiB answer is the baseline: it carries whatever the build
        # adds to every run (a sanitizer's shadow memory, its allocator's caches).
        baseline_mib = replay_against(8082, 1)
        # The http plugin waits for the close: all 64 MiB pass through one server turn.
        streamed_mib = replay_against(8081, 64)
        self.assertLess(streamed_mib - baseline_mib, 16,
                        f"the turn's bytes were kept beyond --max-flow-memory "
                        f"({streamed_mib:.1f} MiB against {baseline_mib:.1f} MiB for 1 MiB)")

    def test_a_bad_packet_is_counted_and_skipped(self):
        self.nginx({"index.html": b"hello\n"})
        path = os.path.join(self.scratch(), "with-garbage.pcap")
        conversation = pw.TcpConversation("127.0.0.1", 41002, "127.0.0.1", 80).handshake()
        conversation.client_says(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n").server_says(
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n").close()
        packets = conversation.packets
        packets.insert(2, (0.0015, b"\x45\0\0\x10" + b"\0" * 20))  # total length < header
        pw.write_pcap(path, packets)
        _, report, _ = self.pktreplay(path, "--target", "127.0.0.1", expect_exit=0)
        self.assertEqual(report["capture"]["bad_packets"], 1)
        self.assertEqual(self.statuses(report), ["complete"])


if __name__ == "__main__":
    main()
