"""Operations: the Prometheus endpoint scraped with curl after live traffic and checked with
promtool, against what pktbrokerctl stats says; the EVE JSON event log read after live traffic,
rotated, and held to its rate limit."""

import json
import os
import shutil
import signal
import socket
import time

from netns import (PKTBROKERD, ClientProcess, NetnsTestCase, UdpSink, main, run, send_udp,
                   wait_for)

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

    def test_idle_connections_do_not_hold_the_endpoint(self):
        self.daemon(POLICY + METRICS)
        idle = []
        for _ in range(3):  # more than the endpoint's threads, each sending half a request
            connection = socket.create_connection(("127.0.0.1", 9410))
            connection.sendall(b"GET /metr")
            idle.append(connection)
            self.addCleanup(connection.close)
        # The bound only stops a hang (an idle connection used to hold a one-thread endpoint
        # for 30 s); the scrape itself takes milliseconds.
        result = run("curl", "-sf", "--max-time", "20", "http://127.0.0.1:9410/metrics")
        self.assertIn("pktbroker_queue_packets_total", result.stdout)

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

    # The event log ---------------------------------------------------------------------------

    def events_policy(self, path, extra=""):
        return POLICY.replace("rules:\n", """rules:
  - {name: no-blocked-name, match: {dns.qname: blocked.test}, verdict: drop}
""") + f"events: {{file: {path}{extra}}}\n"

    def events(self, path):
        with open(path) as f:
            return [json.loads(line) for line in f]  # every line is one JSON object

    def test_events_after_live_traffic_are_eve_json_with_the_expected_fields(self):
        path = os.path.join(self.scratch(), "eve.json")
        daemon = self.daemon(self.events_policy(path, ", types: [drop, accept, session, reload]"))
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")
        client = ClientProcess(self, daemon, name="watcher", selector="{dport: 7001}")
        client.wait_line("ready")
        UdpSink(self, "127.0.0.1", 7000)
        accepted = UdpSink(self, "127.0.0.1", 7002)
        send_udp("127.0.0.1", 7000, 3)
        send_udp("127.0.0.1", 7002, 2)
        self.assertEqual(accepted.settle(2), 2)
        run("dig", "@127.0.0.1", "blocked.test", "+tries=1", "+time=1", check=False)
        daemon.send(signal.SIGHUP)
        wait_for(lambda: "policy reloaded" in daemon.log(), what="the reload")
        client.kill()
        wait_for(lambda: any(e["event_type"] == "session" and
                             e["pktbroker"]["session"]["action"] == "close"
                             for e in self.events(path)), what="the session's close event")
        events = self.events(path)
        for event in events:
            self.assertRegex(event["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000$")
        drops = [e for e in events if e["event_type"] == "drop"]
        to_7000 = [e for e in drops if e.get("dest_port") == 7000]
        self.assertEqual(len(to_7000), 3)
        for event in to_7000:
            self.assertEqual((event["src_ip"], event["dest_ip"], event["proto"]),
                             ("127.0.0.1", "127.0.0.1", "UDP"))
            self.assertIsInstance(event["src_port"], int)
            self.assertIsInstance(event["flow_id"], int)
            self.assertEqual(event["pktbroker"]["queue"], 0)
            self.assertEqual(event["pktbroker"]["decided_by"], "rule")
            self.assertEqual(event["pktbroker"]["rule"], "no-7000")
        dns = [e for e in drops if e.get("dns", {}).get("rrname") == "blocked.test"]
        self.assertGreaterEqual(len(dns), 1)  # dig may try again
        self.assertEqual(dns[0]["pktbroker"]["rule"], "no-blocked-name")
        self.assertEqual(dns[0]["dest_port"], 53)
        accepts = [e for e in events if e["event_type"] == "accept"]
        self.assertEqual([e["dest_port"] for e in accepts], [7002, 7002])
        self.assertEqual({e["pktbroker"]["decided_by"] for e in accepts}, {"default"})
        sessions = [e["pktbroker"]["session"] for e in events if e["event_type"] == "session"]
        self.assertIn(("open", "watcher"), [(s["action"], s.get("name")) for s in sessions])
        reloads = [e["pktbroker"]["reload"] for e in events if e["event_type"] == "reload"]
        self.assertEqual(reloads, [{"ok": True, "rules": 2}])
        stats = json.loads(run(CTL, f"--socket={daemon.socket}", "stats", "--json").stdout)
        self.assertEqual(stats["events"]["suppressed"] + stats["events"]["lost"], 0)

    def test_a_rotated_event_log_is_reopened_on_sighup(self):
        path = os.path.join(self.scratch(), "eve.json")
        daemon = self.daemon(self.events_policy(path))
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")
        UdpSink(self, "127.0.0.1", 7000)
        send_udp("127.0.0.1", 7000, 2)
        wait_for(lambda: len(self.events(path)) == 2, what="two drops logged")
        os.rename(path, path + ".1")  # logrotate's move
        daemon.send(signal.SIGHUP)
        wait_for(lambda: "events: reopened" in daemon.log(), what="the reopen")
        send_udp("127.0.0.1", 7000, 3)
        wait_for(lambda: os.path.exists(path) and
                 sum(e["event_type"] == "drop" for e in self.events(path)) == 3,
                 what="three drops in the new file")
        self.assertEqual(len(self.events(path + ".1")), 2)

    def test_the_rate_limit_holds_under_a_flood_and_counts_the_rest(self):
        path = os.path.join(self.scratch(), "eve.json")
        daemon = self.daemon(self.events_policy(path, ", types: [drop], rate_limit: 20"))
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")
        UdpSink(self, "127.0.0.1", 7000)
        started = time.monotonic()
        send_udp("127.0.0.1", 7000, 2000)
        wait_for(lambda: daemon.stats()["queue"]["dropped"] == 2000, what="every drop")
        elapsed = time.monotonic() - started
        stats = json.loads(run(CTL, f"--socket={daemon.socket}", "stats", "--json").stdout)
        written, suppressed = stats["events"]["written"], stats["events"]["suppressed"]
        # At most the burst (20) and 20 a second of what the flood took; every drop accounted.
        self.assertLessEqual(written, 20 + 20 * elapsed + 1)
        self.assertEqual(written + suppressed + stats["events"]["lost"], 2000)
        wait_for(lambda: len(self.events(path)) == written, what="the written events on disk")


if __name__ == "__main__":
    main()
