"""Policy verdicts on real kernel traffic: ports, protocols, CIDRs (v4 and v6), ICMP, uid, iif,
marks with set_mark and repeat."""

import subprocess

from netns import (NetnsTestCase, UdpSink, as_user, iptables_packets, main, run, send_udp,
                   tcp_connects, tcp_listener)

QUEUE = "broker:\n  queues: [{num: 0}]\n  default_verdict: accept\n"


class PolicyVerdicts(NetnsTestCase):
    def test_tcp_port_rule_v4_and_v6(self):
        self.daemon(QUEUE + """rules:
  - name: no-telnet
    match: {proto: tcp, dport: 23}
    verdict: drop
""")
        for tool in ("iptables", "ip6tables"):
            run(tool, "-A", "OUTPUT", "-p", "tcp", "--syn", "-j", "NFQUEUE", "--queue-num", "0")
        for address in ("127.0.0.1", "::1"):
            tcp_listener(self, address, 23)
            tcp_listener(self, address, 8080)
            self.assertTrue(tcp_connects(address, 8080), address)
            self.assertFalse(tcp_connects(address, 23, timeout=0.5), address)

    def test_udp_cidr_rules_v4_and_v6(self):
        run("ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
        run("ip", "-6", "addr", "add", "fd00::1/128", "dev", "lo", "nodad")
        daemon = self.daemon(QUEUE + """rules:
  - name: blocked-nets
    match: {proto: udp, dst: [127.0.0.2/32, "fd00::/8"]}
    verdict: drop
""")
        for tool in ("iptables", "ip6tables"):
            run(tool, "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")
        sinks = {a: UdpSink(self, a, 5000) for a in ("127.0.0.1", "127.0.0.2", "::1", "fd00::1")}
        for address in sinks:
            send_udp(address, 5000, 50)
        self.assertEqual(sinks["127.0.0.1"].settle(50), 50)
        self.assertEqual(sinks["::1"].settle(50), 50)
        self.assertEqual(sinks["127.0.0.2"].settle(), 0)
        self.assertEqual(sinks["fd00::1"].settle(), 0)
        stats = daemon.stats()
        self.assertEqual(stats["rules"]["blocked-nets"]["packets"], 100)
        self.assertEqual(stats["queue"]["dropped"], 100)
        self.assertEqual(stats["queue"]["accepted"], 100)
        self.assertEqual(stats["queue"]["packets"], 200)

    def test_port_lists_and_ranges(self):
        daemon = self.daemon(QUEUE + """rules:
  - name: ranges
    match: {proto: udp, dport: [5001, "5010-5012"]}
    verdict: drop
""")
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")
        expected = {5000: 10, 5001: 0, 5009: 10, 5010: 0, 5012: 0, 5013: 10}
        sinks = {port: UdpSink(self, "127.0.0.1", port) for port in expected}
        for port in expected:
            send_udp("127.0.0.1", port, 10)
        for port, count in expected.items():
            self.assertEqual(sinks[port].settle(count or None), count, f"port {port}")
        self.assertEqual(daemon.stats()["rules"]["ranges"]["packets"], 30)

    def test_icmp_types_v4_and_v6(self):
        daemon = self.daemon(QUEUE + """rules:
  - name: no-ping
    match: {proto: [icmp, icmpv6], icmp_type: echo-request}
    verdict: drop
""")
        run("iptables", "-A", "OUTPUT", "-p", "icmp", "-j", "NFQUEUE", "--queue-num", "0")
        run("ip6tables", "-A", "OUTPUT", "-p", "icmpv6", "-j", "NFQUEUE", "--queue-num", "0")
        for args in (["ping", "-c1", "-W1", "127.0.0.1"], ["ping", "-6", "-c1", "-W1", "::1"]):
            self.assertNotEqual(run(*args, check=False).returncode, 0, args)
        self.assertEqual(daemon.stats()["rules"]["no-ping"]["packets"], 2)

    def test_not_negates_each_field(self):
        daemon = self.daemon(QUEUE + """rules:
  - name: only-5000
    match: {proto: udp, not: {dport: 5000}}
    verdict: drop
""")
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")
        kept, dropped = UdpSink(self, "127.0.0.1", 5000), UdpSink(self, "127.0.0.1", 5001)
        send_udp("127.0.0.1", 5000, 20)
        send_udp("127.0.0.1", 5001, 20)
        self.assertEqual(kept.settle(20), 20)
        self.assertEqual(dropped.settle(), 0)
        self.assertEqual(daemon.stats()["rules"]["only-5000"]["packets"], 20)

    def test_uid_rule_drops_another_users_traffic(self):
        daemon = self.daemon(QUEUE + """rules:
  - name: no-nobody
    match: {proto: udp, uid: nobody}
    verdict: drop
""")
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")
        sink = UdpSink(self, "127.0.0.1", 5000)
        sender = ("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                  "[s.sendto(b'x',('127.0.0.1',5000)) for _ in range(25)]\n")
        subprocess.run(as_user("nobody", "python3", "-c", sender), check=True)
        self.assertEqual(sink.settle(), 0)
        send_udp("127.0.0.1", 5000, 25)
        self.assertEqual(sink.settle(25), 25)
        self.assertEqual(daemon.stats()["rules"]["no-nobody"]["packets"], 25)

    def test_iif_rule_on_a_veth_from_a_peer_namespace(self):
        peer, local_if = self.peer()
        daemon = self.daemon(QUEUE + f"""rules:
  - name: no-ping-from-peer
    match: {{iif: {local_if}, proto: icmp}}
    verdict: drop
""")
        run("iptables", "-A", "INPUT", "-p", "icmp", "-j", "NFQUEUE", "--queue-num", "0")
        self.assertNotEqual(peer.exec("ping", "-c1", "-W1", "10.99.0.1", check=False).returncode, 0)
        run("ping", "-c1", "-W1", "127.0.0.1")  # loopback: same rule, other interface
        stats = daemon.stats()
        self.assertEqual(stats["rules"]["no-ping-from-peer"]["packets"], 1)
        self.assertEqual(stats["queue"]["accepted"], 2)  # echo request and reply on lo

    def test_mark_mask_set_mark_and_repeat(self):
        daemon = self.daemon(QUEUE + """rules:
  - name: tag-and-repeat
    match: {mark: {value: 0x10, mask: 0xf0}}
    verdict: {repeat: true, set_mark: 0x11}
""")
        run("iptables", "-t", "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", "5000",
            "-j", "MARK", "--set-mark", "0x12")
        run("iptables", "-t", "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", "5001",
            "-j", "MARK", "--set-mark", "0x22")
        # Repeat re-runs the filter hook: the new mark must skip the queue and hit rule 2.
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-m", "mark", "!", "--mark", "0x11",
            "-j", "NFQUEUE", "--queue-num", "0")
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-m", "mark", "--mark", "0x11", "-j", "ACCEPT")
        tagged, other = UdpSink(self, "127.0.0.1", 5000), UdpSink(self, "127.0.0.1", 5001)
        send_udp("127.0.0.1", 5000, 30)
        send_udp("127.0.0.1", 5001, 30)
        self.assertEqual(tagged.settle(30), 30)
        self.assertEqual(other.settle(30), 30)
        self.assertEqual(iptables_packets("filter", "OUTPUT", 2), 30)
        stats = daemon.stats()
        self.assertEqual(stats["queue"]["repeated"], 30)
        self.assertEqual(stats["queue"]["accepted"], 30)


if __name__ == "__main__":
    main()
