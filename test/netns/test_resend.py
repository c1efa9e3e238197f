"""The resend plugin on an emulated demand-dial link.

The test's namespace (where pktbrokerd runs) reaches a far namespace through a veth pair that
stands for a PPP link: no ARP, no neighbour discovery, no link-local address, so nothing
crosses it but the test's own traffic and the far end's packet counter says exactly what
arrived. The local end starts with the link's OLD address; the far end runs dnsmasq and nginx.
A program sends from OLD while the link is down; then the link gets its NEW address (NEW
added, OLD removed) and resend learns it from a `wakeup` command or from rtnetlink.

These tests prove that a held packet does not leave before the wakeup and then leaves once,
from NEW, with correct IPv4, IPv6, UDP and TCP checksums (checked in a capture at the far
end); that the answers to NEW reach the socket still bound to OLD (dig +tries=1 sends one
query, so its answer can only be the held query's); that a TCP connection whose SYN was held
completes, its later packets moved to NEW too; that at the deadline held packets are dropped
or sent unchanged, as configured; that bad wakeups are refused and change nothing; and that
the broker gives every packet exactly one verdict.
"""

import collections
import ipaddress
import json
import os
import socket
import struct
import subprocess
import threading

from netns import (NetnsTestCase, Namespace, _setns, kernel_queues, main, run, wait_for)

CTL = os.environ.get("PKTBROKERCTL", "")

LINK, FAR_LINK = "dial0", "far0"
LINK_MAC = "02:00:00:77:00:01"  # both ends: with ARP off, frames go to the sender's own MAC
OLD = {4: "10.77.0.1", 6: "fd77::1"}
NEW = {4: "10.77.0.2", 6: "fd77::2"}
FAR = {4: "10.77.1.1", 6: "fd77:1::1"}
LOCAL_NET = {4: "10.77.0.0/24", 6: "fd77::/64"}
FAR_NET = {4: "10.77.1.0/24", 6: "fd77:1::/64"}
HOST_PREFIX = {4: "/32", 6: "/128"}

NAME = "dial.test"
QTYPE = {4: "A", 6: "AAAA"}
ANSWER = {4: "10.5.5.5", 6: "fd55::5"}
FILE, BODY = "hello.txt", "hello from the far side of the dial link\n"

TCP, UDP = 6, 17
ETH_P_ALL = 3
CHECKSUM_ERRORS = ("TcpInCsumErrors", "UdpInCsumErrors", "Udp6InCsumErrors")
NO_CHECKSUM_ERRORS = dict.fromkeys(CHECKSUM_ERRORS, 0)

FAR_NGINX_CONF = """daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log stderr;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{
    listen {far4}:80;
    listen [{far6}]:80;
    location / {{ root {root}; }}
  }}
}}
"""


def policy(wakeup_wait_ms=20000, on_timeout="release", hold_packets=1, watch_addresses=False,
           first_rules=""):
    """Everything through the link goes to resend. Its replies stay translated for the whole
    test (response_wait_ms), so `translations` does not depend on how fast the machine is."""
    watch = "true" if watch_addresses else "false"
    return f"""broker:
  queues: [{{num: 0}}]
  default_verdict: accept
plugins:
  - name: resend
    config: {{interface: {LINK}, wakeup_wait_ms: {wakeup_wait_ms}, response_wait_ms: 600000,
              hold_packets: {hold_packets}, on_timeout: {on_timeout}, watch_addresses: {watch}}}
rules:
{first_rules}  - name: dial-out
    match: {{oif: {LINK}}}
    verdict: {{inspect: [resend], fallback: accept, timeout_ms: {wakeup_wait_ms + 10000}}}
  - name: dial-in
    match: {{iif: {LINK}}}
    verdict: {{inspect: [resend], fallback: accept}}
"""


def add_address(exec_in, version, address, interface):
    options = ["nodad"] if version == 6 else []  # usable at once, not tentative
    exec_in("ip", "addr", "add", address + HOST_PREFIX[version], "dev", interface, *options)


