"""Protocol plugins on real traffic between real programs: dig against dnsmasq, curl against
nginx, TLS clients against openssl s_server, and a passive-mode FTP download from vsftpd through
a policy that keeps every other high port closed."""

import json
import os
import re
import socket
import time

from netns import (PLUGINS, NetnsTestCase, UdpSink, main, run, tcp_connects, tcp_listener,
                   wait_for)

QUEUE = "broker:\n  queues: [{num: 0}]\n  default_verdict: accept\n"


class Dns(NetnsTestCase):
    POLICY = QUEUE + """plugins:
  - name: dns
rules:
  - name: no-blocked-names
    match: {proto: udp, dport: 53, dns.qname: "*.blocked.test"}
    verdict: drop
  - name: no-mx
    match: {dns.qtype: MX}
    verdict: drop
"""

    def setUp(self):
        super().setUp()
        self.server("dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                    "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53",
                    "--user=root", "--pid-file=", "--log-queries", "--log-facility=-",
                    "--address=/allowed.test/10.1.1.1", "--address=/blocked.test/10.2.2.2",
                    "--address=/tracker.test/127.0.0.2", "--address=/web.test/127.0.0.1",
                    port=53, udp=True)
        run("iptables", "-A", "OUTPUT", "-p", "udp", "--dport", "53", "-j", "NFQUEUE",
            "--queue-num", "0")

    def dig(self, name, qtype="A", *options):
        result = run("dig", "@127.0.0.1", name, qtype, "+short", "+tries=1", "+time=1",
                     *options, check=False)
        return result.returncode, result.stdout.strip()

    def test_a_name_under_a_blocked_domain_gets_no_answer_and_others_resolve(self):
        daemon = self.daemon(self.POLICY)
        self.assertEqual(self.dig("allowed.test"), (0, "10.1.1.1"))
        self.assertEqual(self.dig("www.ALLOWED.test"), (0, "10.1.1.1"))
        self.assertEqual(self.dig("www.blocked.test")[0], 9)  # dig: no reply from the server
        self.assertEqual(self.dig("blocked.test")[0], 9)
        self.assertEqual(self.dig("allowed.test", "MX")[0], 9)
        stats = daemon.stats()
        self.assertEqual(stats["rules"]["no-blocked-names"]["packets"], 2)
        self.assertEqual(stats["rules"]["no-mx"]["packets"], 1)
        self.assertEqual(stats["queue"]["dropped"], 3)
        self.assertEqual(stats["queue"]["accepted"], 2)
        self.assertEqual(daemon.plugin_stats("dns")["queries"], 5)

    def test_queries_over_tcp_are_read_from_the_stream(self):
        daemon = self.daemon(QUEUE + """plugins: [{name: dns}]
rules:
  - {name: no-blocked-names, match: {dns.qname: "*.blocked.test"}, verdict: drop}
""")
        run("iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "53", "-j", "NFQUEUE",
            "--queue-num", "0")
        self.assertEqual(self.dig("allowed.test", "A", "+tcp"), (0, "10.1.1.1"))
        self.assertEqual(self.dig("www.blocked.test", "A", "+tcp")[0], 9)
        with socket.create_connection(("127.0.0.1", 53), timeout=2) as s:
            s.sendall(b"\x03\x00" + b"\0" * 768)  # longer than any query the plugin holds
            time.sleep(0.2)
        daemon.stats()
        counters = daemon.plugin_stats("dns")
        self.assertEqual(counters["tcp_query_too_long"], 1)
        self.assertEqual(counters["queries"], 2)
        # The query and the rest of its connection (retransmissions, FIN): the field stays.
        self.assertGreaterEqual(daemon.stats()["rules"]["no-blocked-names"]["packets"], 1)

    def test_malformed_queries_are_counted_and_dropped_when_inspected(self):
        daemon = self.daemon(QUEUE + """plugins:
  - name: dns
    config: {drop_malformed: true}
rules:
  - name: dns
    match: {proto: udp, dport: 53}
    verdict: {inspect: [dns], fallback: accept}
""")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc", ("127.0.0.1", 53))
            # A compression pointer pointing at itself: a loop a careless parser follows forever.
            s.sendto(b"\x12\x35\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
                     ("127.0.0.1", 53))
        self.assertEqual(self.dig("allowed.test"), (0, "10.1.1.1"))
        stats = daemon.stats()
        self.assertEqual(stats["queue"]["dropped"], 2)
        self.assertEqual(stats["flows"]["plugin_verdicts"], 2)
        counters = daemon.plugin_stats("dns")
        self.assertEqual(counters["malformed_truncated"], 1)
        self.assertEqual(counters["malformed_pointer_loop"], 1)
        self.assertEqual(counters["queries"], 1)
        # pktbrokerctl shows the same plugin and flow counters.
        reply = run(os.environ["PKTBROKERCTL"], f"--socket={daemon.socket}", "stats", "--json")
        ctl = json.loads(reply.stdout)
        self.assertEqual(ctl["plugin dns"], counters)
        self.assertEqual(ctl["queue 0"]["plugin_verdicts"], 2)
        self.assertEqual(ctl["queue 0"]["flows_created"], stats["flows"]["flows_created"])

    def test_connections_to_addresses_given_out_for_a_blocked_name_are_dropped(self):
        run("ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
        daemon = self.daemon(QUEUE + """plugins: [{name: dns}]
rules:
  - name: no-trackers
    match: {proto: tcp, dst_name: "*.tracker.test"}
    verdict: drop
""")
        run("iptables", "-A", "OUTPUT", "-p", "udp", "--sport", "53", "-j", "NFQUEUE",
            "--queue-num", "0")
        run("iptables", "-A", "OUTPUT", "-p", "tcp", "--syn", "-j", "NFQUEUE", "--queue-num", "0")
        for address in ("127.0.0.1", "127.0.0.2"):
            tcp_listener(self, address, 8080)
        self.assertTrue(tcp_connects("127.0.0.2", 8080))  # no name known for it yet
        self.assertEqual(self.dig("cdn.tracker.test"), (0, "127.0.0.2"))
        self.assertEqual(self.dig("www.web.test"), (0, "127.0.0.1"))
        self.assertFalse(tcp_connects("127.0.0.2", 8080, timeout=0.5))
        self.assertTrue(tcp_connects("127.0.0.1", 8080))
        stats = daemon.stats()
        self.assertGreaterEqual(stats["rules"]["no-trackers"]["packets"], 1)
        self.assertEqual(daemon.plugin_stats("dns")["responses"], 2)

    def test_an_unsolicited_answer_names_no_address(self):
        # Any local user can send a message with the response bit set towards port 53: it
        # must not teach the broker that 127.0.0.2 is cdn.tracker.test (nor unblock it).
        run("ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
        daemon = self.daemon(QUEUE + """plugins: [{name: dns}]
rules:
  - name: tracker-only
    match: {proto: tcp, dport: 8080, not: {dst_name: "*.tracker.test"}}
    verdict: drop
""")
        run("iptables", "-A", "OUTPUT", "-p", "udp", "--sport", "53", "-j", "NFQUEUE",
            "--queue-num", "0")
        run("iptables", "-A", "OUTPUT", "-p", "tcp", "--syn", "-j", "NFQUEUE", "--queue-num", "0")
        tcp_listener(self, "127.0.0.2", 8080)
        name = b"".join(bytes([len(p)]) + p for p in (b"cdn", b"tracker", b"test")) + b"\0"
        forged = (b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + name +
                  b"\x00\x01\x00\x01\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04"
                  b"\x7f\x00\x00\x02")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(forged, ("127.0.0.1", 53))
        self.assertFalse(tcp_connects("127.0.0.2", 8080, timeout=0.5))
        daemon.stats()
        self.assertEqual(daemon.plugin_stats("dns")["unsolicited_answer"], 1)
        # The real answer to a real query does name it.
        self.assertEqual(self.dig("cdn.tracker.test"), (0, "127.0.0.2"))
        self.assertTrue(tcp_connects("127.0.0.2", 8080))
        daemon.stats()
        self.assertEqual(daemon.plugin_stats("dns")["unsolicited_answer"], 1)

    def test_a_rule_on_a_field_of_a_plugin_not_loaded_is_refused(self):
        bad = QUEUE + "rules:\n  - {name: r, match: {dns.qname: x.test}, verdict: drop}\n"
        with self.assertRaisesRegex(AssertionError, "plugin 'dns' is used here but not loaded"):
            self.daemon(bad)
        typo = QUEUE + ("plugins: [{name: dns}]\n"
                        "rules:\n  - {name: r, match: {dns.qnam: x.test}, verdict: drop}\n")
        with self.assertRaisesRegex(AssertionError,
                                    r"plugin 'dns' has no field 'qnam' \(it publishes: qname"):
            self.daemon(typo)


class Http(NetnsTestCase):
    POLICY = QUEUE + """plugins: [{name: http}]
rules:
  - name: no-blocked-host
    match: {http.host: blocked.test}
    verdict: drop
  - name: no-admin
    match: {http.path: "/admin*"}
    verdict: drop
"""

    def setUp(self):
        super().setUp()
        self.nginx({"index.html": b"hello from nginx\n"})
        run("iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "80", "-j", "NFQUEUE",
            "--queue-num", "0")

    def curl(self, host, path="/"):
        result = run("curl", "-s", "--max-time", "3", "-H", f"Host: {host}",
                     f"http://127.0.0.1{path}", check=False)
        return result.returncode, result.stdout

    def request_in_two_segments(self, host):
        """Sends the request head split inside the Host header; returns the response or None."""
        with socket.create_connection(("127.0.0.1", 80), timeout=3) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"GET / HTTP/1.1\r\nHo")
            time.sleep(0.1)
            s.sendall(f"st: {host}\r\nConnection: close\r\n\r\n".encode())
            try:
                return s.recv(4096)
            except socket.timeout:
                return None

    def test_requests_for_a_blocked_host_or_path_never_reach_nginx(self):
        daemon = self.daemon(self.POLICY)
        self.assertEqual(self.curl("allowed.test"), (0, "hello from nginx\n"))
        self.assertEqual(self.curl("blocked.test")[0], 28)  # curl: timed out
        self.assertEqual(self.curl("BLOCKED.test:80")[0], 28)
        self.assertEqual(self.curl("allowed.test", "/admin/users")[0], 28)
        stats = daemon.stats()
        self.assertGreaterEqual(stats["rules"]["no-blocked-host"]["packets"], 2)
        self.assertGreaterEqual(stats["rules"]["no-admin"]["packets"], 1)
        self.assertEqual(daemon.plugin_stats("http")["requests"], 4)

    @staticmethod
    def response_complete(answer):
        head, separator, body = answer.partition(b"\r\n\r\n")
        if not separator:
            return False
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        return len(body) >= int(length.group(1)) if length else True

    def keep_alive(self, *requests):
        """Sends the requests one after another on one connection, each after the answer to
        the one before; returns the answers (None for the first that got none)."""
        answers = []
        with socket.create_connection(("127.0.0.1", 80), timeout=2) as s:
            for request in requests:
                s.sendall(request)
                answer = b""
                try:
                    while not self.response_complete(answer):
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        answer += chunk
                except socket.timeout:
                    answers.append(None)
                    return answers
                answers.append(answer)
        return answers

    def test_every_request_of_a_keep_alive_connection_is_inspected(self):
        daemon = self.daemon(self.POLICY)
        ok = b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
        lure = b"GET /admin HTTP/1.1\r\nX: y\r\n\r\n"  # a body that looks like a request
        post = (b"POST / HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: %d\r\n\r\n%s"
                % (len(lure), lure))
        chunked = (b"POST / HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n"
                   b"\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(lure), lure))
        admin = b"GET /admin/users HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
        answers = self.keep_alive(ok, post, ok, admin)
        self.assertEqual(len(answers), 4)
        self.assertIn(b"hello from nginx", answers[0])
        self.assertTrue(answers[1].startswith(b"HTTP/1.1 405"), answers[1])  # a static site
        self.assertIn(b"hello from nginx", answers[2])
        self.assertIsNone(answers[3])  # the fourth request is dropped: no answer
        # The chunked body's request-like chunk is skipped too (nginx closes after it).
        self.assertTrue(self.keep_alive(chunked)[0].startswith(b"HTTP/1.1 405"))
        stats = daemon.stats()
        counters = daemon.plugin_stats("http")
        self.assertEqual(counters["requests"], 5)
        self.assertEqual(counters["bad_header"] + counters["bad_chunked_body"] +
                         counters["unknown_body_length"], 0)
        self.assertGreaterEqual(stats["rules"]["no-admin"]["packets"], 1)

    def test_a_segment_ending_a_blocked_request_is_decided_by_it(self):
        # The segment ends GET /admin and starts another head. Held for that head, it would
        # take the next request's verdict and carry /admin through; it is dropped at once.
        daemon = self.daemon(self.POLICY)
        with socket.create_connection(("127.0.0.1", 80), timeout=2) as s:
            s.sendall(b"GET /admin HTTP/1.1\r\nHost: allowed.test\r\n\r\nGET / HTTP/1.1\r\nHo")
            wait_for(lambda: daemon.stats()["rules"]["no-admin"]["packets"] >= 1,
                     what="the no-admin rule")
            stats = daemon.stats()
            self.assertEqual(stats["flows"]["held"], 0)
            self.assertGreaterEqual(stats["queue"]["dropped"], 1)

    def test_a_dropped_request_stays_dropped_when_a_later_one_is_allowed(self):
        # GET /admin, and at once an allowed request after it: the retransmissions of the
        # dropped segment must not be judged by the allowed request's fields.
        daemon = self.daemon(self.POLICY)
        with socket.create_connection(("127.0.0.1", 80), timeout=2) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"GET /admin HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
            time.sleep(0.05)
            s.sendall(b"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
            with self.assertRaises(socket.timeout):
                s.recv(4096)
        stats = daemon.stats()
        self.assertGreaterEqual(stats["flows"]["redropped"], 1)  # retransmissions came

    def raw_request(self, request):
        """Sends the request on a connection of its own; returns the answer or None."""
        with socket.create_connection(("127.0.0.1", 80), timeout=2) as s:
            s.sendall(request)
            try:
                return s.recv(4096) or None
            except socket.timeout:
                return None

    def test_evasive_forms_of_a_blocked_path_are_blocked(self):
        daemon = self.daemon(self.POLICY)
        ok = self.raw_request(b"GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n")
        self.assertIn(b"hello from nginx", ok)
        padding = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(5))
        for request in (b"GET /%61dmin HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
                        b"GET /x/../admin HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
                        b"GET //admin HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
                        b"GET http://allowed.test/admin HTTP/1.1\r\nHost: x\r\n\r\n",
                        b"GET /admin HTTP/1.1\r\n" + padding + b"Host: allowed.test\r\n\r\n"):
            with self.subTest(request=request[:40]):
                self.assertIsNone(self.raw_request(request))
        self.assertGreaterEqual(daemon.stats()["rules"]["no-admin"]["packets"], 5)

    def test_a_head_split_across_segments_is_held_until_the_host_is_known(self):
        daemon = self.daemon(self.POLICY)
        self.assertIn(b"hello from nginx", self.request_in_two_segments("allowed.test"))
        self.assertIsNone(self.request_in_two_segments("blocked.test"))
        stats = daemon.stats()
        self.assertEqual(stats["flows"]["held"], 2)
        self.assertEqual(stats["flows"]["plugin_releases"], 2)  # decided with the second segment
        self.assertEqual(stats["flows"]["hold_timeouts"], 0)
        self.assertEqual(stats["queue"]["outstanding"], 0)


class Tls(NetnsTestCase):
    def setUp(self):
        super().setUp()
        scratch = self.scratch()
        key, cert = os.path.join(scratch, "key.pem"), os.path.join(scratch, "cert.pem")
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
            "-out", cert, "-days", "1", "-subj", "/CN=allowed.test")
        self.server("openssl", "s_server", "-quiet", "-accept", "127.0.0.1:443", "-key", key,
                    "-cert", cert, "-www", port=443)
        run("iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "443", "-j", "NFQUEUE",
            "--queue-num", "0")

    def curl(self, name):
        return run("curl", "-sk", "--max-time", "3", "--resolve", f"{name}:443:127.0.0.1",
                   f"https://{name}/", check=False).returncode

    def test_a_blocked_server_name_cannot_complete_a_handshake(self):
        daemon = self.daemon(QUEUE + """plugins: [{name: tls}]
rules:
  - name: no-blocked-sni
    match: {tls.sni: "*.blocked.test"}
    verdict: drop
""")
        self.assertEqual(self.curl("allowed.test"), 0)
        self.assertEqual(self.curl("www.blocked.test"), 28)
        stats = daemon.stats()
        self.assertGreaterEqual(stats["rules"]["no-blocked-sni"]["packets"], 1)
        self.assertEqual(daemon.plugin_stats("tls")["client_hellos"], 2)


class HoldBounds(NetnsTestCase):
    """A plugin that holds everything meets the broker's bounds: 16 held packets per flow and
    1,024 per queue. A packet past a bound is decided at once by the rule's fallback, and so
    are the packets its flow holds (before it, so the flow keeps its order); held packets left
    take the fallback at their deadline: every packet exactly once."""

    POLICY = QUEUE + f"""plugins:
  - {{name: hold_all, path: {os.environ.get("HOLD_ALL_PLUGIN", "")}, config: {{hold_ms: "1500"}}}}
rules:
  - name: held
    match: {{proto: udp, dport: 9000}}
    verdict: {{inspect: [hold_all], fallback: accept}}
"""

    def setUp(self):
        super().setUp()
        run("iptables", "-A", "OUTPUT", "-p", "udp", "--dport", "9000", "-j", "NFQUEUE",
            "--queue-num", "0")
        self.sink = UdpSink(self, "127.0.0.1", 9000)

    def send_flows(self, flows, per_flow):
        """`per_flow` numbered datagrams from each of `flows` sockets (a flow each), flow after
        flow. Returns the payloads in the order sent."""
        sent = []
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(flows)]
        try:  # all open until the end: a closed socket's port could start the next flow
            for flow, sock in enumerate(sockets):
                for number in range(per_flow):
                    sent.append(f"{flow}.{number}".encode())
                    sock.sendto(sent[-1], ("127.0.0.1", 9000))
        finally:
            for sock in sockets:
                sock.close()
        return sent

    def hold_counters(self, daemon):
        stats = daemon.stats()
        self.assertEqual(stats["queue"]["outstanding"], 0)
        self.assertEqual(stats["netlink_error"], {})
        return tuple(stats["flows"][k] for k in ("held", "hold_overflows", "plugin_releases",
                                                   "hold_timeouts"))

    def test_a_flow_holds_at_most_sixteen_packets(self):
        daemon = self.daemon(self.POLICY)
        sent = self.send_flows(1, 20)
        self.assertEqual(self.sink.settle(20, quiet=3), 20)
        # The 17th is over the bound: it and the 16 before it go at once, in order; the last 3
        # are held until their deadline.
        self.assertEqual(self.sink.payloads, sent)
        self.assertEqual(self.hold_counters(daemon), (19, 1, 16, 3))

    def test_a_queue_holds_at_most_1024_packets(self):
        daemon = self.daemon(self.POLICY)
        sent = self.send_flows(70, 16)  # 64 flows fill the queue's 1,024; 6 flows overflow
        self.assertEqual(self.sink.settle(len(sent), quiet=3), len(sent))
        self.assertEqual(sorted(self.sink.payloads), sorted(sent))
        self.assertEqual(self.sink.payloads[:96], sent[1024:])  # decided at once
        self.assertEqual(self.hold_counters(daemon), (1024, 96, 0, 1024))


