"""The namespace fixture itself: isolation, cleanup after success, failure and interruption,
peer namespaces, the helpers, and what the kernel does with an NFQUEUE rule when nothing listens.
Needs no pktbrokerd."""

import os
import unittest

from netns import (NetnsTestCase, UdpSink, as_user, iptables_packets, kernel_queues, main,
                   own_namespaces, run, send_udp, tcp_connects, tcp_listener, wait_for)


def current_netns_inode():
    return os.stat("/proc/self/ns/net").st_ino


class Fixture(NetnsTestCase):
    def test_each_test_runs_in_a_fresh_namespace(self):
        self.assertIn(self.ns.name, run("ip", "netns", "list").stdout.split())
        inode = os.stat(self.ns.path).st_ino
        self.assertEqual(current_netns_inode(), inode)
        self.assertEqual(run("readlink", "/proc/self/ns/net").stdout.strip(), f"net:[{inode}]")
        addresses = run("ip", "-o", "addr").stdout.splitlines()
        self.assertEqual([line.split()[1] for line in addresses], ["lo", "lo"])
        self.assertIn("LOOPBACK,UP", run("ip", "-o", "link", "show", "lo").stdout)
        self.assertEqual(run("iptables", "-S").stdout,
                         "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n")
        self.assertEqual(kernel_queues(), {})

    def test_cleanup_runs_after_a_failure_and_after_an_interruption(self):
        outer = current_netns_inode()
        created = []
        processes = []

        class Inner(NetnsTestCase):
            def set_up_everything(self):
                peer, _ = self.peer()
                created.extend([self.ns.name, peer.name])
                processes.append(self.ns.popen("sleep", "60"))
                processes.append(peer.popen("sleep", "60"))

            def test_fails(self):
                self.set_up_everything()
                self.fail("deliberate failure")

            def test_interrupted(self):
                self.set_up_everything()
                raise KeyboardInterrupt

        result = unittest.TestResult()
        Inner("test_fails").run(result)
        self.assertEqual(len(result.failures), 1)
        with self.assertRaises(KeyboardInterrupt):
            Inner("test_interrupted").run(result)

        self.assertEqual(len(created), 4)
        self.assertEqual(current_netns_inode(), outer)
        listing = run("ip", "netns", "list").stdout.split()
        self.assertEqual([name for name in created if name in listing], [])
        self.assertEqual(own_namespaces(), [self.ns.name])
        for process in processes:
            self.assertEqual(process.wait(timeout=10), -9)

    def test_queue_bypass_passes_traffic_when_no_one_listens(self):
        for tool in ("iptables", "ip6tables"):
            run(tool, "-A", "OUTPUT", "-p", "udp", "--dport", "5000", "-j", "NFQUEUE",
                "--queue-num", "7", "--queue-bypass")
        for address, ipv6 in (("127.0.0.1", False), ("::1", True)):
            sink = UdpSink(self, address, 5000)
            send_udp(address, 5000, 50)
            self.assertEqual(sink.settle(50), 50, address)
            self.assertEqual(iptables_packets("filter", "OUTPUT", 1, ipv6=ipv6), 50, address)
        self.assertNotIn(7, kernel_queues())

    def test_without_queue_bypass_no_listener_means_drop(self):
        run("iptables", "-A", "OUTPUT", "-p", "udp", "--dport", "5000", "-j", "NFQUEUE",
            "--queue-num", "7")
        sink = UdpSink(self)
        send_udp("127.0.0.1", 5000, 50)
        self.assertEqual(sink.settle(), 0)
        self.assertEqual(iptables_packets("filter", "OUTPUT", 1), 50)

    def test_a_peer_namespace_is_reachable_over_its_veth(self):
        peer, local_if = self.peer()
        self.assertIn(local_if, run("ip", "-o", "link").stdout)
        run("ping", "-c1", "-W2", "10.99.0.2")
        peer.exec("ping", "-c1", "-W2", "10.99.0.1")
        tcp_listener(self, "10.99.0.1", 8080)
        connect = "import socket; socket.create_connection(('10.99.0.1', 8080), timeout=2)"
        peer.exec("python3", "-c", connect)

    def test_tcp_helpers(self):
        tcp_listener(self, "127.0.0.1", 8080)
        tcp_listener(self, "::1", 8080)
        self.assertTrue(tcp_connects("127.0.0.1", 8080))
        self.assertTrue(tcp_connects("::1", 8080))
        self.assertFalse(tcp_connects("127.0.0.1", 8081))

    def test_as_user_runs_a_command_as_another_user(self):
        self.assertEqual(run(*as_user("nobody", "id", "-u")).stdout, "65534\n")
        self.assertEqual(run(*as_user("nobody", "id", "-G")).stdout, "65534\n")

    def test_wait_for_returns_the_value_or_fails(self):
        self.assertEqual(wait_for(lambda: 42, timeout=1), 42)
        with self.assertRaisesRegex(AssertionError, "timed out waiting for nothing"):
            wait_for(lambda: None, timeout=0.1, what="nothing")


if __name__ == "__main__":
    main()
