"""Soak: steady traffic through the broker while verdict clients crash, stall and reconnect at
random, the policy is reloaded every 100 ms and a plugin holds packets. Invariants at the end:
every packet the kernel queued got exactly one verdict (received == verdicts, nothing left in
the kernel queue or the broker), every packet the policy accepts arrived and none it drops did,
and the broker's memory and descriptors did not grow. SOAK_MINUTES sets the length (default 1;
scripts/soak --minutes N runs it longer) and the curve of RSS and descriptors is printed."""

import os
import random
import signal
import socket
import threading
import time

from netns import (ClientProcess, NetnsTestCase, UdpSink, kernel_queues, main, run, wait_for,
                   without_asan_quarantine)

HOLD_ALL = os.environ.get("HOLD_ALL_PLUGIN", "")
POLICY = f"""broker:
  queues: [{{num: 0, max_len: 8192}}]
  default_verdict: accept
plugins:
  - {{name: hold_all, path: {HOLD_ALL}, config: {{hold_ms: "{{hold}}"}}}}
rules:
  - {{name: policy-drops, match: {{proto: udp, dport: 7999}}, verdict: drop}}
  - {{name: held, match: {{proto: udp, dport: 9000}}, verdict: {{inspect: [hold_all], fallback: accept}}}}
"""
CLIENT_PORT, DROP_PORT, HOLD_PORT = 7000, 7999, 9000
RATE = 1500  # datagrams per second, spread over the three ports


def resources(pid):
    with open(f"/proc/{pid}/status") as f:
        rss_kib = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return rss_kib, len(os.listdir(f"/proc/{pid}/fd"))


class Soak(NetnsTestCase):
    def setUp(self):
        super().setUp()
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")

    def traffic(self, seconds, sent):
        """Sends at RATE for `seconds`; the hold port gets a new flow (source port) each time."""
        plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            delay = start + i / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            port = (CLIENT_PORT, DROP_PORT, HOLD_PORT)[i % 3]
            if port == HOLD_PORT:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fresh:
                    fresh.sendto(b"h" * 64, ("127.0.0.1", port))
            else:
                plain.sendto(b"x" * 64, ("127.0.0.1", port))
            sent[port] += 1
            i += 1
        plain.close()

    def test_invariants_hold_under_chaos(self):
        minutes = float(os.environ.get("SOAK_MINUTES", "1"))
        seconds = minutes * 60
        without_asan_quarantine(self)
        daemon = self.daemon(POLICY.replace("{hold}", "50"), log_level="info",
                             socket_options="max_timeout_ms: 60000")
        baseline_fds = resources(daemon.process.pid)[1]
        sinks = {port: UdpSink(self, "127.0.0.1", port)
                 for port in (CLIENT_PORT, DROP_PORT, HOLD_PORT)}
        sent = {CLIENT_PORT: 0, DROP_PORT: 0, HOLD_PORT: 0}
        sender = threading.Thread(target=self.traffic, args=(seconds, sent))

        def new_client(i):
            client = ClientProcess(self, daemon, name=f"worker{i}",
                                   selector=f"{{dport: {CLIENT_PORT}}}", clash="balance",
                                   timeout_ms=200, fallback="accept", quiet=1)
            client.wait_line("ready")
            return client

        rng = random.Random(int(os.environ.get("SOAK_SEED", "1")))
        clients = [new_client(i) for i in range(4)]
        counter = len(clients)
        curve, events = [], {"crash": 0, "stall": 0, "reconnect": 0, "reload": 0}
        sender.start()
        start = time.monotonic()
        next_sample = start
        policies = [POLICY.replace("{hold}", "50"), POLICY.replace("{hold}", "80")]
        while sender.is_alive():
            time.sleep(0.1)
            daemon.reload(policies[events["reload"] % 2])  # SIGHUP every 100 ms
            events["reload"] += 1
            roll = rng.random()
            if roll < 0.03:  # a client crashes with packets in hand
                victim = clients.pop(rng.randrange(len(clients)))
                victim.process.send_signal(signal.SIGKILL)
                victim.process.wait()
                events["crash"] += 1
            elif roll < 0.06:  # a client stalls past its timeout, then resumes
                victim = rng.choice(clients)
                victim.process.send_signal(signal.SIGSTOP)
                threading.Timer(0.4, victim.process.send_signal, (signal.SIGCONT,)).start()
                events["stall"] += 1
            if len(clients) < 4 and rng.random() < 0.5:
                clients.append(new_client(counter))
                counter += 1
                events["reconnect"] += 1
            if time.monotonic() >= next_sample:
                curve.append((round(time.monotonic() - start), *resources(daemon.process.pid)))
                next_sample += max(5.0, seconds / 12)
        sender.join()
        self.assertGreaterEqual(time.monotonic() - start, seconds - 1, "the sender stopped early")
        time.sleep(0.5)
        for client in clients:  # SIGCONT any still stopped, then let them go
            client.process.send_signal(signal.SIGCONT)
        wait_for(lambda: kernel_queues().get(0, {}).get("queue_total", 0) == 0, timeout=15,
                 what="an empty kernel queue")
        arrived = {port: sink.settle(quiet=1.0) for port, sink in sinks.items()}
        block = daemon.stats()
        stats, flows = block["queue"], block["flows"]
        for client in clients:
            client.kill()
        wait_for(lambda: resources(daemon.process.pid)[1] == baseline_fds, timeout=10,
                 what="the broker's descriptors back to their baseline")
        curve.append((round(time.monotonic() - start), *resources(daemon.process.pid)))

        print(f"\nsoak: {minutes:g} min, sent {sent}, arrived {arrived}, events {events}")
        print("soak: t_s rss_kib fds: " + ", ".join(f"{t} {r} {f}" for t, r, f in curve))
        verdicts = stats["accepted"] + stats["dropped"] + stats["repeated"]
        print(f"soak: kernel ids received {stats['packets']}, verdicts {verdicts}, "
              f"timeouts {stats['timeouts']}, disconnect fallbacks "
              f"{stats['disconnect_fallbacks']}, held by the plugin {flows['held']}")
        self.assertEqual(stats["packets"], sum(sent.values()))
        self.assertEqual(verdicts, stats["packets"], "a packet got no verdict, or two")
        # The split as well as the sum: a lost verdict and a doubled one would cancel out.
        self.assertEqual(stats["dropped"], sent[DROP_PORT])
        self.assertEqual(stats["accepted"], sent[CLIENT_PORT] + sent[HOLD_PORT])
        # The chaos happened.
        self.assertGreater(min(events.values()), 0, events)
        self.assertGreater(stats["disconnect_fallbacks"], 0)
        self.assertGreater(flows["held"], 0)
        self.assertNotIn("reload failed", daemon.log())
        self.assertEqual(stats["outstanding"], 0)
        self.assertEqual(stats["netlink_errors"], 0)
        self.assertEqual(arrived[CLIENT_PORT], sent[CLIENT_PORT])
        self.assertEqual(arrived[HOLD_PORT], sent[HOLD_PORT])
        self.assertEqual(arrived[DROP_PORT], 0)
        # Flat: after the first third of the run, RSS grows by under 8 MiB. Under ASan the
        # allocator warms up for about half a minute (growth slowing from ~1.5 MiB to ~0.3 MiB
        # per 5 s), so a baseline at 5 s measured that warm-up, not a leak; a leak keeps growing
        # through the last two thirds.
        rss = [r for t, r, _ in curve if t >= seconds / 3]
        self.assertLess(max(rss) - rss[0], 8 * 1024, f"RSS grew: {curve}")


if __name__ == "__main__":
    main()
