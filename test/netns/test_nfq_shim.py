"""The nfq shim: programs written for libnetfilter_queue (the classic callback style and the
libmnl style) run unchanged through pktbrokerd with LD_PRELOAD or relinked, two at once on one
kernel queue beside a libpktbroker client, and decide as they do bound to the queue directly."""

import os
import signal
import subprocess

from netns import (ClientProcess, CollectedProcess, NetnsTestCase, UdpSink, iptables_packets,
                   main, mark_ports, run, sanitized, send_udp, wait_for)

NFQ_SHIM = os.environ.get("NFQ_SHIM", "")
NFQ_TOOLS = os.environ.get("NFQ_TOOLS", "")

POLICY = """broker:
  queues: [{num: 0, max_len: 8192}]
  default_verdict: accept
"""

PAYLOAD = b"the quick brown fox"


def preload():
    """LD_PRELOAD for the shim; a sanitized shim needs its runtime loaded first."""
    libraries = [NFQ_SHIM]
    if sanitized():
        asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                              text=True, check=True).stdout.strip()
        libraries.insert(0, os.path.realpath(asan))
    return " ".join(libraries)


class NfqShim(NetnsTestCase):
    def setUp(self):
        super().setUp()
        if not os.access(NFQ_SHIM, os.R_OK):
            raise AssertionError(f"NFQ_SHIM='{NFQ_SHIM}' does not name libpktbroker-nfq.so")
        run("iptables", "-A", "OUTPUT", "-p", "udp", "--dport", "6001:6009", "-j", "NFQUEUE",
            "--queue-num", "0")
        # Counts packets leaving with the mark a verdict set.
        run("iptables", "-t", "mangle", "-A", "POSTROUTING", "-p", "udp", "-m", "mark", "--mark",
            "0x42")

    def program(self, tool, action, count=0, flags="", daemon=None, selector="", relinked=False,
                env=None):
        """nfq_classic or nfq_mnl on queue 0: through `daemon` (LD_PRELOAD, or the relinked
        build) when given, else bound to the kernel queue itself."""
        binary = os.path.join(NFQ_TOOLS, tool + ("_relinked" if relinked else ""))
        argv = [binary, "0", action, str(count)] + ([flags] if flags else [])
        environment = dict(env or {})
        if daemon is not None:
            environment["PKTBROKER_SOCKET"] = daemon.socket
            if selector:
                environment["PKTBROKER_SELECTOR"] = selector
            if not relinked:
                environment["LD_PRELOAD"] = preload()
        return CollectedProcess(self, argv, env=environment)

    def outcome(self, tool, action, daemon=None, relinked=False, env=None, payload=PAYLOAD):
        """What 12 datagrams to port 6001 become: the program's packet lines, what the sink got
        and the mark counter."""
        run("iptables", "-t", "mangle", "-Z", "POSTROUTING")
        sink = UdpSink(self, "127.0.0.1", 6001)
        try:
            program = self.program(tool, action, 12, "uidgid", daemon=daemon, relinked=relinked,
                                   env=env)
            program.wait_line("ready")
            send_udp("127.0.0.1", 6001, 12, payload=payload)
            self.assertEqual(program.wait_exit(), 0, "\n".join(program.lines))
            received = sink.settle(12 if action != "drop" else None)
        finally:
            sink.close()
        return {"packets": program.packets(), "received": received,
                "payloads": sorted(set(sink.payloads)),
                "marked": iptables_packets("mangle", "POSTROUTING", 1)}

    def test_each_program_decides_through_the_broker_as_it_does_on_the_kernel_queue(self):
        for tool in ("nfq_classic", "nfq_mnl"):
            for action in ("drop", "mark:0x42", "rewrite", "batch:4"):
                with self.subTest(tool=tool, action=action):
                    direct = self.outcome(tool, action)
                    daemon = self.daemon(POLICY)
                    shimmed = self.outcome(tool, action, daemon=daemon)
                    stats = daemon.stats()["queue"]
                    self.assertEqual(daemon.stop(), 0)
                    self.assertEqual(shimmed, direct)
                    self.assertEqual((stats["delivered"], stats["outstanding"]), (12, 0))
                    # Ids as the kernel's: 1, 2, ... in order; the packet as sent, by root.
                    self.assertEqual([p["id"] for p in shimmed["packets"]],
                                     [str(i) for i in range(1, 13)])
                    self.assertEqual({(p["uid"], p["dport"], p["proto"], p["hook"])
                                      for p in shimmed["packets"]},
                                     {("0", "6001", "0x0800", "3")})
                    expected = {"drop": (0, [], 0), "mark:0x42": (12, [PAYLOAD], 12),
                                "rewrite": (12, [PAYLOAD.upper()], 0),
                                "batch:4": (12, [PAYLOAD], 0)}[action]
                    self.assertEqual((shimmed["received"], shimmed["payloads"],
                                      shimmed["marked"]), expected)

    def test_copy_modes_and_acknowledgements_as_the_kernel_gives_them(self):
        # A 6,000-byte datagram (loopback keeps it whole) with a copy range of 128 fits the
        # classic program's 4,096-byte buffer, as the kernel's message does; META shows no
        # payload; acknowledged requests (NLM_F_ACK) are answered.
        big = b"y" * 6000
        for tool, env, payload, length in (
                ("nfq_classic", {"NFQ_TOOL_COPY": "packet:128"}, big, "128"),
                ("nfq_mnl", {"NFQ_TOOL_COPY": "meta", "NFQ_TOOL_ACK": "1"}, PAYLOAD, "-1")):
            with self.subTest(tool=tool, env=env):
                direct = self.outcome(tool, "accept", env=env, payload=big)
                daemon = self.daemon(POLICY)
                shimmed = self.outcome(tool, "accept", daemon=daemon, env=env, payload=big)
                self.assertEqual(daemon.stop(), 0)
                self.assertEqual(shimmed, direct)
                self.assertEqual({p["len"] for p in shimmed["packets"]}, {length})
                self.assertEqual(shimmed["received"], 12)

    def test_relinked_programs_work_as_preloaded_ones(self):
        for tool in ("nfq_classic", "nfq_mnl"):
            with self.subTest(tool=tool):
                direct = self.outcome(tool, "rewrite")
                daemon = self.daemon(POLICY)
                relinked = self.outcome(tool, "rewrite", daemon=daemon, relinked=True)
                self.assertEqual(relinked, direct)
                self.assertEqual(relinked["payloads"], [PAYLOAD.upper()])
                self.assertEqual(daemon.stats()["queue"]["delivered"], 12)
                self.assertEqual(daemon.stop(), 0)

    def test_two_programs_and_a_client_share_one_queue_by_mark(self):
        daemon = self.daemon(POLICY)
        mark_ports(4)
        classic = self.program("nfq_classic", "drop", daemon=daemon, selector="{mark: 1}")
        libmnl = self.program("nfq_mnl", "mark:0x42", daemon=daemon, selector="{mark: 2}")
        client = ClientProcess(self, daemon, name="native", selector="{mark: 3}", verdict="drop")
        for process in (classic, libmnl, client):
            process.wait_line("ready")
        sinks = {i: UdpSink(self, "127.0.0.1", 6000 + i) for i in range(1, 5)}
        for i in range(1, 5):
            send_udp("127.0.0.1", 6000 + i, 20, payload=PAYLOAD)
        self.assertEqual({i: sinks[i].settle(20 if i % 2 == 0 else None) for i in sinks},
                         {1: 0, 2: 20, 3: 0, 4: 20})  # mark 4 has no subscriber: the policy
        wait_for(lambda: len(classic.packets()) == 20 and len(libmnl.packets()) == 20,
                 what="both programs' packets")
        self.assertEqual({(p["mark"], p["dport"]) for p in classic.packets()}, {("1", "6001")})
        self.assertEqual({(p["mark"], p["dport"]) for p in libmnl.packets()}, {("2", "6002")})
        self.assertEqual(len(client.packets()), 20)
        self.assertEqual(iptables_packets("mangle", "POSTROUTING", 1), 20)
        stats = daemon.stats()["queue"]
        self.assertEqual((stats["delivered"], stats["client_verdicts"], stats["outstanding"]),
                         (60, 60, 0))
        for process in (classic, libmnl):
            process.process.send_signal(signal.SIGTERM)
            self.assertEqual(process.wait_exit(), 0)
        self.assertEqual(daemon.stop(), 0)

    def test_a_broker_that_is_not_running_is_a_clear_error(self):
        class Missing:
            socket = "/run/pktbroker-test-nothing-here.sock"
        for tool, failure in (("nfq_classic", "error during nfq_open()"),
                              ("nfq_mnl", "mnl_socket_send: No such file or directory")):
            with self.subTest(tool=tool):
                program = self.program(tool, "accept", daemon=Missing)
                self.assertEqual(program.wait_exit(), 1)
                text = "\n".join(program.lines)
                self.assertIn("pktbroker-nfq: cannot reach pktbrokerd at "
                              "/run/pktbroker-test-nothing-here.sock", text)
                self.assertIn(failure, text)

    def test_what_the_broker_cannot_do_fails_at_start_up_with_the_reason(self):
        daemon = self.daemon(POLICY)
        for tool, failure in (("nfq_classic", "can't set queue flags"),
                              ("nfq_mnl", "mnl_socket_send: Operation not supported")):
            with self.subTest(tool=tool):
                program = self.program(tool, "accept", flags="conntrack", daemon=daemon)
                self.assertEqual(program.wait_exit(), 1)
                text = "\n".join(program.lines)
                self.assertIn("queue flags 2 are not supported through the broker", text)
                self.assertIn(failure, text)
        bad = self.program("nfq_classic", "accept", daemon=daemon,
                           env={"PKTBROKER_SELECTOR": "mark: 1"})
        self.assertEqual(bad.wait_exit(), 1)
        self.assertIn("PKTBROKER_SELECTOR must be a match map in braces", "\n".join(bad.lines))
        self.assertEqual(daemon.stop(), 0)

    def test_a_verdict_setting_a_connmark_is_refused_as_the_kernel_refuses_a_bad_one(self):
        # nf-queue.c sets a connmark in its verdict (NFQA_CT); the broker cannot, so the verdict
        # is answered with an error message, which makes the program's mnl_cb_run() fail.
        daemon = self.daemon(POLICY)
        program = self.program("nfq_mnl", "connmark:0x42", daemon=daemon,
                               env={"PKTBROKER_TIMEOUT_MS": "300"})
        program.wait_line("ready")
        send_udp("127.0.0.1", 6001, 1, payload=PAYLOAD)
        self.assertEqual(program.wait_exit(), 1)
        text = "\n".join(program.lines)
        self.assertIn("conntrack attributes in a verdict (a connmark, an expectation) are not "
                      "supported through the broker", text)
        self.assertIn("mnl_cb_run: Operation not supported", text)
        wait_for(lambda: daemon.stats()["queue"]["outstanding"] == 0, what="the fallback")
        self.assertEqual(daemon.stats()["queue"]["dropped"], 1)  # PKTBROKER_FALLBACK's default
        self.assertEqual(daemon.stop(), 0)

    def test_a_broker_that_goes_away_ends_the_programs_read_loop(self):
        # The classic loop reads until recv() fails, as nfqnl_test.c does: end of file from the
        # broker socket must not become a busy loop. The libmnl style's read fails.
        for tool, code, failures in (
                ("nfq_classic", 0, ("pktbrokerd closed the session; reads now fail with ENOTCONN",
                                    "recv: Transport endpoint is not connected")),
                ("nfq_mnl", 1, ("the broker session ended", "mnl_socket_recvfrom: "))):
            with self.subTest(tool=tool):
                daemon = self.daemon(POLICY)
                program = self.program(tool, "accept", daemon=daemon)
                program.wait_line("ready")
                self.assertEqual(daemon.stop(), 0)
                self.assertEqual(program.wait_exit(timeout=10), code)
                text = "\n".join(program.lines)
                for failure in failures:
                    self.assertIn(failure, text)

    def test_other_netfilter_sockets_of_a_preloaded_program_stay_the_kernels(self):
        # iptables (nft backend) opens NETLINK_NETFILTER sockets with libmnl; run with the
        # shim preloaded, as a program's child inherits it, it still changes the ruleset, and
        # with no broker at all.
        environment = dict(os.environ, LD_PRELOAD=preload(),
                           PKTBROKER_SOCKET="/run/pktbroker-test-nothing-here.sock")
        if sanitized():  # iptables is not ours: what it leaves unfreed is not the shim's leak
            environment["ASAN_OPTIONS"] = ":".join(filter(None, [
                os.environ.get("ASAN_OPTIONS"), "detect_leaks=0", "strict_string_checks=0"]))
        rule = ["OUTPUT", "-p", "udp", "--dport", "6099", "-j", "ACCEPT"]
        added = subprocess.run(["iptables", "-A", *rule], env=environment, capture_output=True,
                               text=True, check=False)
        self.assertEqual(added.returncode, 0, added.stderr)
        self.assertNotIn("pktbroker-nfq", added.stderr)
        run("iptables", "-C", *rule)  # the rule is there
        # The same environment does take over a socket that carries queue messages.
        program = subprocess.run([os.path.join(NFQ_TOOLS, "nfq_mnl"), "0", "accept"],
                                 env=environment, capture_output=True, text=True, timeout=10,
                                 check=False)
        self.assertEqual(program.returncode, 1)
        self.assertIn("pktbroker-nfq: cannot reach pktbrokerd", program.stderr)

    def test_packets_read_while_a_second_queue_is_bound_are_not_stranded(self):
        # The program stops reading for a second, then binds a second queue: the packets that
        # arrived meanwhile are read by the shim while it waits for the broker's answer. The
        # socket must still wake the program for them, long before their 10 s timeout.
        daemon = self.daemon(POLICY)
        sink = UdpSink(self, "127.0.0.1", 6001)
        program = self.program("nfq_classic", "accept", daemon=daemon,
                               env={"NFQ_TOOL_SECOND_QUEUE_AFTER_MS": "1000",
                                    "PKTBROKER_TIMEOUT_MS": "10000"})
        program.wait_line("bound")
        send_udp("127.0.0.1", 6001, 20, payload=PAYLOAD)
        program.wait_line("ready")
        wait_for(lambda: sink.count == 20, timeout=5, what="the 20 packets, well before 10 s")
        stats = daemon.stats()["queue"]
        self.assertEqual((stats["client_verdicts"], stats["outstanding"]), (20, 0))
        self.assertEqual(daemon.stop(), 0)

    def test_a_failing_callback_does_not_strand_the_packets_read_with_its_packet(self):
        # Packets pile up while the program is stopped, so one nfq_handle_packet call takes many;
        # the callback fails on every third. Every packet is still handed out and answered.
        daemon = self.daemon(POLICY)
        sink = UdpSink(self, "127.0.0.1", 6001)
        program = self.program("nfq_classic", "accept", 60, daemon=daemon,
                               env={"NFQ_TOOL_FAIL_EVERY": "3", "PKTBROKER_TIMEOUT_MS": "10000"})
        program.wait_line("ready")
        program.process.send_signal(signal.SIGSTOP)
        try:
            send_udp("127.0.0.1", 6001, 60, payload=PAYLOAD)
            wait_for(lambda: daemon.stats()["queue"]["delivered"] == 60,
                     what="60 packets sent to the stopped program")
        finally:
            program.process.send_signal(signal.SIGCONT)
        self.assertEqual(program.wait_exit(), 0)
        wait_for(lambda: sink.count == 60, timeout=5, what="the 60 packets, well before 10 s")
        self.assertEqual([p["id"] for p in program.packets()], [str(i) for i in range(1, 61)])
        self.assertEqual(daemon.stats()["queue"]["outstanding"], 0)
        self.assertEqual(daemon.stop(), 0)

    def test_packets_a_program_does_not_decide_take_the_fallback_once(self):
        # NF_QUEUE (3) to another queue is refused with EINVAL; ignored packets and those of a
        # killed program wait for their timeout and get the fallback, each exactly once.
        daemon = self.daemon(POLICY)
        env = {"PKTBROKER_TIMEOUT_MS": "300", "PKTBROKER_FALLBACK": "accept"}
        sink = UdpSink(self, "127.0.0.1", 6001)
        for action in ("verdict:3", "ignore"):
            program = self.program("nfq_classic", action, 5, daemon=daemon, env=env)
            program.wait_line("ready")
            send_udp("127.0.0.1", 6001, 5, payload=PAYLOAD)
            self.assertEqual(program.wait_exit(), 0)
            if action == "verdict:3":
                self.assertEqual(sum(l.startswith("verdict-error") and "errno=22" in l
                                     for l in program.lines), 5)
                self.assertIn("verdict 3 is not supported through the broker",
                              "\n".join(program.lines))
        killed = self.program("nfq_mnl", "ignore", daemon=daemon, env=env)
        killed.wait_line("ready")
        send_udp("127.0.0.1", 6001, 5, payload=PAYLOAD)
        wait_for(lambda: len(killed.packets()) == 5, what="the packets reach the program")
        killed.kill()
        self.assertEqual(sink.settle(15), 15)
        stats = daemon.stats()["queue"]
        self.assertEqual((stats["delivered"], stats["outstanding"], stats["accepted"]),
                         (15, 0, 15))
        self.assertEqual(daemon.stop(), 0)


if __name__ == "__main__":
    main()
