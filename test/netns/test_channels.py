"""Channels against a live broker: delivery policies, rights, limits, queues that drop or push
back, mirrors of queued packets, tap devices, kicks and events. Members are raw protocol
sessions (wire.ChannelMember), libpktbroker programs (channel_tool, the examples) and the
kernel's own stack (taps)."""

import json
import os
import socket
import struct
import subprocess
import time

from netns import (CollectedProcess, Namespace, NetnsTestCase, as_user, main, run, wait_for)
import wire

CTL = os.environ.get("PKTBROKERCTL", "")
TOOL = os.environ.get("CHANNEL_TOOL", "")
PCAP = os.environ.get("PCAP_TOOL", "")
EXAMPLES = os.environ.get("EXAMPLES", "")
BASE = "broker:\n  queues: [{num: 0}]\n  default_verdict: accept\n"


def ethernet(dst, src, payload=b"hello"):
    """A frame between MACs 02:00:00:00:00:<src> and <dst> (0xff: broadcast)."""
    to = b"\xff" * 6 if dst == 0xff else bytes([2, 0, 0, 0, 0, dst])
    return to + bytes([2, 0, 0, 0, 0, src]) + b"\x88\xb5" + payload


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def icmp_echo(src, dst, ident=0x4242):
    """An IPv4 ICMP echo request from src to dst (dotted quads), checksums right."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"pktbroker"
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    addresses = bytes(map(int, src.split("."))) + bytes(map(int, dst.split(".")))
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0) + addresses
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + icmp


def everyone_may_connect(daemon):
    os.chmod(daemon.socket, 0o666)
    os.chmod(daemon.dir, 0o755)


class Channels(NetnsTestCase):
    def channel_daemon(self, channels, extra=""):
        return self.daemon(BASE + "channels:\n" + channels + extra)

    def member(self, daemon, channel, rights=0, name="member"):
        member = wire.ChannelMember(daemon.socket, channel, rights, name)
        self.addCleanup(member.close)
        return member

    def ctl(self, daemon, *args, user=None):
        argv = [CTL, f"--socket={daemon.socket}", *args]
        return run(*(as_user(user, *argv) if user else argv), check=False)

    def channels(self, daemon):
        listing = self.ctl(daemon, "channels", "--json")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        return {c["name"]: c for c in json.loads(listing.stdout)}

    def tool(self, daemon, *args, user=None):
        argv = [TOOL, daemon.socket, *map(str, args)]
        return CollectedProcess(self, as_user(user, *argv) if user else argv)

    def test_broadcast_members_get_each_others_frames_and_never_their_own(self):
        daemon = self.channel_daemon("  - {name: lab}\n")
        a, b, c = (self.member(daemon, "lab", name=n) for n in "abc")
        self.assertEqual((a.link, a.max_frame), (0, 1518))
        self.assertEqual(len({a.member, b.member, c.member}), 3)
        for sender in (a, b, c):
            sender.put(ethernet(0xff, sender.member, b"from %d" % sender.member))
        for receiver in (a, b, c):
            got = sorted(receiver.wait_frames(2))
            expected = sorted((m.member, ethernet(0xff, m.member, b"from %d" % m.member))
                              for m in (a, b, c) if m is not receiver)
            self.assertEqual(got, expected)
        for receiver in (a, b, c):
            self.assertEqual(len(receiver.drain()), 2, "no member gets its own frame back")
        lab = self.channels(daemon)["lab"]
        self.assertEqual((lab["frames"], lab["delivered"], lab["dropped"]), (3, 6, 0))

    def test_switch_learns_unicasts_floods_unknowns_and_ages_entries(self):
        daemon = self.channel_daemon("  - {name: lan, delivery: switch}\n",
                                     "plugins:\n  - {name: switch, config: {ageing_ms: 1500}}\n")
        a, b, c = (self.member(daemon, "lan", name=n) for n in "abc")
        a.put(ethernet(0xff, 0xa))                      # a announces itself: flooded
        self.assertEqual(len(b.wait_frames(1)), 1)
        self.assertEqual(len(c.wait_frames(1)), 1)
        b.put(ethernet(0xa, 0xb, b"to a"))              # a is learnt: only a gets it
        self.assertEqual(a.wait_frames(1)[-1], (b.member, ethernet(0xa, 0xb, b"to a")))
        c.put(ethernet(0x77, 0xc, b"to nobody known"))  # unknown: flooded
        a.wait_frames(2)
        b.wait_frames(2)
        self.assertEqual(len(c.drain()), 1, "c saw only a's announcement")
        self.assertEqual(len(b.drain()), 2, "b did not see b->a")
        time.sleep(2.0)                                # a's entry ages out: flooded again
        b.put(ethernet(0xa, 0xb, b"to a, aged"))
        self.assertEqual(c.wait_frames(2)[-1], (b.member, ethernet(0xa, 0xb, b"to a, aged")))
        self.assertEqual(len(a.wait_frames(3)), 3)
        daemon.stats()
        counters = daemon.plugin_stats("switch")
        self.assertGreaterEqual(counters["aged"], 1)
        self.assertEqual(counters["unicast"], 1)

    def test_rights_follow_the_access_list(self):
        daemon = self.channel_daemon(
            "  - name: lab\n    access:\n      - {user: nobody, rights: [receive]}\n")
        everyone_may_connect(daemon)
        # A receive-only user joins with that right alone and is refused the send right.
        listener = self.tool(daemon, "receive", "lab", 1, 0, 3000, user="nobody")
        listener.wait_line("joined")
        sender = self.tool(daemon, "send", "lab", 1, user="nobody")
        self.assertEqual(sender.wait_exit(), 1)
        self.assertIn("uid 65534 may not join channel lab (it has: receive)",
                      " ".join(sender.lines))
        # A member that joined receive-only and sends anyway gets a clear error, not a close.
        root = self.member(daemon, "lab", rights=wire.RECEIVE)
        self.assertEqual(root.rights, wire.RECEIVE)
        root.put(ethernet(0xff, 1))
        root.drain()
        self.assertEqual(len(root.errors), 1)
        self.assertEqual(root.errors[0][0], 2)  # not_permitted
        self.assertIn("without the send right", root.errors[0][1])
        root.send(wire.frame(wire.PING, b"", 9))
        self.assertEqual(root.wait_reply(9)[0], wire.PONG)
        # Nothing of it reached the listener.
        self.assertIn("received 0 ", listener.wait_line("received", timeout=10))
        # A user the access list does not name is refused at the door.
        stranger = self.tool(daemon, "receive", "lab", 1, user="daemon")
        self.assertEqual(stranger.wait_exit(), 1)
        self.assertIn("no grant for uid 1 ", " ".join(stranger.lines))
        # A name no channel has.
        self.assertIn("no channel nosuch", root.join("nosuch")[1])

    def test_member_limit_is_enforced(self):
        daemon = self.channel_daemon("  - {name: duo, max_members: 2}\n")
        first = self.member(daemon, "duo")
        self.member(daemon, "duo")
        third = self.member(daemon, "", name="third")
        code, text = third.join("duo")
        self.assertEqual(code, 11)  # channel_full
        self.assertIn("channel duo has its most members (2)", text)
        self.assertEqual(third.join("duo")[0], 11, "asking again does not get past it")
        first.close()  # a place freed by a leaving session is free again
        wait_for(lambda: len(self.channels(daemon)["duo"]["members"]) == 1, what="the leave")
        self.assertIsNone(third.join("duo"))
        self.assertEqual(len(self.channels(daemon)["duo"]["members"]), 2)

    def test_a_slow_member_misses_frames_counted_while_the_others_get_everything(self):
        daemon = self.channel_daemon("  - {name: feed, queue_length: 256}\n")
        stalled = self.member(daemon, "feed", rights=wire.RECEIVE, name="stalled")
        fast = self.tool(daemon, "receive", "feed", 5000, 0, 3000)
        fast.wait_line("joined")
        sender = self.tool(daemon, "send", "feed", 5000, 64, 2000)  # ~32k frames a second
        self.assertEqual(sender.wait_exit(), 0, sender.lines)
        self.assertIn("received 5000 gaps 0 out_of_order 0", fast.wait_line("received", timeout=30))
        got = len(stalled.drain(quiet=1.0))
        feed = self.channels(daemon)["feed"]
        member = next(m for m in feed["members"] if m["name"] == "stalled")
        self.assertGreater(member["dropped"], 0)
        self.assertEqual(got + member["dropped"], 5000, "every frame delivered or counted")
        self.assertEqual(feed["dropped"], member["dropped"])

    def test_backpressure_loses_nothing(self):
        daemon = self.channel_daemon(
            "  - {name: bulk, queue_length: 64, overflow: backpressure}\n")
        slow = self.tool(daemon, "receive", "bulk", 20000, 20, 5000)
        slow.wait_line("joined")
        sender = self.tool(daemon, "send", "bulk", 20000)
        self.assertEqual(sender.wait_exit(timeout=60), 0, sender.lines)
        self.assertIn("received 20000 gaps 0 out_of_order 0", slow.wait_line("received", timeout=60))
        self.assertIn("channels: bulk pauses its senders", daemon.log())  # (a debug line)
        bulk = self.channels(daemon)["bulk"]
        self.assertEqual((bulk["dropped"], bulk["refused"]), (0, 0))
        self.assertFalse([l for l in sender.lines if l.startswith("notice")], sender.lines)

    def test_members_that_send_and_receive_on_a_backpressure_channel_never_deadlock(self):
        # Each pauses the other: a client blocked on a full socket must still read, or neither
        # side moves again.
        daemon = self.channel_daemon(
            "  - {name: pair, queue_length: 16, overflow: backpressure}\n")
        pair = []
        for _ in range(2):
            member = subprocess.Popen([TOOL, daemon.socket, "both", "pair", "5000", "1400"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.addCleanup(member.stdout.close)
            self.addCleanup(member.wait)
            self.addCleanup(member.kill)
            self.assertTrue(member.stdout.readline().startswith("joined"))
            pair.append(member)
        for member in pair:
            member.stdin.write("go\n")
            member.stdin.close()
        for member in pair:
            self.assertEqual(member.wait(timeout=60), 0)
            output = member.stdout.read()
            self.assertIn("received 5000 gaps 0 out_of_order 0", output)
        pair = self.channels(daemon)["pair"]
        self.assertEqual((pair["dropped"], pair["delivered"]), (0, 10000))

    def stalled_channel(self, sender_name):
        """A backpressure channel of queue length 8 whose receive-only member does not read yet,
        and a sender: (daemon, stalled member, sender, a 1400-byte frame of the sender's)."""
        daemon = self.channel_daemon(
            "  - {name: bulk, queue_length: 8, overflow: backpressure}\n")
        stalled = self.member(daemon, "bulk", rights=wire.RECEIVE, name="stalled")
        sender = self.member(daemon, "bulk", rights=wire.SEND, name=sender_name)
        return daemon, stalled, sender, wire.channel_send(sender.id, ethernet(0xff, 1, b"x" * 1400))

    def test_a_sender_that_ignores_the_pause_only_blocks_itself(self):
        daemon, stalled, rude, datagram = self.stalled_channel("rude")

        def fill():  # sends until rude's own socket is full; how many went
            rude.sock.setblocking(False)
            count = 0
            try:
                while True:
                    rude.send(datagram)
                    count += 1
            except BlockingIOError:
                return count

        sent, deadline = 0, time.monotonic() + 20
        while True not in rude.flow:  # the stalled member's queue fills: the channel pauses
            self.assertLess(time.monotonic(), deadline, "the channel never paused its sender")
            sent += fill()
            rude.drain(quiet=0.1)
        time.sleep(0.5)
        sent += fill()
        time.sleep(0.5)
        self.assertEqual(fill(), 0, "the broker does not read a paused sender")
        rude.drain()
        self.assertEqual(rude.flow, [True], "the sender was told to pause")
        self.assertEqual(rude.errors, [])
        bulk = self.channels(daemon)["bulk"]
        queued = next(m for m in bulk["members"] if m["name"] == "stalled")["queued"]
        self.assertLessEqual(queued, 8 + 320, "what waits for the stalled member is bounded")
        got = stalled.drain(quiet=1.0)
        self.assertEqual(len(got), sent, "nothing was lost")
        bulk = self.channels(daemon)["bulk"]
        self.assertEqual((bulk["dropped"], bulk["refused"], bulk["frames"]), (0, 0, sent))
        rude.drain()
        # Draining lets the broker read what waited in rude's socket, which may pause it
        # again before the end: pauses and resumes alternate, and the last is a resume.
        self.assertEqual(rude.flow, [True, False] * (len(rude.flow) // 2), "and it may go on")
        self.assertGreaterEqual(len(rude.flow), 2)

    def test_a_sender_that_leaves_while_paused_still_has_everything_it_sent_delivered(self):
        # It closes with the pause notice unread in its socket, so the broker's next read of it
        # fails with ECONNRESET before the frames that wait there.
        daemon, stalled, leaving, datagram = self.stalled_channel("leaving")
        leaving.sock.setblocking(False)
        sent, deadline = 0, time.monotonic() + 20
        while True:
            self.assertLess(time.monotonic(), deadline, "the channel never paused its sender")
            try:
                leaving.send(datagram)
                sent += 1
            except BlockingIOError:
                time.sleep(0.05)
            try:
                if leaving.sock.recv(64, socket.MSG_PEEK):  # the pause notice, left unread
                    break
            except BlockingIOError:
                pass
        try:
            while True:  # into its socket: the broker does not read a paused sender
                leaving.send(datagram)
                sent += 1
        except BlockingIOError:
            pass
        leaving.sock.close()
        got = stalled.drain(quiet=1.0)
        self.assertEqual(len(got), sent, "every frame sent before leaving was delivered")
        bulk = self.channels(daemon)["bulk"]
        self.assertEqual((bulk["frames"], bulk["dropped"], bulk["refused"]), (sent, 0, 0))
        self.assertEqual([m["name"] for m in bulk["members"]], ["stalled"])

    def test_bad_frames_are_refused_with_an_error_and_never_forwarded(self):
        daemon = self.channel_daemon("  - {name: eth, max_frame: 100}\n  - {name: ipc, link: ip}\n")
        sender, receiver = self.member(daemon, "eth"), self.member(daemon, "eth")
        sender.put(ethernet(0xff, 1, b"x" * 200))  # 214 bytes: over max_frame
        sender.sync()                              # (each refusal in an error of its own)
        sender.put(b"\x01\x02\x03")                # shorter than an Ethernet header
        sender.put(ethernet(0xff, 1, b"fine"))
        self.assertEqual(receiver.wait_frames(1), [(sender.member, ethernet(0xff, 1, b"fine"))])
        self.assertEqual(len(receiver.drain()), 1)
        sender.drain()
        text = " ".join(e[1] for e in sender.errors)
        self.assertIn("refused on channel eth: a frame of 214 bytes is over channel eth's "
                      "max_frame of 100", text)
        self.assertIn("a frame of 3 bytes is shorter than an Ethernet header", text)
        ip_sender, ip_receiver = self.member(daemon, "ipc"), self.member(daemon, "ipc")
        ip_sender.put(b"\x45\x00\x00\x30" + b"\x00" * 10)  # claims 48 bytes, has 14
        ip_sender.drain()
        self.assertIn("not a whole IP packet", " ".join(e[1] for e in ip_sender.errors))
        self.assertEqual(ip_receiver.drain(), [])
        self.assertEqual(self.channels(daemon)["eth"]["refused"], 2)
        # A frame for a channel the session never joined: an error, the session lives on.
        ip_sender.send(wire.channel_send(999, ethernet(0xff, 1)))
        ip_sender.drain()
        self.assertIn("channel id 999, which this session has not joined", ip_sender.errors[-1][1])

    def test_a_mirror_records_the_packets_of_a_ping_through_the_queue(self):
        daemon = self.daemon(BASE + "channels:\n  - {name: tap, link: ip}\nrules:\n"
                             "  - {name: icmp, match: {proto: icmp}, verdict: accept, mirror: tap}\n")
        run("iptables", "-A", "OUTPUT", "-p", "icmp", "-j", "NFQUEUE", "--queue-num", "0")
        path = os.path.join(self.scratch(), "mirror.pcap")
        recorder = CollectedProcess(self, [PCAP, "--count", "4", daemon.socket, "tap", path])
        recorder.wait_line("pktbroker-pcap: recording")
        ping = run("ping", "-c", "2", "-i", "0.2", "-W", "2", "127.0.0.1", check=False)
        self.assertEqual(ping.returncode, 0, ping.stdout)
        self.assertEqual(recorder.wait_exit(), 0, recorder.lines)
        self.assertIn("pktbroker-pcap: 4 frames written", recorder.lines)
        read = run("tcpdump", "-n", "-r", path, check=False)
        self.assertEqual(read.returncode, 0, read.stderr)
        lines = read.stdout.strip().splitlines()
        self.assertEqual(len(lines), 4, read.stdout)
        self.assertEqual(sum("ICMP echo request" in l for l in lines), 2, read.stdout)
        self.assertEqual(sum("ICMP echo reply" in l for l in lines), 2, read.stdout)

    def test_two_namespaces_ping_each_other_through_a_switch_channel_of_taps(self):
        daemon = self.channel_daemon("  - {name: lan, delivery: switch, tap: [pbta, pbtb]}\n")
        for tap, address in (("pbta", "10.77.0.1/24"), ("pbtb", "10.77.0.2/24")):
            ns = Namespace("pktb-tap")
            self.addCleanup(ns.delete)
            run("ip", "link", "set", tap, "netns", ns.name)
            ns.exec("ip", "addr", "add", address, "dev", tap)
            ns.exec("ip", "link", "set", tap, "up")
            if tap == "pbta":
                first = ns
        ping = first.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.2", check=False)
        self.assertEqual(ping.returncode, 0, ping.stdout)
        lan = self.channels(daemon)["lan"]
        self.assertEqual(sorted(m["name"] for m in lan["members"]), ["tap pbta", "tap pbtb"])
        self.assertGreaterEqual(lan["delivered"], 6)  # ARP both ways, 3 requests, 3 replies
        daemon.stats()
        self.assertGreaterEqual(daemon.plugin_stats("switch")["unicast"], 6)

    def test_a_tun_device_answers_an_ip_channel_member(self):
        daemon = self.channel_daemon("  - {name: wire, link: ip, tap: pbtun}\n")
        ns = Namespace("pktb-tun")
        self.addCleanup(ns.delete)
        run("ip", "link", "set", "pbtun", "netns", ns.name)
        ns.exec("ip", "addr", "add", "10.88.0.1/24", "dev", "pbtun")
        ns.exec("ip", "link", "set", "pbtun", "up")
        member = self.member(daemon, "wire")
        self.assertEqual(member.link, 1)  # ip
        member.put(icmp_echo("10.88.0.2", "10.88.0.1"))

        def reply():  # the kernel's echo reply, out of the tun (among whatever else it sends)
            member.drain(quiet=0.1)
            return next((f for _, f in member.frames if f[0] >> 4 == 4 and f[9] == 1 and
                         f[12:20] == bytes([10, 88, 0, 1, 10, 88, 0, 2]) and f[20] == 0), None)

        answer = wait_for(reply, what="the echo reply from the tun's namespace")
        self.assertEqual(struct.unpack_from("!H", answer, 24)[0], 0x4242)
        tun = next(m for m in self.channels(daemon)["wire"]["members"] if m["name"] == "tap pbtun")
        self.assertGreaterEqual(tun["received"], 1)
        self.assertGreaterEqual(tun["sent"], 1)

    def test_kick_tells_the_member_and_the_event_log(self):
        events = os.path.join(self.scratch(), "events.json")
        daemon = self.channel_daemon("  - {name: lab}\n", f"events: {{file: {events}}}\n")
        victim, other = self.member(daemon, "lab", name="victim"), self.member(daemon, "lab")
        listed = self.channels(daemon)["lab"]["members"]
        self.assertEqual([m["name"] for m in listed], ["victim", "member"])
        kicked = self.ctl(daemon, "kick", "lab", str(victim.member))
        self.assertEqual(kicked.returncode, 0, kicked.stderr)
        victim.drain()
        self.assertEqual(victim.left, ["kicked by uid 0 (pktbrokerctl)"])
        other.put(ethernet(0xff, 1))
        self.assertEqual(victim.drain(), [], "a kicked member gets nothing more")
        self.assertEqual(self.ctl(daemon, "kick", "lab", "99").returncode, 1)
        other.close()
        wait_for(lambda: self.channels(daemon)["lab"]["members"] == [], what="the leave")
        self.assertEqual(daemon.stop(), 0)  # (under ASan: nothing leaked)
        with open(events) as f:
            actions = [json.loads(l)["channel"]["action"] for l in f
                       if '"event_type":"channel"' in l]
        self.assertEqual(actions, ["join", "join", "kick", "leave"])

    def test_a_reload_applies_access_lists_and_adds_and_closes_channels(self):
        daemon = self.daemon(BASE + "channels:\n  - name: lab\n    access:\n"
                             "      - {user: nobody, rights: [receive]}\n"
                             "  - {name: old, tap: pbold}\n")
        everyone_may_connect(daemon)
        listener = self.tool(daemon, "receive", "lab", 1, 0, 30000, user="nobody")
        listener.wait_line("joined")
        old, keeper = self.member(daemon, "old"), self.member(daemon, "lab", name="keeper")
        # The old channel's tap is busy when the reload closes it (ARP for a missing neighbour).
        run("ip", "addr", "add", "10.66.0.1/24", "dev", "pbold")
        run("ip", "link", "set", "pbold", "up")
        pinger = subprocess.Popen(["ping", "-i", "0.01", "10.66.0.2"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        self.addCleanup(pinger.wait)
        self.addCleanup(pinger.kill)
        wait_for(lambda: old.drain(quiet=0.05), what="frames from the tap")
        # "broken" cannot be made (lo is no tun device): logged, and the rest still applies.
        daemon.reload(BASE + "channels:\n  - {name: lab, max_members: 3}\n  - {name: new}\n"
                      "  - {name: broken, tap: lo}\n")
        wait_for(lambda: "policy reloaded" in daemon.log(), what="the reload")
        self.assertEqual(listener.wait_exit(), 1, "nobody's rights were taken away")
        self.assertTrue(any(l.startswith("error receive") for l in listener.lines), listener.lines)
        wait_for(lambda: old.drain(quiet=0.05) is not None and old.left, what="old's members told")
        self.assertEqual(old.left, ["the reloaded policy removed channel old"])
        wait_for(lambda: run("ip", "link", "show", "pbold", check=False).returncode != 0,
                 what="the closed channel's tap to go")
        keeper.drain()
        self.assertEqual(keeper.left, [], "root's rights did not change")
        self.member(daemon, "new")
        channels = self.channels(daemon)
        self.assertEqual(sorted(channels), ["lab", "new"])
        self.assertEqual(channels["lab"]["max_members"], 3)
        self.assertIn("channels: reload: channel broken", daemon.log())
        again = self.tool(daemon, "receive", "lab", 1, user="nobody")
        self.assertEqual(again.wait_exit(), 1)
        self.assertIn("no grant for uid 65534", " ".join(again.lines))
        self.assertIsNone(daemon.process.poll())

    def test_a_manager_creates_a_channel_at_run_time_for_other_users(self):
        daemon = self.daemon(BASE)
        everyone_may_connect(daemon)
        refused = self.ctl(daemon, "channel-create", "x", user="nobody")
        self.assertEqual(refused.returncode, 1)
        made = self.ctl(daemon, "channel-create", "talk", "--access", "user:nobody=receive,send",
                        "--max-members", "4")
        self.assertEqual(made.returncode, 0, made.stderr)
        self.assertEqual(self.ctl(daemon, "channel-create", "talk").returncode, 1)
        crowd = ["--access=uid:%d=receive" % (1000 + i) for i in range(65)]
        too_many = self.ctl(daemon, "channel-create", "crowd", *crowd)
        self.assertEqual(too_many.returncode, 1)
        self.assertIn("at most 64 access entries", too_many.stderr)
        for i in range(255):  # with talk, the broker's most channels
            self.assertEqual(self.ctl(daemon, "channel-create", f"c{i}").returncode, i >= 255)
        over = self.ctl(daemon, "channel-create", "one-more")
        self.assertEqual(over.returncode, 1)
        self.assertIn("the broker has its most channels (256)", over.stderr)
        # A user no clients: grant names gets in for the channel its access list gives it.
        listener = self.tool(daemon, "receive", "talk", 3, 0, 3000, user="nobody")
        listener.wait_line("joined")
        sender = self.tool(daemon, "send", "talk", 3, user="nobody")
        self.assertEqual(sender.wait_exit(), 0, sender.lines)
        self.assertIn("received 3 gaps 0", listener.wait_line("received"))
        talk = self.channels(daemon)["talk"]
        self.assertEqual(talk["max_members"], 4)
        self.assertEqual(talk["frames"], 3)

    def test_the_chat_example_carries_lines_between_two_users(self):
        daemon = self.channel_daemon("  - {name: chat}\n")
        chat = os.path.join(EXAMPLES, "pktbroker_channel_chat")
        alice = subprocess.Popen([chat, daemon.socket, "chat", "alice"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        bob = subprocess.Popen([chat, daemon.socket, "chat", "bob"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        for process in (alice, bob):
            self.addCleanup(process.stdout.close)
            self.addCleanup(process.wait)
            self.addCleanup(process.kill)
            self.assertTrue(process.stdout.readline().startswith("joined chat as member"))
        alice.stdin.write("hello bob\n")
        alice.stdin.flush()
        self.assertEqual(bob.stdout.readline().strip(), "alice: hello bob")
        bob.stdin.write("hi alice\n")
        bob.stdin.flush()
        self.assertEqual(alice.stdout.readline().strip(), "bob: hi alice")
        alice.stdin.close()
        bob.stdin.close()
        self.assertEqual(alice.wait(timeout=10), 0)
        self.assertEqual(bob.wait(timeout=10), 0)


if __name__ == "__main__":
    main()
