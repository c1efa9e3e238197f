"""The example programs in client/examples, run against a live broker."""

import os
import re
import signal
import socket
import subprocess

from netns import NetnsTestCase, UdpSink, main, run, send_udp, wait_for

EXAMPLES = os.environ.get("EXAMPLES", "")
POLICY = "broker:\n  queues: [{num: 0}]\n  default_verdict: accept\n"


class Examples(NetnsTestCase):
    def start(self, name, *args):
        process = subprocess.Popen([os.path.join(EXAMPLES, f"pktbroker_{name}"), *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        return process

    def test_observer_prints_tcpdump_like_lines(self):
        daemon = self.daemon(POLICY)
        run("iptables", "-A", "OUTPUT", "-j", "NFQUEUE", "--queue-num", "0")
        observer = self.start("observer", daemon.socket)
        wait_for(lambda: "subscription" in daemon.log(), what="the observer to subscribe")
        run("ping", "-c2", "-W1", "127.0.0.1")
        sink = UdpSink(self, "127.0.0.1", 7000)
        send_udp("127.0.0.1", 7000, 1)
        sink.settle(1)
        wait_for(lambda: daemon.stats()["queue"]["observed"] >= 5, what="copies")
        observer.send_signal(signal.SIGTERM)
        out, _ = observer.communicate(timeout=10)
        self.assertRegex(out, r"\d\d:\d\d:\d\d\.\d{6} IP 127\.0\.0\.1 > 127\.0\.0\.1: ICMP type 8, length 84, mark 0")
        self.assertRegex(out, r"ICMP type 0, length 84")
        self.assertRegex(out, r"IP 127\.0\.0\.1\.\d+ > 127\.0\.0\.1\.7000: UDP, length 92")

    def test_mark_dropper_drops_only_its_mark(self):
        daemon = self.daemon(POLICY)
        run("iptables", "-t", "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", "7001", "-j",
            "MARK", "--set-mark", "7")
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")
        self.start("mark_dropper", daemon.socket, "7")
        wait_for(lambda: "subscription" in daemon.log(), what="the dropper to subscribe")
        marked, plain = UdpSink(self, "127.0.0.1", 7001), UdpSink(self, "127.0.0.1", 7002)
        send_udp("127.0.0.1", 7001, 20)
        send_udp("127.0.0.1", 7002, 20)
        self.assertEqual(plain.settle(20), 20)
        self.assertEqual(marked.settle(), 0)
        self.assertEqual(daemon.stats()["queue"]["dropped"], 20)

    def test_balance_workers_split_flows(self):
        daemon = self.daemon(POLICY)
        run("iptables", "-A", "OUTPUT", "-p", "udp", "--dport", "7000", "-j", "NFQUEUE",
            "--queue-num", "0")
        workers = [self.start("balance_worker", daemon.socket, f"w{i}") for i in range(2)]
        wait_for(lambda: daemon.log().count("subscription") == 2, what="both workers")
        sink = UdpSink(self, "127.0.0.1", 7000)
        for i in range(16):  # 16 flows: 16 source ports (random ones may repeat)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.bind(("127.0.0.1", 41000 + i))
                for _ in range(3):
                    sender.sendto(b"x" * 64, ("127.0.0.1", 7000))
        self.assertEqual(sink.settle(48), 48)
        flows = []
        for w in workers:
            w.send_signal(signal.SIGTERM)
            out, _ = w.communicate(timeout=10)
            flows.append({line.split()[0]: int(line.split()[1]) for line in out.splitlines()})
        self.assertEqual(set(flows[0]) & set(flows[1]), set())
        self.assertEqual(len(flows[0]) + len(flows[1]), 16)
        self.assertEqual(set(flows[0].values()) | set(flows[1].values()), {3})


if __name__ == "__main__":
    main()
