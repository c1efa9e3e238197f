"""Per-application rules: the process behind each packet, found by the eBPF program (or, without
it, by sock_diag and /proc), matched by app.path, app.name, app.cmdline, app.cgroup and
app.parent. Real programs (curl, python3, sh) against nginx and UDP sinks in a namespace."""

import os
import shutil
import signal
import subprocess
import sys
import time

from netns import NetnsTestCase, UdpSink, main, run, send_udp, wait_for

QUEUE = "broker:\n  queues: [{num: 0}]\n  default_verdict: accept\n"
CURL = shutil.which("curl")


def cgroup2_root():
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    raise AssertionError("no cgroup2 file system is mounted")


def curl(binary, url, *argv):
    """Whether `binary` (a curl) fetched `url`; the first SYN is what the broker decides."""
    done = subprocess.run([binary, "-s", "-o", "/dev/null", "--max-time", "2", *argv, url],
                          check=False)
    return done.returncode == 0


def python_udp(address, port, marker, count=5, then_exit=False):
    """A python3 sending `count` datagrams; `marker` is in its command line."""
    family = "AF_INET6" if ":" in address else "AF_INET"
    # It stays a while: a sender gone before the broker could read /proc is unknown.
    code = (f"import socket,time; s=socket.socket(socket.{family}, socket.SOCK_DGRAM)\n"
            f"for i in range({count}): s.sendto(b'x', ('{address}', {port}))\n"
            f"time.sleep(0 if {then_exit} else 0.5)  # {marker}\n")
    return subprocess.run([sys.executable, "-c", code], check=True)


def identity_stats(daemon):
    """The resolver's counters from the newest `stats identity` line (call stats() first)."""
    lines = [l for l in daemon.log().splitlines() if " stats identity " in l]
    pairs = dict(p.split("=", 1) for p in lines[-1].split(" stats identity ", 1)[1].split())
    return {k: (v == "true" if v in ("true", "false") else int(v)) for k, v in pairs.items()}


