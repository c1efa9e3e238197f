"""pktbrokerctl against a live broker: status, sessions, stats, reload, JSON and exit codes."""

import json
import os

from netns import ClientProcess, NetnsTestCase, UdpSink, main, run, send_udp

CTL = os.environ.get("PKTBROKERCTL", "")
POLICY = "broker:\n  queues: [{num: 0}]\n  default_verdict: accept\nrules:\n  - {name: no-discard, match: {dport: 9}, verdict: drop}\n"


class Control(NetnsTestCase):
    def ctl(self, daemon, *args, user=None):
        argv = [CTL, f"--socket={daemon.socket}", *args]
        if user:
            argv = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *argv]
        return run(*argv, check=False)

    def test_status_stats_and_sessions(self):
        daemon = self.daemon(POLICY)
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")
        ClientProcess(self, daemon, name="worker", selector="{mark: 5}").wait_line("ready")
        sink = UdpSink(self, "127.0.0.1", 7000)
        send_udp("127.0.0.1", 7000, 12)
        send_udp("127.0.0.1", 9, 3)
        self.assertEqual(sink.settle(12), 12)

        status = self.ctl(daemon, "status")
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertRegex(status.stdout, r"QUEUE\s+PACKETS\s+ACCEPTED\s+DROPPED")
        self.assertRegex(status.stdout, r"\n0\s+15\s+12\s+3\s")

        stats = json.loads(self.ctl(daemon, "stats", "--json").stdout)
        self.assertEqual(stats["queue 0"]["packets"], 15)
        self.assertEqual(stats["rule no-discard"]["packets"], 3)
        self.assertEqual(stats["clients"]["refused"], 0)

        sessions = json.loads(self.ctl(daemon, "sessions", "--json").stdout)
        names = {s["name"]: s for s in sessions}
        self.assertIn("worker", names)
        self.assertEqual(names["worker"]["subscriptions"], 1)
        self.assertEqual(names["pktbrokerctl"]["roles"], "manage")
        table = self.ctl(daemon, "sessions").stdout
        self.assertRegex(table, r"worker\s+\d+\s+0\s+observe,verdict")

    def test_rules_lists_the_effective_order_with_origins_and_hits(self):
        daemon = self.daemon(POLICY, drop_ins={
            "10-early.yaml": "rules:\n  - name: echo-first\n    priority: -10\n"
                             "    match: {proto: udp, dport: 7}\n    verdict: drop\n",
            "20-late.yaml": "rules:\n  - {name: tail, match: {dport: 7000}, verdict: accept}\n"})
        run("iptables", "-A", "OUTPUT", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "0")
        sink = UdpSink(self, "127.0.0.1", 7000)
        send_udp("127.0.0.1", 7000, 4)
        send_udp("127.0.0.1", 7, 2)
        self.assertEqual(sink.settle(4), 4)
        listed = self.ctl(daemon, "rules", "--json")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        rules = json.loads(listed.stdout)
        self.assertEqual([r["name"] for r in rules], ["echo-first", "no-discard", "tail"])
        first, main_rule, tail = rules
        self.assertEqual(first["origin"], os.path.join(daemon.dir, "policy.d", "10-early.yaml") + ":2")
        self.assertEqual((first["priority"], first["packets"]), (-10, 2))
        self.assertEqual(first["match"], "{proto: udp, dport: 7}")
        self.assertEqual(first["verdict"], "drop")
        self.assertEqual(main_rule["origin"], daemon.config + ":5")
        self.assertEqual((tail["packets"], tail["bytes"]), (4, 4 * 92))
        table = self.ctl(daemon, "rules").stdout
        self.assertRegex(table, r"\n1\s+echo-first\s+2\s+\d+\s+-10\s+\S+10-early.yaml:2\n")
        self.assertIn("{dport: 7000} -> accept", table)

    def test_reload_reports_success_and_rejection(self):
        daemon = self.daemon(POLICY)
        ok = self.ctl(daemon, "reload")
        self.assertEqual((ok.returncode, ok.stdout), (0, "policy reloaded\n"))
        daemon.write_policy("rules:\n  - {name: x, match: {dprot: 1}, verdict: drop}\n")
        bad = self.ctl(daemon, "reload", "--json")
        self.assertEqual(bad.returncode, 1)
        answer = json.loads(bad.stdout)
        self.assertFalse(answer["ok"])
        self.assertIn("policy.yaml:2:23: error: unknown key 'dprot' in match (did you mean 'dport'?)",
                      answer["problems"])

    def test_plugin_commands_reach_the_plugin_and_are_refused_clearly(self):
        daemon = self.daemon(POLICY + "plugins:\n  - {name: resend, config: {interface: lo}}\n"
                             "clients:\n  - {user: nobody, roles: [observe]}\n")
        os.chmod(daemon.socket, 0o666)
        os.chmod(daemon.dir, 0o755)
        status = self.ctl(daemon, "plugin", "resend", "status", "--json")
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertEqual(json.loads(status.stdout)["interface"], "lo")
        missing = self.ctl(daemon, "plugin", "nosuch", "status")
        self.assertEqual(missing.returncode, 1)
        self.assertIn("no plugin named 'nosuch' is loaded", missing.stderr)
        refused = self.ctl(daemon, "plugin", "resend", "wakeup", "--iface", "lo", "--addr", "127.0.0.1",
                           user="nobody")
        self.assertEqual(refused.returncode, 1)
        self.assertIn("none of the requested roles is granted", refused.stderr)
        injected = self.ctl(daemon, "plugin", "resend", "status\nstats fake=1")
        self.assertEqual(injected.returncode, 1)
        self.assertIn("printable ASCII", injected.stderr)
        self.assertNotIn("fake=1", daemon.log())
        too_many = self.ctl(daemon, "plugin", "resend", *["x"] * 17)
        self.assertEqual(too_many.returncode, 2)
        # The plugin's own refusal, and what stayed unchanged: lo is still down.
        unknown = self.ctl(daemon, "plugin", "resend", "frobnicate")
        self.assertEqual(unknown.returncode, 1)
        self.assertIn("unknown command 'frobnicate'", unknown.stderr)
        after = json.loads(self.ctl(daemon, "plugin", "resend", "status", "--json").stdout)
        self.assertEqual(after["ipv4"], {"up": False, "address": None})
        self.assertEqual(after["counters"]["bad_commands"], 1)

    def test_exit_codes(self):
        daemon = self.daemon(POLICY + "clients:\n  - {user: nobody, roles: [observe]}\n")
        os.chmod(daemon.socket, 0o666)
        os.chmod(daemon.dir, 0o755)
        refused = self.ctl(daemon, "stats", user="nobody")
        self.assertEqual(refused.returncode, 1)
        self.assertIn("none of the requested roles is granted", refused.stderr)
        self.assertEqual(self.ctl(daemon, "frobnicate").returncode, 2)
        gone = run(CTL, "--socket=/nonexistent/broker.sock", "status", check=False)
        self.assertEqual(gone.returncode, 3)
        self.assertIn("cannot reach the broker at /nonexistent/broker.sock", gone.stderr)


if __name__ == "__main__":
    main()