def configure_link_end(exec_in, interface, addresses, remote_nets):
    """One end of the dial link, set up with `exec_in` (run, or a namespace's exec)."""
    exec_in("ip", "link", "set", interface, "address", LINK_MAC, "arp", "off",
            "addrgenmode", "none")
    for version in (4, 6):
        add_address(exec_in, version, addresses[version], interface)
    exec_in("ip", "link", "set", interface, "up")
    for version in (4, 6):
        exec_in("ip", "route", "add", remote_nets[version], "dev", interface)


def checksum_errors(exec_in):
    """The checksum errors the IP stack of a namespace counted (absolute, no nstat history)."""
    out = exec_in("nstat", "-asz", *CHECKSUM_ERRORS).stdout
    return {line.split()[0]: int(line.split()[1]) for line in out.splitlines()
            if line and not line.startswith("#")}


def internet_checksum(data):
    """RFC 1071. Over data that contains a correct checksum it is 0."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


Segment = collections.namedtuple(
    "Segment", "source destination protocol sport dport ip_checksum_ok l4_checksum_ok")


def parse(packet):
    """The fields the tests check of an IPv4 or IPv6 TCP or UDP packet; None for others."""
    version = packet[0] >> 4
    if version == 4:
        header_len, protocol = (packet[0] & 0x0F) * 4, packet[9]
        (total_len,) = struct.unpack("!H", packet[2:4])
        source, destination = packet[12:16], packet[16:20]
        l4 = packet[header_len:total_len]
        ip_checksum_ok = internet_checksum(packet[:header_len]) == 0
        pseudo_header = source + destination + struct.pack("!BBH", 0, protocol, len(l4))
    elif version == 6:
        protocol, (payload_len,) = packet[6], struct.unpack("!H", packet[4:6])
        source, destination = packet[8:24], packet[24:40]
        l4 = packet[40:40 + payload_len]
        ip_checksum_ok = True  # IPv6 has no header checksum
        pseudo_header = source + destination + struct.pack("!I3xB", len(l4), protocol)
    else:
        return None
    if protocol not in (TCP, UDP) or len(l4) < (20 if protocol == TCP else 8):
        return None
    sport, dport = struct.unpack("!HH", l4[:4])
    field = l4[16:18] if protocol == TCP else l4[6:8]
    # A zero UDP checksum means "none" in IPv4: legal, but not what a recomputation gives.
    l4_checksum_ok = field != b"\0\0" and internet_checksum(pseudo_header + l4) == 0
    return Segment(str(ipaddress.ip_address(source)), str(ipaddress.ip_address(destination)),
                   protocol, sport, dport, ip_checksum_ok, l4_checksum_ok)


class FarCapture:
    """The packets arriving at the far end of the link, from an AF_PACKET socket made in the far
    namespace by a short-lived thread (setns moves only that thread; the socket stays there)."""

    def __init__(self, test, namespace, interface):
        made = {}

        def make():
            try:
                _setns(namespace.path)
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
                sock.bind((interface, ETH_P_ALL))
                made["socket"] = sock
            except OSError as error:
                made["error"] = error

        thread = threading.Thread(target=make)
        thread.start()
        thread.join()
        if "error" in made:
            raise made["error"]
        self.sock = made["socket"]
        self.sock.setblocking(False)
        self.packets = []
        test.addCleanup(self.sock.close)

    def arrived(self):
        """The TCP and UDP packets that came in so far, parsed."""
        while True:
            try:
                data, address = self.sock.recvfrom(65535)
            except BlockingIOError:
                break
            if address[2] != socket.PACKET_OUTGOING:
                self.packets.append(data)
        return [segment for segment in map(parse, self.packets) if segment]


class Resend(NetnsTestCase):
    def setUp(self):
        super().setUp()
        self.far = Namespace("pktb-peer")
        self.addCleanup(self.far.delete)
        run("ip", "link", "add", LINK, "type", "veth", "peer", "name", FAR_LINK,
            "netns", self.far.name)
        configure_link_end(run, LINK, OLD, FAR_NET)
        configure_link_end(self.far.exec, FAR_LINK, FAR, LOCAL_NET)
        for ipv6 in (False, True):
            self.iptables("-A", "OUTPUT", "-o", LINK, "-j", "NFQUEUE", "--queue-num", "0",
                          ipv6=ipv6)
            self.iptables("-A", "INPUT", "-i", LINK, "-j", "NFQUEUE", "--queue-num", "0",
                          ipv6=ipv6)
        self.dns_log = self.far_server(
            "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
            f"--listen-address={FAR[4]}", f"--listen-address={FAR[6]}", "--bind-interfaces",
            "--port=53", "--user=root", "--pid-file=", "--log-queries", "--log-facility=-",
            f"--address=/{NAME}/{ANSWER[4]}", f"--address=/{NAME}/{ANSWER[6]}",
            listening=("-lunH", [f"{FAR[4]}:53", f"[{FAR[6]}]:53"]))

    # ---- the far side ----

    def far_server(self, *argv, listening):
        """Starts a server in the far namespace and waits until `ss OPTIONS` there lists every
        address of `listening` (OPTIONS, addresses). It is killed after the test, its output
        shown if the test failed. Returns the path of that output."""
        path = os.path.join(self.scratch(), "server.log")
        log = open(path, "w+")
        process = self.far.popen(*argv, stdout=log, stderr=subprocess.STDOUT)

        def stop():
            process.kill()
            process.wait()
            log.seek(0)
            if self._outcome is None or not self._outcome.success:
                print(f"--- {argv[0]} (far side) output ---\n{log.read()[-3000:]}")
            log.close()

        self.addCleanup(stop)
        options, addresses = listening

        def ready():
            sockets = self.far.exec("ss", options).stdout
            return all(f"{address} " in sockets for address in addresses)

        wait_for(lambda: ready() or process.poll() is not None, timeout=20,
                 what=f"{argv[0]} to listen in the far namespace")
        self.assertIsNone(process.poll(), f"{argv[0]} exited early")
        return path

    def far_nginx(self):
        scratch = self.scratch()
        root = os.path.join(scratch, "www")
        os.makedirs(root)
        with open(os.path.join(root, FILE), "w") as f:
            f.write(BODY)
        conf = os.path.join(scratch, "nginx.conf")
        with open(conf, "w") as f:
            f.write(FAR_NGINX_CONF.format(dir=scratch, root=root, far4=FAR[4], far6=FAR[6]))
        self.far_server("nginx", "-c", conf, "-p", scratch,
                        listening=("-ltnH", [f"{FAR[4]}:80", f"[{FAR[6]}]:80"]))

    def far_received(self):
        """Packets the far end of the link has received: nothing but the test's crosses it."""
        link = json.loads(self.far.exec("ip", "-j", "-s", "link", "show", FAR_LINK).stdout)[0]
        return link["stats64"]["rx"]["packets"]

    def dns_queries(self):
        with open(self.dns_log) as f:
            return [line.split(": ", 1)[1].strip() for line in f if ": query[" in line]

    # ---- the local side ----

    def renumber(self, version, keep_old_on_lo=False):
        """The link gets its new address: NEW added, then OLD removed (in this order: removing the
        link's last IPv4 address would take the routes through it along)."""
        add_address(run, version, NEW[version], LINK)
        run("ip", "addr", "del", OLD[version] + HOST_PREFIX[version], "dev", LINK)
        if keep_old_on_lo:
            add_address(run, version, OLD[version], "lo")

    def start(self, *argv):
        """Starts a client program here; it is killed after the test."""
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)

        def stop():
            if process.poll() is None:
                process.kill()
            process.communicate()

        self.addCleanup(stop)
        return process

    def finish(self, process, timeout=90):
        """(exit code, output) once the program ends; the timeout only guards against hangs."""
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            self.fail(f"{process.args[0]} did not finish")
        return process.returncode, output.strip()

    def start_query(self, version, timeout=25):
        """dig sending one query, no retry, from OLD: only that query can be answered."""
        return self.start("dig", f"-{version}", f"@{FAR[version]}", "-b", OLD[version],
                          "+tries=1", f"+timeout={timeout}", "+short", NAME, QTYPE[version])

    def answer(self, dig):
        code, output = self.finish(dig)
        return output if code == 0 else f"dig failed ({code}): {output}"

    # ---- the broker and the plugin ----

    def start_broker(self, **config):
        self.broker = self.daemon(policy(**config))

    def resend(self, *args):
        """`pktbrokerctl plugin resend ARGS` against the test's broker."""
        return run(CTL, f"--socket={self.broker.socket}", "plugin", "resend", *args, check=False)

    def status(self):
        reply = self.resend("status", "--json")
        self.assertEqual(reply.returncode, 0, reply.stderr)
        return json.loads(reply.stdout)

    def wakeup(self, version):
        reply = self.resend("wakeup", "--iface", LINK, "--addr", NEW[version])
        self.assertEqual(reply.returncode, 0, reply.stderr)

    def status_once(self, condition, what):
        """The plugin's status once condition(status) holds."""
        def ready():
            status = self.status()
            return status if condition(status) else None

        return wait_for(ready, timeout=30, interval=0.1, what=what)

    def wait_until_held(self, at_least=1):
        return self.status_once(lambda s: s["held"] >= at_least, f"{at_least} packet(s) held")

    def assert_every_packet_decided_once(self):
        """Nothing waits for a verdict, in the broker or the kernel, and every packet the broker
        received got exactly one. Returns the stats block."""
        def settled():
            block = self.broker.stats()
            waiting = kernel_queues().get(0, {}).get("queue_total", 0)
            return block if block["queue"]["outstanding"] == 0 and waiting == 0 else None

        block = wait_for(settled, timeout=30, interval=0.2, what="no packet waiting for a verdict")
        queue = block["queue"]
        self.assertEqual(queue["accepted"] + queue["dropped"] + queue["repeated"],
                         queue["packets"], f"a packet got no verdict, or two: {queue}")
        return block

    def assert_one_query_arrived(self, capture, version, source):
        """The far end got exactly one DNS query, from `source`, with correct checksums."""
        queries = [s for s in capture.arrived() if s.protocol == UDP and s.dport == 53]
        self.assertEqual([(q.source, q.destination) for q in queries], [(source, FAR[version])])
        self.assertTrue(queries[0].ip_checksum_ok, "IPv4 header checksum")
        self.assertTrue(queries[0].l4_checksum_ok, "UDP checksum")

    # ---- the tests ----

    def test_a_held_query_leaves_from_the_new_address_and_its_answer_comes_back(self):
        self.start_broker()
        dig = self.start_query(4)
        self.assertEqual(self.wait_until_held()["held"], 1)
        self.assertEqual(self.far_received(), 0, "the held query went out before the wakeup")
        self.renumber(4)
        self.wakeup(4)
        self.assertEqual(self.answer(dig), ANSWER[4])

        status = self.status()
        self.assertEqual(status["interface"], LINK)
        self.assertEqual(status["ipv4"], {"up": True, "address": NEW[4]})
        self.assertEqual(status["ipv6"], {"up": False, "address": None})
        self.assertEqual((status["held"], status["translations"]), (0, 1))
        counters = status["counters"]
        self.assertEqual(counters["rewritten"], 1)
        self.assertGreaterEqual(counters["translated_in"], 1)
        self.assertEqual((counters["wakeups"], counters["timeouts"]), (1, 0))
        self.assertEqual(self.dns_queries(), [f"query[A] {NAME} from {NEW[4]}"])

        block = self.assert_every_packet_decided_once()
        self.assertEqual(block["flows"]["hold_timeouts"], 0, "released by the broker's deadline")
        # pktbrokerctl stats shows the same counters (and the broker's own for the plugin).
        shown = self.broker.plugin_stats("resend")
        self.assertEqual({name: shown.get(name) for name in counters}, counters)

    def test_the_released_query_and_its_translated_answer_carry_correct_checksums(self):
        # The broker takes GSO packets whole (gso: true), so locally sent packets reach the plugin
        # with a partial checksum (the pseudo-header sum only): an incremental update of it goes
        # out wrong, only a recomputation is right.
        self.start_broker()
        capture = FarCapture(self, self.far, FAR_LINK)
        dig = self.start_query(4)
        self.wait_until_held()
        self.renumber(4)
        self.wakeup(4)
        self.assertEqual(self.answer(dig), ANSWER[4])
        self.assert_one_query_arrived(capture, 4, NEW[4])
        self.assertEqual(checksum_errors(self.far.exec), NO_CHECKSUM_ERRORS, "far side")
        self.assertEqual(checksum_errors(run), NO_CHECKSUM_ERRORS, "the translated answer")

    def test_an_address_added_to_the_link_is_a_wakeup_when_addresses_are_watched(self):
        self.start_broker(watch_addresses=True)
        capture = FarCapture(self, self.far, FAR_LINK)
        dig = self.start_query(4)
        self.assertEqual(self.wait_until_held()["held"], 1)
        # An address on another interface is no wakeup: the query would leave from it, and the
        # far side has no route back to 10.88.0.1, so dig would get no answer.
        run("ip", "addr", "add", "10.88.0.1/32", "dev", "lo")
        self.renumber(4)  # and no command
        self.assertEqual(self.answer(dig), ANSWER[4])
        self.assert_one_query_arrived(capture, 4, NEW[4])
        status = self.status()
        self.assertEqual(status["ipv4"], {"up": True, "address": NEW[4]})
        self.assertGreaterEqual(status["counters"]["wakeups"], 1)
        self.assertEqual(status["counters"]["rewritten"], 1)
        self.assert_every_packet_decided_once()

    def test_a_tcp_connection_whose_syn_was_held_completes(self):
        self.far_nginx()
        # SYN retransmissions (after 1, 3, 7 s) are held with the first SYN (hold_packets: 4).
        self.start_broker(hold_packets=4)
        capture = FarCapture(self, self.far, FAR_LINK)
        curl = self.start("curl", "-sS", "--interface", OLD[4], "--connect-timeout", "40",
                          "--max-time", "80", f"http://{FAR[4]}/{FILE}")
        self.wait_until_held()
        self.assertEqual(self.far_received(), 0, "the held SYN went out before the wakeup")
        # IPv4 routes nothing from an address the host no longer has, so without OLD the
        # connection could not even acknowledge the SYN-ACK. As diald keeps the old address on
        # its proxy interface, OLD stays on lo. (IPv6 does not check; the UDP tests send
        # nothing after the wakeup.)
        self.renumber(4, keep_old_on_lo=True)
        self.wakeup(4)
        self.assertEqual(self.finish(curl), (0, BODY.strip()))

        counters = self.status()["counters"]
        self.assertGreaterEqual(counters["rewritten"], 1)
        self.assertGreaterEqual(counters["translated_out"], 1)  # the ACK, the request, the FIN
        self.assertGreaterEqual(counters["translated_in"], 1)
        self.assertEqual(counters["timeouts"], 0)
        segments = [s for s in capture.arrived() if s.protocol == TCP]
        self.assertTrue(segments, "no TCP segment reached the far side")
        self.assertEqual({s.source for s in segments}, {NEW[4]}, "a segment left from OLD")
        self.assertEqual([s for s in segments if not (s.ip_checksum_ok and s.l4_checksum_ok)],
                         [], "segments with a bad checksum")
        self.assertEqual(checksum_errors(self.far.exec), NO_CHECKSUM_ERRORS, "far side")
        self.assertEqual(checksum_errors(run), NO_CHECKSUM_ERRORS, "local side")
        self.assert_every_packet_decided_once()

    def test_ipv6_a_held_query_leaves_from_the_new_address_and_its_answer_comes_back(self):
        self.start_broker()
        capture = FarCapture(self, self.far, FAR_LINK)
        dig = self.start_query(6)
        self.assertEqual(self.wait_until_held()["held"], 1)
        self.assertEqual(self.far_received(), 0, "the held query went out before the wakeup")
        self.renumber(6)
        self.wakeup(6)
        self.assertEqual(self.answer(dig), ANSWER[6])

        status = self.status()
        self.assertEqual(status["ipv6"], {"up": True, "address": NEW[6]})
        self.assertEqual(status["ipv4"], {"up": False, "address": None})
        self.assertEqual(status["counters"]["rewritten"], 1)
        self.assertGreaterEqual(status["counters"]["translated_in"], 1)
        self.assert_one_query_arrived(capture, 6, NEW[6])  # UDP over the IPv6 pseudo-header
        self.assertEqual(checksum_errors(self.far.exec), NO_CHECKSUM_ERRORS, "far side")
        self.assertEqual(checksum_errors(run), NO_CHECKSUM_ERRORS, "the translated answer")
        self.assert_every_packet_decided_once()

    def test_at_the_deadline_held_packets_are_dropped_when_so_configured(self):
        self.start_broker(wakeup_wait_ms=1000, on_timeout="drop")
        dig = self.start_query(4, timeout=4)
        status = self.status_once(lambda s: s["counters"]["timeouts"] >= 1, "the wakeup deadline")
        self.assertEqual((status["held"], status["counters"]["timeouts"]), (0, 1))
        self.assertEqual(status["counters"]["rewritten"], 0)
        self.assertEqual(self.finish(dig)[0], 9)  # dig: no answer
        self.assertEqual(self.far_received(), 0, "the dropped query went out")
        self.assertEqual(self.dns_queries(), [])
        self.assertEqual(self.assert_every_packet_decided_once()["queue"]["dropped"], 1)

    def test_at_the_deadline_held_packets_leave_unchanged_when_so_configured(self):
        self.start_broker(wakeup_wait_ms=1000, on_timeout="release")
        capture = FarCapture(self, self.far, FAR_LINK)
        dig = self.start_query(4, timeout=20)
        self.assertEqual(self.answer(dig), ANSWER[4])  # OLD is still there: no address change
        status = self.status()
        self.assertEqual(status["held"], 0)
        self.assertEqual(status["ipv4"], {"up": False, "address": None})
        counters = status["counters"]
        self.assertEqual((counters["timeouts"], counters["rewritten"]), (1, 0))
        queries = [s for s in capture.arrived() if s.protocol == UDP and s.dport == 53]
        self.assertEqual([q.source for q in queries], [OLD[4]])
        self.assert_every_packet_decided_once()

    def test_a_query_the_policy_drops_stays_dropped_after_resend_held_it(self):
        # resend holds whatever rule matched (it cannot see rules), but only a rule that hands
        # it the decision lets its release count: here the rule's drop stands.
        self.start_broker(first_rules="  - {name: no-dns, match: {proto: udp, dport: 53}, "
                                      "verdict: drop}\n")
        dig = self.start_query(4, timeout=8)
        self.assertEqual(self.wait_until_held()["held"], 1)
        self.renumber(4)
        self.wakeup(4)
        self.assertTrue(self.answer(dig).startswith("dig failed"))
        self.assertEqual(self.far_received(), 0, "a packet the policy drops reached the far side")
        stats = self.assert_every_packet_decided_once()
        self.assertGreaterEqual(stats["queue"]["dropped"], 1)

    def test_bad_wakeups_are_refused_and_change_nothing(self):
        self.start_broker()
        dig = self.start_query(4)
        before = self.wait_until_held()
        bad_wakeups = (  # the arguments, and what the reason must name
            (["--iface", "nosuch0", "--addr", NEW[4]], "nosuch0"),
            (["--iface", LINK, "--addr", "10.77.0.999"], "10.77.0.999"),
            (["--iface", LINK], "--addr"),
        )
        for args, named in bad_wakeups:
            with self.subTest(args=args):
                reply = self.resend("wakeup", *args)
                self.assertEqual(reply.returncode, 1, reply.stdout)
                self.assertTrue(reply.stderr.startswith("pktbrokerctl: plugin resend: "),
                                reply.stderr)
                self.assertIn(named, reply.stderr)
        after = self.status()
        self.assertEqual(after["counters"].pop("bad_commands"), 3)
        before["counters"].pop("bad_commands")
        self.assertEqual(after, before)  # still held 1, ipv4 down, no wakeup counted
        self.assertEqual(after["held"], 1)
        self.assertEqual(self.far_received(), 0)

        self.renumber(4)
        self.wakeup(4)
        self.assertEqual(self.answer(dig), ANSWER[4])
        self.assertEqual(self.status()["counters"]["rewritten"], 1)
        self.assert_every_packet_decided_once()


if __name__ == "__main__":
    main()