class Identity(NetnsTestCase):
    def queue_all(self, protocol="tcp", syn_only=True):
        for tool in ("iptables", "ip6tables"):
            extra = ["--syn"] if protocol == "tcp" and syn_only else []
            run(tool, "-A", "OUTPUT", "-p", protocol, *extra, "-j", "NFQUEUE", "--queue-num", "0")

    def copy_of_curl(self):
        path = os.path.join(self.scratch(), "curl-copy")
        shutil.copy2(CURL, path)
        return path

    def test_curl_at_two_paths_gets_two_verdicts(self):
        self.nginx({"index.html": b"hello"})
        copy = self.copy_of_curl()
        daemon = self.daemon(QUEUE + f"""rules:
  - name: the-copy
    match: {{proto: tcp, app.path: "{copy}"}}
    verdict: drop
  - name: real-curl
    match: {{proto: tcp, app.path: "/usr/bin/cur?"}}
    verdict: accept
""")
        self.queue_all()
        for url in ("http://127.0.0.1/", "http://[::1]/"):
            self.assertTrue(curl(CURL, url), f"{CURL} {url}")
            self.assertFalse(curl(copy, url), f"{copy} {url}")
        stats = daemon.stats()
        self.assertEqual(stats["rules"]["real-curl"]["packets"], 2)
        self.assertGreaterEqual(stats["rules"]["the-copy"]["packets"], 2)  # SYNs sent again
        self.assertEqual(stats["queue"]["identity_unknown"], 0)
        self.assertIn("identity: eBPF flow owners attached", daemon.log())

    def test_name_cmdline_and_parent_match_udp_v4_and_v6(self):
        daemon = self.daemon(QUEUE + f"""rules:
  - name: marked
    match: {{proto: udp, app.name: python3, app.cmdline: "*drop-me*"}}
    verdict: drop
  - name: under-sh
    match: {{proto: udp, app.parent: [/usr/bin/dash, /bin/dash], not: {{app.cmdline: "*keep*"}}}}
    verdict: drop
""")
        self.queue_all("udp")
        for address in ("127.0.0.1", "::1"):
            sink = UdpSink(self, address, 5000)
            python_udp(address, 5000, "drop-me")
            self.assertEqual(sink.settle(), 0, f"{address}: app.cmdline matched")
            python_udp(address, 5000, "pass")
            self.assertEqual(sink.settle(5), 5, f"{address}: another command line")
            # The same program under sh (dash): app.parent matches unless the not: holds.
            code = (f"import socket,time; s=socket.socket(socket.AF_INET6 if ':' in '{address}' "
                    f"else socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('{address}', 5000)); "
                    f"time.sleep(0.5)")
            run("dash", "-c", f'{sys.executable} -c "{code}"; true')
            self.assertEqual(sink.settle(), 5, f"{address}: app.parent matched")
            run("dash", "-c", f'{sys.executable} -c "{code}" keep; true')
            self.assertEqual(sink.settle(6), 6, f"{address}: not: app.cmdline kept it")
            sink.close()
        stats = daemon.stats()
        self.assertEqual(stats["rules"]["marked"]["packets"], 10)
        self.assertEqual(stats["rules"]["under-sh"]["packets"], 2)

    def test_a_cgroup_match_follows_a_process_moved_into_it(self):
        self.nginx({"index.html": b"hello"})
        group = os.path.join(cgroup2_root(), f"pktbroker-test-{os.getpid()}")
        os.mkdir(group)
        self.addCleanup(os.rmdir, group)
        relative = "/" + os.path.relpath(group, cgroup2_root())
        daemon = self.daemon(QUEUE + f"""rules:
  - name: jailed
    match: {{proto: tcp, app.cgroup: {relative}}}
    verdict: drop
""")
        self.queue_all()
        self.assertTrue(curl(CURL, "http://127.0.0.1/"))
        moved = subprocess.run(
            ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec {CURL} -s -o /dev/null '
                         f'--max-time 2 http://127.0.0.1/'], check=False)
        self.assertNotEqual(moved.returncode, 0, "curl inside the cgroup was dropped")
        self.assertGreaterEqual(daemon.stats()["rules"]["jailed"]["packets"], 1)

    def test_a_process_that_exits_before_the_lookup_takes_the_fallback(self):
        daemon = self.daemon(QUEUE + """  identity: {fallback: drop}
rules:
  - name: python-allowed
    match: {proto: udp, app.name: python3}
    verdict: accept
""")
        self.queue_all("udp")
        sink = UdpSink(self, "127.0.0.1", 5000)
        python_udp("127.0.0.1", 5000, "alive")
        self.assertEqual(sink.settle(5), 5)
        # The broker stops; python sends and exits; the broker then finds only what the
        # eBPF program recorded (pid, name), not the process: unknown, never accepted.
        daemon.pause()
        python_udp("127.0.0.1", 5000, "gone", count=3, then_exit=True)
        daemon.send(signal.SIGCONT)
        self.assertEqual(sink.settle(), 5, "the exited sender's datagrams took the fallback")
        stats = daemon.stats()
        self.assertEqual(stats["queue"]["identity_unknown"], 3)
        self.assertEqual(stats["queue"]["dropped"], 3)
        self.assertGreaterEqual(identity_stats(daemon)["process_gone"], 1)

    def test_rules_before_the_first_app_rule_never_wait(self):
        daemon = self.daemon(QUEUE + """rules:
  - name: dns-for-all
    match: {proto: udp, dport: 5353}
    verdict: accept
  - name: curl-only
    match: {proto: udp, app.name: curl}
    verdict: accept
  - name: rest
    match: {proto: udp}
    verdict: drop
""")
        self.queue_all("udp")
        sinks = {port: UdpSink(self, "127.0.0.1", port) for port in (5353, 5000)}
        send_udp("127.0.0.1", 5353, 20)
        send_udp("127.0.0.1", 5000, 20)
        self.assertEqual(sinks[5353].settle(20), 20)
        self.assertEqual(sinks[5000].settle(), 0)
        stats = daemon.stats()
        self.assertEqual(stats["rules"]["dns-for-all"]["packets"], 20)
        self.assertEqual(stats["rules"]["rest"]["packets"], 20)
        # Only the packets that reached an app rule asked who sent them.
        self.assertEqual(stats["queue"]["identity_known"], 20)

    def test_a_port_taken_over_by_another_user_is_credited_to_it(self):
        # A trusted sender's record must not vouch for another process that binds the same
        # port after it, connects and uses send() (no sendmsg event), then closes at once.
        daemon = self.daemon(QUEUE + """rules:
  - name: trusted
    match: {proto: udp, app.cmdline: "*trusted-sender*"}
    verdict: accept
  - name: everyone-else
    match: {proto: udp}
    verdict: drop
""")
        self.queue_all("udp")
        sink = UdpSink(self, "127.0.0.1", 5000)
        sender = ("import socket,sys,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                  "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 47000))\n"
                  "if sys.argv[1] == 'connect': s.connect(('127.0.0.1', 5000)); s.send(b'x')\n"
                  "else: s.sendto(b'x', ('127.0.0.1', 5000))\n"
                  "s.close(); time.sleep(float(sys.argv[2]))\n")
        run(sys.executable, "-c", sender, "sendto", "0.5", "trusted-sender")
        self.assertEqual(sink.settle(1), 1, "the trusted sender's datagram")
        # Another user's: the socket's owner (NFQUEUE's uid) differs from the flow's known one.
        # (A process of the same user within the second of recheck is a documented limit.)
        run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
            "-c", sender, "connect", "0.5", "impostor")
        self.assertEqual(sink.settle(), 1, "the impostor's datagram was its own, and dropped")
        stats = daemon.stats()
        self.assertEqual(stats["rules"]["trusted"]["packets"], 1)
        self.assertEqual(stats["rules"]["everyone-else"]["packets"], 1)

    def test_packets_for_a_local_server_are_not_held_for_a_process(self):
        self.nginx({"index.html": b"hello"})
        daemon = self.daemon(QUEUE + """rules:
  - name: no-wget
    match: {proto: tcp, app.name: wget}
    verdict: drop
""")
        # The SYN to nginx goes out (OUTPUT, curl's) and comes in (INPUT, for nginx's socket,
        # which no record names): that one is not held, and app.* rules just do not match it.
        for chain in ("OUTPUT", "INPUT"):
            run("iptables", "-A", chain, "-p", "tcp", "--syn", "-j", "NFQUEUE", "--queue-num", "0")
        self.assertTrue(curl(CURL, "http://127.0.0.1/"))
        stats = daemon.stats()
        self.assertEqual(stats["queue"]["packets"], 2)
        self.assertEqual(stats["queue"]["identity_waits"], 1, "only the outgoing SYN waited")
        self.assertEqual(stats["queue"]["identity_unknown"], 0)
        self.assertEqual(stats["queue"]["dropped"], 0)

    def test_without_bpf_rights_the_fallback_finds_the_process(self):
        self.nginx({"index.html": b"hello"})
        copy = self.copy_of_curl()
        daemon = self.daemon(QUEUE + f"""rules:
  - name: the-copy
    match: {{proto: tcp, app.path: "{copy}"}}
    verdict: drop
""", launcher=("capsh", "--drop=cap_bpf,cap_perfmon,cap_sys_admin", "--", "-c",
                       'exec "$0" "$@"'))
        self.queue_all()
        self.assertIn("using sock_diag and /proc instead", daemon.log())
        self.assertTrue(curl(CURL, "http://127.0.0.1/"))
        self.assertFalse(curl(copy, "http://127.0.0.1/"))
        stats = daemon.stats()
        self.assertGreaterEqual(stats["rules"]["the-copy"]["packets"], 1)
        self.assertEqual(stats["queue"]["identity_unknown"], 0)
        self.assertGreaterEqual(stats["queue"]["identity_waits"], 2)
        counted = identity_stats(daemon)
        self.assertFalse(counted["bpf"])
        self.assertGreaterEqual(counted["socket_searches"], 2)
        self.assertGreater(counted["fds_scanned"], 0)  # the cost of having no eBPF, counted

    def test_lookups_past_their_bounds_take_the_fallback(self):
        # No eBPF: each lookup scans /proc/*/fd, newest process first. A process holding
        # thousands of descriptors, started after the senders, makes every scan slow.
        daemon = self.daemon(QUEUE + """  identity: {bpf: false, timeout_ms: 1, max_waiting: 2, fallback: drop}
rules:
  - name: python-allowed
    match: {proto: udp, app.name: python3}
    verdict: accept
""")
        self.queue_all("udp")
        sink = UdpSink(self, "127.0.0.1", 5000)
        daemon.pause()
        code = ("import socket,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "s.sendto(b'x', ('127.0.0.1', 5000)); time.sleep(5)")
        senders = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(20)]
        for sender in senders:
            self.addCleanup(lambda p=sender: (p.kill(), p.wait()))
        hoard = ("import os,resource,sys,time\n"
                 "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
                 "resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))\n"
                 "fds=[os.open('/dev/null', os.O_RDONLY) for _ in range(min(hard, 30000) - 100)]\n"
                 "print('ready', flush=True); time.sleep(30)\n")
        hoarder = subprocess.Popen([sys.executable, "-c", hoard], stdout=subprocess.PIPE,
                                   text=True)
        self.addCleanup(lambda: (hoarder.kill(), hoarder.wait(), hoarder.stdout.close()))
        self.assertEqual(hoarder.stdout.readline().strip(), "ready")
        time.sleep(0.3)  # the datagrams are queued in the kernel
        daemon.send(signal.SIGCONT)
        wait_for(lambda: daemon.stats()["queue"]["packets"] >= 20, timeout=20,
                 what="the 20 datagrams")
        stats = wait_for(lambda: (lambda s: s if s["queue"]["outstanding"] == 0 else None)(
            daemon.stats()), timeout=20, what="every datagram decided")
        queue = stats["queue"]
        self.assertEqual(queue["packets"], 20)
        self.assertEqual(queue["accepted"] + queue["dropped"], 20, "each got exactly one verdict")
        self.assertGreaterEqual(queue["identity_overflows"], 1, "past max_waiting: at once")
        self.assertGreaterEqual(queue["identity_timeouts"], 1, "past timeout_ms: the fallback")
        self.assertEqual(sink.settle(), queue["accepted"])
        self.assertLess(queue["accepted"], 20)



if __name__ == "__main__":
    main()
