"""Operations: the Prometheus endpoint scraped with curl after live traffic and checked with
promtool, against what pktbrokerctl stats says."""

import json
import os
import shutil
import socket

from netns import PKTBROKERD, ClientProcess, NetnsTestCase, UdpSink, main, run, send_udp

CTL = os.environ.get("PKTBROKERCTL", "")
POLICY = """broker:
  queues: [{num: 0}]
  default_verdict: accept
plugins: [{name: dns}]
rules:
  - {name: no-7000, match: {proto: udp, dport: 7000}, verdict: drop}
"""
METRICS = "metrics: {listen: '127.0.0.1:9410'}\n"


def scrape(address="127.0.0.1:9410"):
    result = run("curl", "-sf", f"http://{address}/metrics")
    return result.stdout


def samples(text):
    """{'name{labels}': value} of every sample line."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


class Telemetry(NetnsTestCase):
    def test_metrics_show_what_stats_shows_and_pass_promtool(self):
        daemon = self.daemon(POLICY + METRICS)
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")
        ClientProcess(self, daemon, name="watcher", selector="{dport: 7001}").wait_line("ready")
        UdpSink(self, "127.0.0.1", 7000)
        accepted = UdpSink(self, "127.0.0.1", 7002)
        send_udp("127.0.0.1", 7000, 5)
        send_udp("127.0.0.1", 7002, 3)
        self.assertEqual(accepted.settle(3), 3)
        text = scrape()
        values = samples(text)
        stats = json.loads(run(CTL, f"--socket={daemon.socket}", "stats", "--json").stdout)
        queue = stats["queue 0"]
        self.assertEqual(values['pktbroker_queue_packets_total{queue="0"}'], queue["packets"])
        self.assertEqual(values['pktbroker_queue_bytes_total{queue="0"}'], queue["bytes"])
        self.assertEqual(values['pktbroker_queue_verdicts_total{queue="0",verdict="drop"}'], 5)
        self.assertEqual(values['pktbroker_queue_verdicts_total{queue="0",verdict="accept"}'],
                         queue["accepted"])
        self.assertEqual(values['pktbroker_rule_packets_total{queue="0",rule="no-7000"}'], 5)
        self.assertEqual(values['pktbroker_verdict_latency_seconds_count{queue="0"}'],
                         queue["packets"])
        self.assertEqual(values['pktbroker_verdict_latency_seconds_bucket{queue="0",le="+Inf"}'],
                         queue["packets"])
        watcher = [key for key in values if key.startswith("pktbroker_session_subscriptions{")
                   and 'name="watcher"' in key]
        self.assertEqual(len(watcher), 1)
        self.assertGreaterEqual(values["pktbroker_sessions"], 1)
        self.assertTrue(any(key.startswith('pktbroker_plugin_events_total{plugin="dns"')
                            for key in values), "the dns plugin's counters")
        # Every counter stats shows for the queue is there (a few under a labelled family).
        renamed = {"kernel_queue_total": "kernel_waiting_packets",
                   "kernel_queue_dropped": "kernel_dropped_packets_total"}
        for name in queue:
            if name not in ("accepted", "dropped", "repeated", "netlink_errors"):
                self.assertIn(f"\npktbroker_queue_{renamed.get(name, name)}", text, name)
        if shutil.which("promtool"):
            check = run("promtool", "check", "metrics", input=text, check=False)
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_no_endpoint_unless_the_policy_names_one(self):
        daemon = self.daemon(POLICY)
        listening = run("ss", "-ltnpH").stdout
        self.assertNotIn(f"pid={daemon.process.pid},", listening)

    def test_an_endpoint_that_cannot_listen_stops_the_start_with_the_reason(self):
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 9410))
        holder.listen()
        self.addCleanup(holder.close)
        config = os.path.join(self.scratch(), "policy.yaml")
        with open(config, "w") as f:
            f.write(POLICY + METRICS + f"socket: {{path: {self.scratch()}/broker.sock}}\n")
        result = run(PKTBROKERD, "--config", config, "--foreground", check=False,
                     env=dict(os.environ, PKTBROKER_PLUGIN_PATH=os.environ.get("PLUGINS", "")))
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("metrics: cannot listen on 127.0.0.1:9410", result.stderr)

    def test_a_bad_listen_address_is_a_policy_error(self):
        config = os.path.join(self.scratch(), "policy.yaml")
        for listen in ("localhost:9410", "127.0.0.1", "127.0.0.1:0", "[::1]:99999", "::1:9410"):
            with open(config, "w") as f:
                f.write(f"metrics: {{listen: '{listen}'}}\n")
            result = run(PKTBROKERD, "--check", "--config", config, check=False)
            self.assertEqual(result.returncode, 1, listen)
            self.assertIn("metrics listen must be ADDRESS:PORT", result.stderr, listen)


if __name__ == "__main__":
    main()
