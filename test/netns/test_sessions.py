"""Client sessions sharing one kernel queue: dispatch by mark, observe vs verdict, exclusive,
chain and balance subscriptions, and exactly one verdict per packet whatever clients do."""

import os
import signal
import socket
import struct
import time

import wire
from netns import (ClientProcess, NetnsTestCase, UdpSink, kernel_queues, main, mark_ports, run,
                   send_udp, wait_for)

POLICY = """broker:
  queues: [{num: 0, max_len: 8192}]
  default_verdict: accept
"""


class Sessions(NetnsTestCase):
    def setUp(self):
        super().setUp()
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")

    def client(self, daemon, *args, **options):
        """A client that has subscribed."""
        c = ClientProcess(self, daemon, *args, **options)
        c.wait_line("ready")
        return c

    def test_eight_clients_each_receive_exactly_their_mark(self):
        daemon = self.daemon(POLICY, log_level="info")
        mark_ports(8)
        clients = {i: self.client(daemon, name=f"m{i}", selector=f"{{mark: {i}}}")
                   for i in range(1, 9)}
        sinks = {i: UdpSink(self, "127.0.0.1", 6000 + i) for i in range(1, 9)}
        for i in range(1, 9):
            send_udp("127.0.0.1", 6000 + i, 25)
        for i in range(1, 9):
            self.assertEqual(sinks[i].settle(25), 25)
            wait_for(lambda: len(clients[i].packets()) == 25, what=f"client {i}'s packets")
            packets = clients[i].packets()
            self.assertEqual({p["mark"] for p in packets}, {str(i)})
            self.assertEqual({p["dport"] for p in packets}, {str(6000 + i)})
        stats = daemon.stats()["queue"]
        self.assertEqual(stats["delivered"], 200)
        self.assertEqual(stats["client_verdicts"], 200)
        self.assertEqual(stats["outstanding"], 0)
        self.assertEqual(daemon.stop(), 0)

    def test_batched_reads_and_verdict_batches_decide_every_packet(self):
        daemon = self.daemon(POLICY)
        mark_ports(1)
        client = self.client(daemon, name="batch", selector="{mark: 1}", verdict="drop",
                             batch="64", batch_delay_ms="50", count="500")
        sink = UdpSink(self, "127.0.0.1", 6001)
        send_udp("127.0.0.1", 6001, 500)
        self.assertEqual(client.wait_exit(), 0)
        done = client.wait_line("done")
        largest = int(done.split("largest_batch=")[1])
        self.assertGreater(largest, 1)  # packets piled up during the delay were read together
        self.assertLessEqual(largest, 64)
        self.assertEqual(sink.settle(), 0)
        stats = daemon.stats()["queue"]
        self.assertEqual((stats["delivered"], stats["client_verdicts"], stats["dropped"]),
                         (500, 500, 500))

    def test_packets_waiting_together_reach_a_client_in_batches(self):
        # Stopped, the broker lets the kernel queue fill; resumed, it reads 32 packets per
        # receive and sends each session one datagram per receive (PACKET_BATCH).
        daemon = self.daemon(POLICY)
        mark_ports(2)
        for i in (1, 2):
            self.client(daemon, name=f"m{i}", selector=f"{{mark: {i}}}",
                        verdict="drop" if i == 1 else "accept", quiet=1)
        sink = UdpSink(self, "127.0.0.1", 6002)
        daemon.process.send_signal(signal.SIGSTOP)
        try:
            for i in (1, 2):
                send_udp("127.0.0.1", 6000 + i, 300, payload=i.to_bytes(1, "big") * 200)
            try:
                wait_for(lambda: kernel_queues().get(0, {}).get("queue_total", 0) == 600,
                         what="600 packets waiting in the kernel queue")
            except AssertionError as error:
                raise AssertionError(f"{error}: {kernel_queues()}") from None
        finally:
            daemon.process.send_signal(signal.SIGCONT)
        self.assertEqual(sink.settle(300), 300)
        wait_for(lambda: daemon.stats()["queue"]["client_verdicts"] == 600, what="600 verdicts")
        stats = daemon.stats()["queue"]
        self.assertEqual((stats["delivered"], stats["dropped"], stats["outstanding"]),
                         (600, 300, 0))
        self.assertLessEqual(stats["client_datagrams"], 600 // 8)
        self.assertEqual(daemon.stop(), 0)

    def test_a_client_that_stops_reading_but_keeps_sending_is_closed_within_seconds(self):
        # Its answers fail (EPIPE): the broker stops writing, and closes the session within a
        # second instead of serving requests nobody reads.
        daemon = self.daemon(POLICY)
        client = wire.WireClient(daemon.socket)
        self.addCleanup(client.sock.close)
        client.send(wire.hello("deaf"))
        client.expect(wire.WELCOME)
        client.sock.shutdown(socket.SHUT_RD)
        deadline = time.monotonic() + 10
        with self.assertRaises(BrokenPipeError, msg="the broker kept the session"):
            while time.monotonic() < deadline:
                client.send(wire.frame(wire.PING, b"", 5))
                time.sleep(0.05)
        self.assertEqual(daemon.stop(), 0)

    def test_a_libpktbroker_client_that_asks_for_no_batches_gets_one_packet_a_datagram(self):
        # The same pile-up as above, for a client whose HELLO asks for no features (an older
        # client): every packet comes as a PACKET of its own, and it still decides them all.
        daemon = self.daemon(POLICY)
        mark_ports(1)
        self.client(daemon, name="plain", selector="{mark: 1}", verdict="accept", quiet=1,
                    features=0, batch=64)
        sink = UdpSink(self, "127.0.0.1", 6001)
        daemon.process.send_signal(signal.SIGSTOP)
        try:
            send_udp("127.0.0.1", 6001, 300)
            wait_for(lambda: kernel_queues().get(0, {}).get("queue_total", 0) == 300,
                     what="300 packets waiting in the kernel queue")
        finally:
            daemon.process.send_signal(signal.SIGCONT)
        self.assertEqual(sink.settle(300), 300)
        stats = daemon.stats()["queue"]
        self.assertEqual((stats["delivered"], stats["client_verdicts"], stats["client_datagrams"]),
                         (300, 300, 300))
        self.assertEqual(daemon.stop(), 0)

    def test_batches_go_only_to_clients_that_ask_for_them_in_hello(self):
        # Two raw clients, one asking for PACKET_BATCH and one not (an older client, or one that
        # reads into a buffer of its own like the nfq shim): with packets piled up while the
        # broker is stopped, only the first gets several in one datagram.
        daemon = self.daemon(POLICY)
        mark_ports(2)
        clients = {}
        for mark, features in ((1, wire.FEATURE_PACKET_BATCH), (2, 0)):
            client = wire.WireClient(daemon.socket)
            self.addCleanup(client.sock.close)
            client.send(wire.hello(f"raw{mark}", features=features))
            welcome = client.expect(wire.WELCOME)[2]
            (version_length,) = struct.unpack_from("!H", welcome, 6)
            trailing = welcome[8 + version_length:]  # after version, session, roles, version
            self.assertEqual(trailing, struct.pack("!I", features) if features else b"")
            client.send(wire.subscribe(f"{{mark: {mark}}}", fallback=wire.ACCEPT))
            client.expect(wire.SUBSCRIBED)
            clients[mark] = client
        daemon.process.send_signal(signal.SIGSTOP)
        try:
            for mark in (1, 2):
                send_udp("127.0.0.1", 6000 + mark, 100)
            wait_for(lambda: kernel_queues().get(0, {}).get("queue_total", 0) == 200,
                     what="200 packets waiting in the kernel queue")
        finally:
            daemon.process.send_signal(signal.SIGCONT)
        # Feature bits the broker does not know are not granted: no word comes back for them.
        unknown = wire.WireClient(daemon.socket)
        self.addCleanup(unknown.sock.close)
        unknown.send(wire.hello("unknown", features=0xfffffffe))
        welcome = unknown.expect(wire.WELCOME)[2]
        self.assertEqual(len(welcome), 8 + struct.unpack_from("!H", welcome, 6)[0])
        sinks = {mark: UdpSink(self, "127.0.0.1", 6000 + mark) for mark in clients}
        for mark, client in clients.items():
            kinds, packets = [], 0
            while packets < 100:
                data = client.sock.recv(1 << 18)
                kinds.append(data[3])
                batch = wire.parse(data)[2]
                client.send(wire.verdict_batch([(p["token"], wire.ACCEPT) for p in batch]))
                packets += len(batch)
            self.assertEqual(packets, 100)
            if mark == 1:
                self.assertIn(wire.PACKET_BATCH, kinds)
                self.assertLess(len(kinds), 100)
            else:
                self.assertEqual(set(kinds), {wire.PACKET})
                self.assertEqual(len(kinds), 100)
        self.assertEqual({mark: sink.settle(100) for mark, sink in sinks.items()},
                         {1: 100, 2: 100})
        self.assertEqual(daemon.stop(), 0)

    def test_observer_gets_copies_and_cannot_decide(self):
        daemon = self.daemon(POLICY)
        mark_ports(1)
        dropper = self.client(daemon, name="dropper", selector="{mark: 1}", verdict="drop")
        observer = self.client(daemon, name="watch", mode="observe", selector="{mark: 1}")
        sink = UdpSink(self, "127.0.0.1", 6001)
        send_udp("127.0.0.1", 6001, 10)
        wait_for(lambda: len(observer.packets()) == 10, what="observer copies")
        self.assertEqual(sink.settle(), 0)
        wait_for(lambda: len(dropper.packets()) == 10, what="the dropper's packets")
        self.assertEqual({p["verdict_needed"] for p in observer.packets()}, {"0"})
        self.assertEqual({p["verdict_needed"] for p in dropper.packets()}, {"1"})
        stats = daemon.stats()["queue"]
        self.assertEqual((stats["observed"], stats["delivered"], stats["dropped"]), (10, 10, 10))

    def test_second_exclusive_subscriber_gets_busy_naming_the_holder(self):
        daemon = self.daemon(POLICY)
        first = self.client(daemon, name="first", selector="{mark: 1}")
        second = ClientProcess(self, daemon, name="second", selector="{mark: 1}")
        line = second.wait_line("error")
        self.assertIn("code=3", line)
        self.assertIn("exclusive subscription 'first'", line)
        self.assertEqual(second.wait_exit(), 1)
        other_mark = self.client(daemon, name="third", selector="{mark: 2}")  # no overlap
        self.assertIn("ready", other_mark.lines[0])
        self.assertIn("ready", first.lines[0])

    def test_chain_pass_hands_on_then_to_the_policy(self):
        daemon = self.daemon(POLICY)
        mark_ports(2)
        first = self.client(daemon, name="chain", clash="chain", priority=1, verdict="pass",
                            selector="{proto: udp}")
        second = self.client(daemon, name="chain", clash="chain", priority=2, verdict="drop",
                             selector="{mark: 1}")
        dropped, passed = UdpSink(self, "127.0.0.1", 6001), UdpSink(self, "127.0.0.1", 6002)
        send_udp("127.0.0.1", 6001, 10)  # first passes, second drops
        send_udp("127.0.0.1", 6002, 10)  # first passes, second does not select: policy accepts
        self.assertEqual(passed.settle(10), 10)
        self.assertEqual(dropped.settle(), 0)
        wait_for(lambda: len(first.packets()) == 20, what="the first link's packets")
        wait_for(lambda: len(second.packets()) == 10, what="the second link's packets")
        self.assertEqual(daemon.stats()["queue"]["passes"], 20)

    def test_balance_keeps_each_flow_on_one_client(self):
        daemon = self.daemon(POLICY)
        workers = [self.client(daemon, name="bal", clash="balance") for _ in range(2)]
        sink = UdpSink(self, "127.0.0.1", 7000)
        flows = []
        for _ in range(24):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            flows.append(s)
            self.addCleanup(s.close)
        for _ in range(4):
            for s in flows:
                s.sendto(b"x", ("127.0.0.1", 7000))
        self.assertEqual(sink.settle(96), 96)
        seen = [{p["sport"] for p in w.packets()} for w in workers]
        self.assertEqual(seen[0] & seen[1], set())  # no flow split across workers
        self.assertEqual(len(seen[0] | seen[1]), 24)
        self.assertTrue(seen[0] and seen[1], "both workers got flows")
        for w in workers:
            counts = {}
            for p in w.packets():
                counts[p["sport"]] = counts.get(p["sport"], 0) + 1
            self.assertEqual(set(counts.values()), {4})

    def test_killed_client_packets_take_their_fallback_at_once(self):
        daemon = self.daemon(POLICY)
        # A long timeout: only the disconnect can release the packets in time.
        client = self.client(daemon, name="crash", die_after=1, timeout_ms=60000,
                             fallback="accept")
        sink = UdpSink(self, "127.0.0.1", 7000)
        send_udp("127.0.0.1", 7000, 100)
        self.assertEqual(client.wait_exit(), 3)
        self.assertEqual(sink.settle(100), 100)
        wait_for(lambda: kernel_queues()[0]["queue_total"] == 0, what="the kernel queue to drain")
        stats = daemon.stats()["queue"]
        self.assertGreaterEqual(stats["disconnect_fallbacks"], 1)
        self.assertEqual(stats["client_verdicts"], 0)  # it died before answering
        self.assertEqual(stats["accepted"], 100)
        self.assertEqual(stats["outstanding"], 0)

    def test_unanswered_packets_time_out_to_the_fallback(self):
        daemon = self.daemon(POLICY)
        self.client(daemon, name="silent", verdict="none", timeout_ms=200, fallback="drop")
        sink = UdpSink(self, "127.0.0.1", 7000)
        send_udp("127.0.0.1", 7000, 20)
        wait_for(lambda: daemon.stats()["queue"]["timeouts"] == 20, what="timeouts")
        self.assertEqual(sink.settle(), 0)
        self.assertEqual(daemon.stats()["queue"]["dropped"], 20)

    def test_verdict_for_a_foreign_token_is_rejected(self):
        daemon = self.daemon(POLICY)
        owner = self.client(daemon, name="owner", selector="{mark: 1}", verdict="none",
                            timeout_ms=60000)
        mark_ports(1)
        send_udp("127.0.0.1", 6001, 1)
        token = owner.wait_line("packet").split()[1].split("=")[1]
        thief = self.client(daemon, name="thief", selector="{mark: 2}", foreign_token=token)
        self.assertIn("code=5", thief.wait_line("error"))
        self.assertEqual(daemon.stats()["queue"]["rejected_verdicts"], 1)
        self.assertEqual(daemon.stats()["queue"]["outstanding"], 1)  # still the owner's

    def test_stalled_client_overflows_and_others_keep_flowing(self):
        daemon = self.daemon(POLICY, socket_options="queue_limit: 32")
        mark_ports(2)
        stalled = self.client(daemon, name="stalled", selector="{mark: 1}", stall=1,
                              timeout_ms=60000)
        healthy = self.client(daemon, name="healthy", selector="{mark: 2}")
        stalled_sink, healthy_sink = UdpSink(self, "127.0.0.1", 6001), UdpSink(self, "127.0.0.1", 6002)
        send_udp("127.0.0.1", 6001, 3000, payload=b"x" * 1000)
        send_udp("127.0.0.1", 6002, 50, rate=500)
        self.assertEqual(healthy_sink.settle(50), 50)
        wait_for(lambda: len(healthy.packets()) == 50, what="the healthy client's packets")
        self.assertEqual(daemon.stats()["queue"]["client_verdicts"], 50)
        stats = daemon.stats()["queue"]
        self.assertGreater(stats["overflows"], 0)
        # Overflowed packets took their fallback (accept) at once.
        self.assertGreaterEqual(stalled_sink.settle(stats["overflows"]), stats["overflows"])
        # Killing it with writes in flight releases the rest (regression: a use-after-free when
        # a session closed while a write was pending).
        stalled.kill()
        self.assertEqual(stalled_sink.settle(3000), 3000)
        self.assertEqual(daemon.stats()["queue"]["outstanding"], 0)
        self.assertEqual(daemon.stop(), 0)

    def test_malformed_frames_close_only_that_session(self):
        daemon = self.daemon(POLICY)
        worker = self.client(daemon, name="worker")
        sink = UdpSink(self, "127.0.0.1", 7000)
        for raw in ("deadbeef", "504201060000000100000000000000000000",
                    "5042010300001000000000010000000000"):
            bad = ClientProcess(self, daemon, raw=raw)
            self.assertEqual(bad.wait_exit(), 0)
            self.assertIn("code=1", " ".join(bad.lines))
            self.assertIn("closed=1", bad.lines)
        send_udp("127.0.0.1", 7000, 10)
        self.assertEqual(sink.settle(10), 10)
        wait_for(lambda: len(worker.packets()) == 10, what="the worker's packets")
        daemon.stats()
        self.assertIn("stats clients malformed_frames=3 ", daemon.log())

    def test_a_user_without_a_grant_is_refused(self):
        daemon = self.daemon(POLICY + "clients:\n  - {user: root, roles: [verdict]}\n")
        os.chmod(daemon.socket, 0o666)
        os.chmod(daemon.dir, 0o755)
        refused = ClientProcess(self, daemon, name="intruder", user="nobody")
        line = refused.wait_line("error")
        self.assertIn("code=2", line)
        self.assertIn("no grant for uid 65534", line)
        self.assertEqual(refused.wait_exit(), 1)

    def test_replacement_payload_arrives_modified(self):
        daemon = self.daemon(POLICY)
        self.client(daemon, name="upper", uppercase=1)
        sink = UdpSink(self, "127.0.0.1", 7000)
        send_udp("127.0.0.1", 7000, 3, payload=b"hello broker")
        self.assertEqual(sink.settle(3), 3)
        self.assertEqual(set(sink.payloads), {b"HELLO BROKER"})

    def test_a_thousand_session_cycles_leave_nothing_behind(self):
        daemon = self.daemon(POLICY, log_level="info")
        sink = UdpSink(self, "127.0.0.1", 7000)
        for i in range(1000):
            c = ClientProcess(self, daemon, name=f"cycle{i}", count=0)
            self.assertEqual(c.wait_exit(), 0)
            if i % 100 == 0:
                send_udp("127.0.0.1", 7000, 5)
        self.assertEqual(sink.settle(50), 50)
        self.assertEqual(kernel_queues()[0]["queue_total"], 0)
        self.assertEqual(daemon.stats()["queue"]["outstanding"], 0)
        self.assertEqual(daemon.stop(), 0)

    def test_a_malformed_replacement_is_refused_and_the_packet_keeps_waiting(self):
        daemon = self.daemon(POLICY)
        client = self.client(daemon, name="bad", bad_payload=1, timeout_ms=300, fallback="drop")
        sink = UdpSink(self, "127.0.0.1", 7000)
        send_udp("127.0.0.1", 7000, 2)
        line = client.wait_line("error")
        self.assertIn("code=6", line)
        self.assertIn("not a well-formed IP packet", line)
        wait_for(lambda: daemon.stats()["queue"]["timeouts"] == 2, what="the fallback")
        self.assertEqual(sink.settle(), 0)

    def test_deliver_rule_hands_packets_to_named_subscribers(self):
        daemon = self.daemon(POLICY + """rules:
  - name: to-workers
    match: {proto: udp, dport: 7000}
    verdict: {deliver: workers, fallback: drop, timeout_ms: 300}
""")
        sink = UdpSink(self, "127.0.0.1", 7000)
        send_udp("127.0.0.1", 7000, 5)  # nobody subscribed as "workers": the fallback drops
        self.assertEqual(sink.settle(), 0)
        # Chain subscriptions may overlap; only the one named by the rule gets the packets.
        other = self.client(daemon, name="bystander", clash="chain", priority=-1)
        worker = self.client(daemon, name="workers", verdict="accept", clash="chain")
        send_udp("127.0.0.1", 7000, 5)
        self.assertEqual(sink.settle(5), 5)
        wait_for(lambda: len(worker.packets()) == 5, what="the worker's packets")
        self.assertEqual(other.packets(), [])  # it selects everything, but is not "workers"
        self.assertEqual(daemon.stats()["rules"]["to-workers"]["packets"], 10)

    def test_shutdown_releases_packets_held_by_clients(self):
        daemon = self.daemon(POLICY)
        run("iptables", "-R", "OUTPUT", "1", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0",
            "--queue-bypass")
        holder = self.client(daemon, name="holder", verdict="none", timeout_ms=60000)
        sink = UdpSink(self, "127.0.0.1", 7000)
        send_udp("127.0.0.1", 7000, 30)
        wait_for(lambda: len(holder.packets()) == 30, what="the holder's packets")
        self.assertEqual(sink.settle(), 0)
        self.assertEqual(daemon.stop(), 0)
        self.assertEqual(sink.settle(30), 30)  # every held packet got its fallback (accept)
        self.assertNotIn(0, kernel_queues())

    def test_a_grant_limits_what_its_sessions_see(self):
        daemon = self.daemon(POLICY + "clients:\n  - {user: nobody, roles: [verdict], allowed: {mark: 1}}\n")
        os.chmod(daemon.socket, 0o666)
        os.chmod(daemon.dir, 0o755)
        mark_ports(2)
        limited = ClientProcess(self, daemon, name="limited", user="nobody", verdict="drop")
        limited.wait_line("ready")
        first, second = UdpSink(self, "127.0.0.1", 6001), UdpSink(self, "127.0.0.1", 6002)
        send_udp("127.0.0.1", 6001, 10)
        send_udp("127.0.0.1", 6002, 10)
        self.assertEqual(second.settle(10), 10)  # outside the grant: the policy decides
        self.assertEqual(first.settle(), 0)      # inside: the limited client drops
        self.assertEqual({p["mark"] for p in limited.packets()}, {"1"})


if __name__ == "__main__":
    main()