class Ftp(NetnsTestCase):
    POLICY = QUEUE + """plugins: [{name: ftp}]
rules:
  - name: no-new-high-ports
    match: {proto: tcp, dport: "1024-65535", ct_state: new}
    verdict: drop
"""

    def setUp(self):
        super().setUp()
        self.content = os.urandom(200_000)
        self.vsftpd({"file.bin": self.content})
        self.target = os.path.join(self.scratch(), "download.bin")
        # Every TCP packet in both directions goes through the queue. This kernel sends no
        # conntrack state with queued packets: ct_state comes from pktbrokerd's flow table.
        run("iptables", "-A", "OUTPUT", "-p", "tcp", "-j", "NFQUEUE", "--queue-num", "0")

    def download(self, *curl_options):
        result = run("curl", "-s", "--max-time", "5", *curl_options, "-o", self.target,
                     "ftp://127.0.0.1/file.bin", check=False)
        if result.returncode != 0:
            return None
        with open(self.target, "rb") as f:
            return f.read()

    def test_passive_downloads_work_while_other_high_ports_stay_closed(self):
        events = os.path.join(self.scratch(), "eve.json")
        daemon = self.daemon(self.POLICY + f"events: {{file: {events}, types: [drop, accept]}}\n")
        tcp_listener(self, "127.0.0.1", 45000)
        self.assertFalse(tcp_connects("127.0.0.1", 45000, timeout=0.5))
        self.assertTrue(self.download("--ftp-pasv", "--disable-epsv") == self.content, "PASV")
        self.assertTrue(self.download("--ftp-pasv") == self.content, "EPSV")
        stats = daemon.stats()
        self.assertEqual(stats["flows"]["expectations_matched"], 2)
        self.assertGreaterEqual(stats["flows"]["expected_flow_packets"], 10)  # 2 x handshake, data, FIN
        self.assertEqual(daemon.plugin_stats("ftp")["data_connections"], 2)
        # The event log says which packets came through as expected flows, and what was closed.
        def read_events():
            with open(events) as f:
                return [json.loads(line) for line in f]
        wait_for(lambda: len(read_events()) >= stats["queue"]["packets"],
                 what="every verdict in the event log")
        logged = read_events()
        expected = [e for e in logged if e["pktbroker"]["decided_by"] == "expected_flow"]
        self.assertEqual(len(expected), stats["flows"]["expected_flow_packets"])
        self.assertTrue(all(e["event_type"] == "accept" and e["proto"] == "TCP" for e in expected))
        closed = [e for e in logged if e["event_type"] == "drop" and e.get("dest_port") == 45000]
        self.assertTrue(closed)
        self.assertEqual(closed[0]["pktbroker"]["rule"], "no-new-high-ports")

    def test_active_downloads_work_too(self):
        daemon = self.daemon(self.POLICY.replace("{name: ftp}", f"{{name: ftp, path: {PLUGINS}}}"))
        self.assertTrue(self.download("--ftp-port", "127.0.0.1") == self.content, "EPRT")
        self.assertTrue(self.download("--ftp-port", "127.0.0.1", "--disable-eprt") ==
                        self.content, "PORT")
        self.assertEqual(daemon.stats()["flows"]["expectations_matched"], 2)

    def test_a_port_command_naming_another_host_opens_nothing(self):
        # FTP bounce: PORT naming a third host must not let anyone reach it through the hole.
        daemon = self.daemon(self.POLICY)
        with socket.create_connection(("127.0.0.1", 21), timeout=2) as s:
            s.recv(1024)
            s.sendall(b"PORT 127,0,0,9,200,10\r\n")
            s.sendall(b"EPRT |1|10.1.2.3|51210|\r\n")
            time.sleep(0.3)
        stats = daemon.stats()
        self.assertEqual(daemon.plugin_stats("ftp")["foreign_address"], 2)
        self.assertEqual(daemon.plugin_stats("ftp")["data_connections"], 0)
        self.assertEqual(stats["flows"]["expectations_matched"], 0)

    def test_without_the_ftp_plugin_the_data_connection_is_dropped(self):
        self.daemon(self.POLICY.replace("{name: ftp}", "{name: http}"))
        self.assertTrue(self.download("--ftp-pasv") is None, "the download went through")


if __name__ == "__main__":
    main()
