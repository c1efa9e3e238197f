"""Every packet gets exactly one verdict across reloads, shutdown, a killed daemon and a full
kernel queue."""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from netns import (NetnsTestCase, UdpSink, kernel_queues, main, run, send_udp, tcp_connects,
                   tcp_listener, wait_for)

ACCEPT_ALL = """broker:
  queues: [{{num: 0, fail_open: true, max_len: 8192}}]
  default_verdict: accept
rules:
  - name: {name}
    match: {{proto: tcp, dport: 23}}
    verdict: drop
"""
BROKEN = "broker:\n  queues: [{num: 0}]\nrules:\n  - name: oops\n    match: {dprot: 23}\n"


class Lifecycle(NetnsTestCase):
    def queue_udp(self, *extra):
        run("iptables", "-A", "OUTPUT", "-p", "udp", "--dport", "5000", "-j", "NFQUEUE",
            "--queue-num", "0", *extra)

    def test_reload_under_steady_traffic_loses_no_verdict(self):
        daemon = self.daemon(ACCEPT_ALL.format(name="v0"), log_level="info")
        self.queue_udp()
        sink = UdpSink(self)
        total = 20000
        sender = threading.Thread(target=send_udp, args=("127.0.0.1", 5000, total, 5000))
        sender.start()
        reloads = 0
        while sender.is_alive():
            reloads += 1
            daemon.reload(ACCEPT_ALL.format(name=f"v{reloads}") if reloads % 2 else BROKEN)
            time.sleep(0.1)
        sender.join()
        self.assertEqual(sink.settle(total), total)
        stats = daemon.stats()
        self.assertEqual(stats["queue"]["packets"], total)
        self.assertEqual(stats["queue"]["accepted"], total)
        self.assertEqual(kernel_queues()[0]["queue_total"], 0)
        self.assertEqual(kernel_queues()[0]["id_sequence"], total)
        log = daemon.log()
        self.assertGreaterEqual(reloads, 10)
        self.assertGreaterEqual(log.count("policy reloaded"), reloads // 2)
        self.assertGreaterEqual(log.count("reload failed, keeping the old policy"), reloads // 2 - 1)
        self.assertIn("unknown key 'dprot' in match (did you mean 'dport'?)", log)

    def test_reload_changes_verdicts_for_the_next_packet(self):
        daemon = self.daemon(ACCEPT_ALL.format(name="first"))
        self.queue_udp()
        sink = UdpSink(self)
        send_udp("127.0.0.1", 5000, 10)
        self.assertEqual(sink.settle(10), 10)
        daemon.reload("rules:\n  - name: drop-udp\n    match: {proto: udp}\n    verdict: drop\n")
        wait_for(lambda: "policy reloaded" in daemon.log(), what="reload")
        send_udp("127.0.0.1", 5000, 10)
        self.assertEqual(sink.settle(), 10)
        self.assertEqual(daemon.stats()["rules"]["drop-udp"]["packets"], 10)

    def test_saving_a_policy_file_reloads_it_without_a_signal(self):
        daemon = self.daemon(ACCEPT_ALL.format(name="first"))
        self.queue_udp()
        sink = UdpSink(self)
        drop_ins = pathlib.Path(daemon.dir) / "policy.d"

        def save(name, text):  # as editors and packages do: a new file renamed into place
            drop_ins.mkdir(exist_ok=True)
            (drop_ins / (name + ".tmp")).write_text(text)
            os.replace(drop_ins / (name + ".tmp"), drop_ins / name)

        def reloads():
            return daemon.log().count("policy reloaded")

        wait_for(lambda: "watching" in daemon.log(), what="the watcher")
        save("50-drop.yaml", "rules:\n  - name: drop-udp\n    match: {proto: udp}\n"
                             "    verdict: drop\n")
        wait_for(lambda: reloads() == 1, what="a reload on the new drop-in")
        send_udp("127.0.0.1", 5000, 10)
        self.assertEqual(sink.settle(), 0)
        # A broken drop-in: the old policy stays, and the problem is logged.
        save("60-broken.yaml", "rules:\n  - name: oops\n    match: {dprot: 1}\n")
        wait_for(lambda: "reload failed, keeping the old policy" in daemon.log(),
                 what="the rejected reload")
        send_udp("127.0.0.1", 5000, 10)
        self.assertEqual(sink.settle(), 0)
        (drop_ins / "60-broken.yaml").unlink()
        (drop_ins / "50-drop.yaml").unlink()
        wait_for(lambda: reloads() == 2, what="a reload on the removals")
        send_udp("127.0.0.1", 5000, 10)
        self.assertEqual(sink.settle(10), 10)
        # SIGHUP after a save reloads once: the watcher sees those files were already loaded.
        daemon.reload(ACCEPT_ALL.format(name="second"))
        wait_for(lambda: reloads() == 3, what="the SIGHUP reload")
        time.sleep(1)
        self.assertEqual(reloads(), 3, "the same save was not loaded twice")
        self.assertEqual(daemon.stats()["rules"]["second"]["packets"], 0)

    def test_a_rule_with_until_stops_applying_on_time(self):
        daemon = self.daemon("broker:\n  queues: [{num: 0}]\n  default_verdict: accept\n"
                             "rules:\n  - {name: for-a-moment, match: {proto: udp}, verdict: drop, "
                             "until: 3s}\n")
        self.queue_udp()
        sink = UdpSink(self)
        send_udp("127.0.0.1", 5000, 10)
        self.assertEqual(sink.settle(), 0, "the rule applies before its until:")
        wait_for(lambda: "is past its until: left out" in daemon.log(), timeout=10,
                 what="the reload at the rule's until:")
        self.assertIn("a rule's until: has come: reloading", daemon.log())
        send_udp("127.0.0.1", 5000, 10)
        self.assertEqual(sink.settle(10), 10, "and not after it")
        self.assertNotIn("for-a-moment", daemon.stats()["rules"])

    def test_sigterm_with_packets_in_flight_verdicts_every_one(self):
        daemon = self.daemon(ACCEPT_ALL.format(name="r"), log_level="info")
        self.queue_udp("--queue-bypass")
        sink = UdpSink(self)
        total = 6000
        sender = threading.Thread(target=send_udp, args=("127.0.0.1", 5000, total, 3000))
        sender.start()
        wait_for(lambda: sink.count > 1000, what="traffic through the broker")
        self.assertEqual(daemon.stop(signal.SIGTERM), 0)
        self.assertNotIn(0, kernel_queues())  # unbound
        sender.join()
        self.assertEqual(sink.settle(total), total)  # none dropped at the hand-over
        log = daemon.log()
        self.assertIn("queue 0 unbound", log)
        self.assertIn("pktbrokerd stopped", log)

    def test_sigint_stops_cleanly_too(self):
        daemon = self.daemon(ACCEPT_ALL.format(name="r"))
        self.assertEqual(daemon.stop(signal.SIGINT), 0)
        self.assertNotIn(0, kernel_queues())

    def test_kill_9_with_queue_bypass_keeps_traffic_flowing(self):
        daemon = self.daemon(ACCEPT_ALL.format(name="r"))
        self.queue_udp("--queue-bypass")
        run("iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", "23", "--syn", "-j", "NFQUEUE",
            "--queue-num", "0", "--queue-bypass")
        tcp_listener(self, "127.0.0.1", 23)
        self.assertFalse(tcp_connects("127.0.0.1", 23, timeout=0.5))  # the broker drops telnet
        daemon.stop(signal.SIGKILL)
        wait_for(lambda: 0 not in kernel_queues(), what="the kernel to release the queue")
        sink = UdpSink(self)
        send_udp("127.0.0.1", 5000, 200)
        self.assertEqual(sink.settle(200), 200)
        self.assertTrue(tcp_connects("127.0.0.1", 23))  # bypassed: no policy any more

    def test_full_kernel_queue_is_counted_as_overflow(self):
        daemon = self.daemon("""broker:
  queues: [{num: 0, fail_open: false, max_len: 16}]
  default_verdict: accept
""")
        self.queue_udp()
        sink = UdpSink(self)
        daemon.pause()
        send_udp("127.0.0.1", 5000, 200)
        wait_for(lambda: kernel_queues()[0]["queue_total"] == 16, what="a full queue")
        daemon.send(signal.SIGCONT)
        self.assertEqual(sink.settle(16), 16)
        stats = daemon.stats()
        self.assertEqual(stats["queue"]["kernel_queue_dropped"], 184)
        self.assertEqual(stats["queue"]["accepted"], 16)
        self.assertEqual(kernel_queues()[0]["queue_total"], 0)

    def test_fail_open_accepts_what_a_full_queue_cannot_hold(self):
        daemon = self.daemon("""broker:
  queues: [{num: 0, fail_open: true, max_len: 16}]
  default_verdict: drop
""")
        self.queue_udp()
        sink = UdpSink(self)
        daemon.pause()
        send_udp("127.0.0.1", 5000, 200)
        self.assertEqual(sink.settle(184), 184)  # passed by the kernel, never queued
        daemon.send(signal.SIGCONT)
        stats = daemon.stats()
        self.assertEqual(stats["queue"]["dropped"], 16)  # the queued ones got the policy
        self.assertEqual(sink.settle(), 184)

    def test_systemd_hears_ready_reloading_stopping_and_the_watchdog(self):
        # The notify socket systemd would give a Type=notify service, with WatchdogSec=1.
        path = os.path.join(self.scratch(), "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(path)
        notify.settimeout(5)
        self.addCleanup(notify.close)
        daemon = self.daemon(ACCEPT_ALL.format(name="v0"), log_level="info",
                             env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
        # WATCHDOG_PID unset: the pings are for whoever reads the socket, as systemd allows.
        messages = []

        def until(predicate, what):
            deadline = time.monotonic() + 10
            while not any(predicate(m) for m in messages):
                self.assertLess(time.monotonic(), deadline, f"{what}; got {messages}")
                messages.append(notify.recv(4096).decode())

        until(lambda m: m.startswith("READY=1\nSTATUS=serving queue 0 with 1 rules"), "READY")
        until(lambda m: m == "WATCHDOG=1", "a watchdog ping")
        pings = sum(m == "WATCHDOG=1" for m in messages)
        until(lambda m: m == "WATCHDOG=1" and sum(x == "WATCHDOG=1" for x in messages) > pings,
              "a second ping")  # at half of WatchdogSec, from the event loop
        messages.clear()
        daemon.reload(ACCEPT_ALL.format(name="v1"))
        until(lambda m: m.startswith("RELOADING=1\nMONOTONIC_USEC="), "RELOADING")
        until(lambda m: m.startswith("READY=1\nSTATUS=serving 1 rules"), "READY after reload")
        reloading = next(i for i, m in enumerate(messages) if m.startswith("RELOADING=1"))
        ready = next(i for i, m in enumerate(messages) if m.startswith("READY=1"))
        self.assertLess(reloading, ready)
        messages.clear()
        daemon.reload(BROKEN)  # a rejected policy: systemd is told it is ready again anyway
        until(lambda m: m.startswith("READY=1\nSTATUS=reload failed"), "READY after a failure")
        daemon.send(signal.SIGTERM)
        until(lambda m: m == "STOPPING=1", "STOPPING")
        self.assertEqual(daemon.process.wait(timeout=10), 0)

    def test_a_second_daemon_cannot_steal_the_queue(self):
        self.daemon(ACCEPT_ALL.format(name="r"))
        from netns import PKTBROKERD
        import os
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(ACCEPT_ALL.format(name="r"))
        try:
            second = run(PKTBROKERD, "--config", f.name, "--foreground", check=False)
        finally:
            os.unlink(f.name)
        self.assertEqual(second.returncode, 1)
        self.assertIn("queue 0: already bound by another process", second.stderr)
        self.assertNotIn("CAP_NET_ADMIN", second.stderr)

    def test_a_client_socket_that_cannot_be_bound_is_an_error_not_a_crash(self):
        from netns import PKTBROKERD
        with tempfile.TemporaryDirectory() as d:
            config = os.path.join(d, "policy.yaml")
            with open(config, "w") as f:
                f.write("broker: {queues: [{num: 0}]}\nsocket: {path: /proc/self/broker.sock}\n")
            result = run(PKTBROKERD, "--config", config, "--foreground", check=False)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("bind /proc/self/broker.sock", result.stderr)

    def test_a_detached_daemon_keeps_its_relative_config_and_plugin_paths(self):
        # Detaching moves it to /: the policy named relative to where it was started must still
        # load its plugin (relative to the policy) and reload on SIGHUP.
        from netns import PLUGINS, PKTBROKERD
        d = tempfile.mkdtemp(prefix="pktbroker-detach-")
        self.addCleanup(shutil.rmtree, d, True)
        shutil.copy(os.path.join(PLUGINS, "dns.so"), os.path.join(d, "my-dns.so"))
        name = f"policy-{os.getpid()}.yaml"
        policy = """broker: {{queues: [{{num: 0}}], default_verdict: accept}}
socket: {{path: {socket}}}
plugins: [{{name: dns, path: my-dns.so}}]
rules: [{{name: r, match: {{proto: udp, dport: 5000}}, verdict: {verdict}}}]
"""
        with open(os.path.join(d, name), "w") as f:
            f.write(policy.format(socket=os.path.join(d, "broker.sock"), verdict="drop"))
        env = dict(os.environ)
        env.pop("PKTBROKER_PLUGIN_PATH", None)
        subprocess.run([PKTBROKERD, "--config", name], cwd=d, env=env, check=True)
        wait_for(lambda: 0 in kernel_queues(), what="the detached daemon to bind its queue")
        pid = next(int(p.name) for p in pathlib.Path("/proc").iterdir() if p.name.isdigit() and
                   name.encode() in (p / "cmdline").read_bytes())
        self.addCleanup(lambda: os.kill(pid, signal.SIGKILL) if os.path.exists(f"/proc/{pid}")
                        else None)
        self.queue_udp()
        sink = UdpSink(self, "127.0.0.1", 5000)
        send_udp("127.0.0.1", 5000, 3)
        self.assertEqual(sink.settle(), 0)
        with open(os.path.join(d, name), "w") as f:
            f.write(policy.format(socket=os.path.join(d, "broker.sock"), verdict="accept"))
        os.kill(pid, signal.SIGHUP)

        def accepted():
            send_udp("127.0.0.1", 5000, 1)
            time.sleep(0.2)
            return sink.count > 0
        wait_for(accepted, what="the reloaded policy to accept")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: 0 not in kernel_queues(), what="the daemon to unbind and exit")


if __name__ == "__main__":
    main()
