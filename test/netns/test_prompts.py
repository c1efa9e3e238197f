"""The ask verdict: a new connection's first packet waits for a person's answer. Real programs
(curl, python3) run as two unprivileged users against nginx in a namespace; each user answers in
pktbroker-prompt-tty under tmux (send-keys, capture-pane) or with pktbrokerctl."""

import json
import os
import shutil
import subprocess
import sys
import time

from netns import NetnsTestCase, main, run, wait_for

CTL = os.environ.get("PKTBROKERCTL", "")
PROMPT_TTY = os.path.join(os.environ.get("EXAMPLES", ""), "pktbroker-prompt-tty")
CURL = shutil.which("curl")
ALICE, BOB = 4001, 4002  # no passwd entries needed: setpriv takes numbers


def as_uid(uid, *argv):
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


def policy(timeout_ms=20000, fallback="drop", extra_rules=""):
    return f"""broker:
  queues: [{{num: 0}}]
  default_verdict: accept
clients:
  - {{uid: {ALICE}, roles: [prompt]}}
  - {{uid: {BOB}, roles: [prompt]}}
rules:
{extra_rules}  - name: ask-web
    match: {{proto: tcp, dport: [80, 81]}}
    verdict: {{ask: true, timeout_ms: {timeout_ms}, fallback: {fallback}}}
  - name: ask-many
    match: {{proto: tcp, dport: 9000-9099}}
    verdict: {{ask: true, timeout_ms: 20000, fallback: drop}}
"""


class Tmux:
    """A program in a detached tmux session of its own server, 200x50; killed after the test."""
    count = 0

    def __init__(self, test, argv):
        Tmux.count += 1
        self.server = f"pktb-{os.getpid()}-{Tmux.count}"
        self.env = dict(os.environ, TERM="xterm")
        # The pane stays after the program ends, with its exit status, for the failure output.
        command = " ".join(f"'{a}'" for a in argv) + "; echo EXITED $?; sleep 600"
        subprocess.run(["tmux", "-L", self.server, "new-session", "-d", "-x", "200", "-y", "50",
                        command], check=True, env=self.env)
        test.addCleanup(self.close, test)

    def screen(self):
        return subprocess.run(["tmux", "-L", self.server, "capture-pane", "-p", "-S", "-500"],
                              capture_output=True, text=True, env=self.env).stdout

    def keys(self, *keys):
        time.sleep(0.6)  # the prompt client ignores keys typed within 0.5 s of a new question
        subprocess.run(["tmux", "-L", self.server, "send-keys", *keys], check=True, env=self.env)

    def wait(self, text, count=1, timeout=10):
        wait_for(lambda: self.screen().count(text) >= count, timeout=timeout,
                 what=f"{text!r} (x{count}) on the screen:\n{self.screen()}")

    def close(self, test):
        if test._outcome is None or not test._outcome.success:
            sys.stderr.write(f"--- tmux {self.server} ---\n{self.screen()}\n")
        subprocess.run(["tmux", "-L", self.server, "kill-server"], check=False,
                       capture_output=True, env=self.env)


class Prompts(NetnsTestCase):
    def setUp(self):
        super().setUp()
        self.nginx({"index.html": b"hello"})
        run("iptables", "-A", "OUTPUT", "-p", "tcp", "--syn", "-j", "NFQUEUE", "--queue-num", "0")

    def start(self, text):
        daemon = self.daemon(text)
        os.chmod(daemon.socket, 0o666)
        os.chmod(daemon.dir, 0o755)
        return daemon

    def prompt_tty(self, daemon, uid, *args):
        tty = Tmux(self, as_uid(uid, PROMPT_TTY, *args, daemon.socket))
        tty.wait("waiting for prompts")
        return tty

    def curl(self, uid, port=80, max_time=30):
        """curl as `uid`, in the background; .wait() gives its exit status (0 fetched, 7
        refused, 28 timed out)."""
        curl = subprocess.Popen(as_uid(uid, CURL, "-s", "-o", "/dev/null", "--max-time",
                                       str(max_time), f"http://127.0.0.1:{port}/"))
        self.addCleanup(lambda: (curl.kill(), curl.wait()))
        return curl

    def ctl(self, daemon, *args, uid=None, check=True):
        argv = [CTL, "-s", daemon.socket, *args]
        done = subprocess.run(as_uid(uid, *argv) if uid is not None else argv,
                              capture_output=True, text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"pktbrokerctl {args}: {done.returncode} {done.stderr}")
        return done

    def pending(self, daemon, uid=None):
        return json.loads(self.ctl(daemon, "--json", "pending", uid=uid).stdout)

    def wait_pending(self, daemon, count, uid=None):
        wait_for(lambda: len(self.pending(daemon, uid)) == count,
                 what=f"{count} pending prompt(s): {self.pending(daemon, uid)}")
        return self.pending(daemon, uid)

    def stats(self, daemon):
        return json.loads(self.ctl(daemon, "--json", "stats").stdout)

    def answer_file(self, daemon, uid):
        path = os.path.join(daemon.dir, "policy.d", f"answers-uid{uid}.yaml")
        with open(path) as f:
            return f.read()

    def test_allow_once_then_deny_always_under_tmux(self):
        daemon = self.start(policy())
        tty = self.prompt_tty(daemon, ALICE)
        first = self.curl(ALICE)
        tty.wait("-> tcp 127.0.0.1:80")
        screen = tty.screen()
        self.assertIn(f"curl ({CURL}, pid {first.pid}", screen.replace("\n", " "))
        self.assertIn(f"uid {ALICE}) -> tcp 127.0.0.1:80", screen)
        self.assertIn("then drop (rule ask-web)", screen)
        tty.keys("a")
        self.assertEqual(first.wait(timeout=10), 0, "allowed once: curl fetched the page")
        tty.wait("answered: allow once: released 1")
        self.assertEqual(self.pending(daemon), [])

        # Once means once: the next connection is asked again. Denied once, its SYNs sent
        # again get the same answer without a new question.
        denied = self.curl(ALICE, max_time=4)
        tty.wait("-> tcp 127.0.0.1:80", count=2)
        tty.keys("d")
        tty.wait("answered: deny once: released 1")
        self.assertEqual(denied.wait(timeout=10), 28)
        self.assertEqual(self.stats(daemon)["prompts"]["prompts"], 2)
        self.assertGreaterEqual(self.stats(daemon)["queue 0"]["answer_rules"], 1)

        # Denied for good.
        second = self.curl(ALICE, max_time=3)
        tty.wait("-> tcp 127.0.0.1:80", count=3)
        tty.keys("D")
        tty.wait("answered: deny always: released 1; rule ans-u4001-1")
        self.assertEqual(second.wait(timeout=10), 28, "denied: its SYNs dropped")
        written = self.answer_file(daemon, ALICE)
        self.assertIn("answers: ask-web", written)
        self.assertIn(f'app.path: {CURL},', written)
        self.assertIn(f"uid: {ALICE}", written)
        self.assertIn("verdict: drop", written)
        rules = json.loads(self.ctl(daemon, "--json", "rules").stdout)
        names = [r["name"] for r in rules]
        self.assertEqual(names.index("ans-u4001-1") + 1, names.index("ask-web"),
                         "the answer sits just before its ask rule")

        # Denied without asking, also after a reload; another user is still asked.
        prompts_before = self.stats(daemon)["prompts"]["prompts"]
        self.assertEqual(self.curl(ALICE, max_time=2).wait(timeout=10), 28)
        daemon.send(1)  # SIGHUP
        wait_for(lambda: daemon.log().count("policy reloaded") >= 2, what="the reload")
        self.assertEqual(self.curl(ALICE, max_time=2).wait(timeout=10), 28)
        self.assertEqual(self.stats(daemon)["prompts"]["prompts"], prompts_before)
        self.assertGreaterEqual(self.stats(daemon)["queue 0"]["answer_rules"], 2)
        self.assertEqual(self.pending(daemon), [])
        bob = self.curl(BOB, max_time=5)
        self.assertEqual(bob.wait(timeout=10), 28, "bob has no prompt client: the fallback")
        self.assertGreaterEqual(self.stats(daemon)["prompts"]["unwatched"], 1)  # each SYN

    def test_nobody_answering_gives_the_fallback(self):
        daemon = self.start(policy(timeout_ms=1500, fallback="accept"))
        tty = self.prompt_tty(daemon, ALICE)
        # Port 81 is closed: the accept fallback lets the SYN through, and the RST refuses it.
        curl = self.curl(ALICE, port=81, max_time=20)
        tty.wait("-> tcp 127.0.0.1:81")
        self.assertEqual(curl.wait(timeout=20), 7, "accepted at the deadline, then refused")
        tty.wait("timed out: accept")
        stats = self.stats(daemon)
        self.assertEqual(stats["prompts"]["timed_out"], 1)
        self.assertGreaterEqual(stats["queue 0"]["ask_fallbacks"], 1)
        self.assertEqual(self.pending(daemon), [])

        # A drop fallback (the default) drops: curl's SYNs never get an answer.
        daemon.reload(policy(timeout_ms=1500))
        wait_for(lambda: daemon.log().count("policy reloaded") >= 1, what="the reload")
        self.assertEqual(self.curl(ALICE, port=81, max_time=4).wait(timeout=10), 28)
        tty.wait("timed out: drop")

    def test_a_user_without_a_prompt_client_gets_the_fallback_at_once(self):
        # A minute to answer, an accept fallback: refused (RST) at once proves nothing waited.
        daemon = self.start(policy(timeout_ms=60000, fallback="accept"))
        self.assertEqual(self.curl(ALICE, port=81, max_time=10).wait(timeout=15), 7)
        self.assertGreaterEqual(self.stats(daemon)["prompts"]["unwatched"], 1)  # each SYN

    def test_two_users_see_only_their_own_prompts(self):
        daemon = self.start(policy())
        alice_tty = self.prompt_tty(daemon, ALICE)
        bob_tty = self.prompt_tty(daemon, BOB)
        alice = self.curl(ALICE)
        bob = self.curl(BOB, port=81)
        alice_tty.wait("-> tcp 127.0.0.1:80")
        bob_tty.wait("-> tcp 127.0.0.1:81")
        self.assertNotIn(":81", alice_tty.screen())
        self.assertNotIn(":80 ", bob_tty.screen() + " ")
        self.assertIn(f"uid {BOB})", bob_tty.screen())
        mine = self.pending(daemon, uid=ALICE)
        self.assertEqual([(p["uid"], p["pid"]) for p in mine], [(ALICE, alice.pid)])
        everyone = self.pending(daemon)  # root
        self.assertEqual(sorted(p["uid"] for p in everyone), [ALICE, BOB])
        bobs = next(p["id"] for p in everyone if p["uid"] == BOB)

        # Alice cannot answer Bob's prompt, and cannot tell it from an id never used.
        foreign = self.ctl(daemon, "answer", str(bobs), "allow", uid=ALICE, check=False)
        made_up = self.ctl(daemon, "answer", "987654", "allow", uid=ALICE, check=False)
        self.assertEqual(foreign.returncode, 1)
        self.assertEqual(foreign.stderr.replace(str(bobs), "N"),
                         made_up.stderr.replace("987654", "N"))
        # Nor watch everyone's.
        watch_all = subprocess.run(as_uid(ALICE, PROMPT_TTY, "--all", daemon.socket),
                                   capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                   timeout=10)
        self.assertEqual(watch_all.returncode, 1)
        self.assertIn("only root watches every user's prompts", watch_all.stderr)

        # Root may watch everyone's.
        root_tty = Tmux(self, [PROMPT_TTY, "--all", daemon.socket])
        root_tty.wait("waiting for prompts")
        root_tty.wait(") -> tcp 127.0.0.1:8")
        root_tty.keys("s")  # skip to the other question: both are there
        root_tty.wait(f"uid {ALICE}) -> tcp 127.0.0.1:80")
        root_tty.wait(f"uid {BOB}) -> tcp 127.0.0.1:81")
        # A second prompt client of Bob's is shown what is pending when it connects.
        bob_again = self.prompt_tty(daemon, BOB)
        bob_again.wait("-> tcp 127.0.0.1:81")
        self.assertEqual(self.ctl(daemon, "answer", str(bobs), "allow").returncode, 0)  # root
        self.assertEqual(bob.wait(timeout=10), 7, "allowed; port 81 refuses")
        bob_tty.wait("answered elsewhere: allow once by uid 0")
        alice_tty.keys("m")  # allow for 15 minutes
        alice_tty.wait("answered: allow for 15 minutes: released 1; rule ans-u4001-1")
        self.assertEqual(alice.wait(timeout=10), 0)
        self.assertNotIn("answered elsewhere", alice_tty.screen())
        self.assertRegex(self.answer_file(daemon, ALICE), r"until: 20\d\d-\d\d-\d\dT")

    def test_merged_prompt_while_200_other_connections_flow(self):
        daemon = self.start(policy(timeout_ms=60000, extra_rules="""  - name: python-elsewhere
    match: {proto: tcp, dport: 8080, app.name: python3}
    verdict: accept
"""))
        listener = subprocess.Popen(
            [sys.executable, "-c",
             "import socket\ns=socket.create_server(('127.0.0.1', 8080), backlog=1024)\n"
             "while True: s.accept()[0].close()\n"])
        self.addCleanup(lambda: (listener.kill(), listener.wait()))
        wait_for(lambda: ":8080 " in run("ss", "-ltnH").stdout, what="the listener")
        self.prompt_tty(daemon, ALICE)
        waiting = [self.curl(ALICE) for _ in range(5)]
        prompt = wait_for(
            lambda: (lambda p: p if p and p[0]["waiting"] == 5 else None)(self.pending(daemon)),
            what="one prompt for the five connections")[0]
        self.assertEqual(len(self.pending(daemon)), 1)

        # 20 programs open 10 connections each while the prompt waits: none waits for it.
        code = ("import socket,sys\nok=0\nfor i in range(10):\n"
                "    s=socket.create_connection(('127.0.0.1', 8080), timeout=5); s.close(); ok+=1\n"
                "print(ok)\n")
        workers = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                    text=True) for _ in range(20)]
        connected = sum(int(w.communicate(timeout=60)[0] or 0) for w in workers)
        self.assertEqual(connected, 200)
        self.assertEqual([p["waiting"] for p in self.pending(daemon)], [5], "still pending")
        stats = self.stats(daemon)
        self.assertGreaterEqual(stats["rule python-elsewhere"]["packets"], 200)

        done = self.ctl(daemon, "answer", str(prompt["id"]), "allow", "--for", "15", uid=ALICE)
        self.assertIn("released 5; rule ans-u4001-1", done.stdout)
        self.assertEqual([c.wait(timeout=10) for c in waiting], [0] * 5)
        again = self.ctl(daemon, "answer", str(prompt["id"]), "deny", uid=ALICE, check=False)
        self.assertEqual(again.returncode, 1)
        self.assertIn("no pending prompt", again.stderr)
        stats = self.stats(daemon)
        self.assertEqual(stats["prompts"]["prompts"], 1)
        self.assertEqual(stats["prompts"]["merged"], 4)

    def test_prompts_of_one_user_are_bounded(self):
        daemon = self.start(policy())
        self.prompt_tty(daemon, ALICE)
        self.prompt_tty(daemon, BOB)
        flood = [self.curl(ALICE, port=9000 + i, max_time=20) for i in range(40)]
        wait_for(lambda: self.stats(daemon)["prompts"]["prompts"] +
                 self.stats(daemon)["prompts"]["overflows"] >= 40, what="40 connections seen")
        self.assertEqual(len(self.pending(daemon, uid=ALICE)), 32)
        self.assertGreaterEqual(self.stats(daemon)["prompts"]["overflows"], 8)
        bob = self.curl(BOB)
        wait_for(lambda: any(p["uid"] == BOB for p in self.pending(daemon)), what="bob's prompt")
        for prompt in self.pending(daemon):
            self.ctl(daemon, "answer", str(prompt["id"]), "deny")
        self.assertEqual(bob.wait(timeout=35), 28)
        for curl in flood:
            self.assertNotEqual(curl.wait(timeout=35), 0)

    def test_one_user_holds_at_most_128_waiting_connections(self):
        daemon = self.start(policy())
        self.prompt_tty(daemon, ALICE)
        code = ("import socket,time\nss=[]\nfor i in range(150):\n"
                "    s=socket.socket(); s.setblocking(False); s.connect_ex(('127.0.0.1', 80));"
                " ss.append(s)\ntime.sleep(30)\n")
        many = subprocess.Popen(as_uid(ALICE, sys.executable, "-c", code))
        self.addCleanup(lambda: (many.kill(), many.wait()))
        wait_for(lambda: self.stats(daemon)["prompts"]["overflows"] >= 22,
                 what="the connections past 128 to take the fallback")
        [prompt] = self.pending(daemon)
        self.assertEqual(prompt["waiting"], 128)
        self.prompt_tty(daemon, BOB)
        bob = self.curl(BOB)  # another user is not crowded out: asked, and answered
        bobs = wait_for(lambda: [p for p in self.pending(daemon) if p["uid"] == BOB],
                        what="bob's prompt")[0]
        self.ctl(daemon, "answer", str(bobs["id"]), "allow", uid=BOB)
        self.assertEqual(bob.wait(timeout=10), 0)
        done = self.ctl(daemon, "answer", str(prompt["id"]), "allow", uid=ALICE)
        self.assertIn("released 128", done.stdout)

    def test_a_reload_keeps_prompts_and_shutdown_gives_their_fallback(self):
        daemon = self.start(policy(timeout_ms=60000, fallback="accept"))
        tty = self.prompt_tty(daemon, ALICE)
        answered = self.curl(ALICE)
        first = self.wait_pending(daemon, 1)[0]
        daemon.send(1)  # SIGHUP: the question and its connection stay
        wait_for(lambda: "policy reloaded" in daemon.log(), what="the reload")
        self.ctl(daemon, "answer", str(first["id"]), "allow", uid=ALICE)
        self.assertEqual(answered.wait(timeout=10), 0)
        # Port 81 is closed: the accept fallback given at shutdown shows as a refusal.
        waiting = self.curl(ALICE, port=81)
        self.wait_pending(daemon, 1)
        self.assertEqual(daemon.stop(), 0)
        self.assertEqual(waiting.wait(timeout=10), 7, "released with the fallback at shutdown")
        tty.wait("EXITED 1")  # the prompt client says the broker went away, and ends

    def test_a_queue_holds_at_most_half_its_length_for_answers(self):
        daemon = self.start(policy().replace("queues: [{num: 0}]", "queues: [{num: 0, max_len: 40}]"))
        self.prompt_tty(daemon, ALICE)
        code = ("import socket,time\nss=[]\nfor i in range(60):\n"
                "    s=socket.socket(); s.setblocking(False); s.connect_ex(('127.0.0.1', 80));"
                " ss.append(s)\ntime.sleep(30)\n")
        many = subprocess.Popen(as_uid(ALICE, sys.executable, "-c", code))
        self.addCleanup(lambda: (many.kill(), many.wait()))
        wait_for(lambda: self.stats(daemon)["queue 0"].get("ask_overflows", 0) >= 1,
                 what="the queue's ask bound")
        [prompt] = self.pending(daemon)
        self.assertLessEqual(prompt["waiting"], 20)
        queue = self.stats(daemon)["queue 0"]
        self.assertLessEqual(queue["ask_waits"] - queue["ask_answered"] - queue["ask_fallbacks"], 20)

    def test_allowed_until_the_program_exits(self):
        daemon = self.start(policy())
        self.prompt_tty(daemon, ALICE)
        # A python3 that connects whenever it reads a line.
        code = ("import socket,sys\nfor line in sys.stdin:\n"
                "    try:\n        socket.create_connection(('127.0.0.1', 80), timeout=30).close();"
                " print('ok', flush=True)\n"
                "    except OSError as e: print('failed', e, flush=True)\n")
        program = subprocess.Popen(as_uid(ALICE, sys.executable, "-c", code),
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (program.kill(), program.wait(), program.stdout.close()))
        program.stdin.write("go\n")
        program.stdin.flush()
        prompt = self.wait_pending(daemon, 1, uid=ALICE)[0]
        self.assertEqual(prompt["pid"], program.pid)  # setpriv execs python3
        done = self.ctl(daemon, "answer", str(prompt["id"]), "allow", "--until-exit", uid=ALICE)
        self.assertIn("rule ans-u4001-1", done.stdout)
        self.assertEqual(program.stdout.readline().strip(), "ok")
        self.assertIn("app-exit", self.answer_file(daemon, ALICE))
        for _ in range(3):  # allowed without asking while it runs
            program.stdin.write("go\n")
            program.stdin.flush()
            self.assertEqual(program.stdout.readline().strip(), "ok")
        self.assertEqual(self.stats(daemon)["prompts"]["prompts"], 1)

        program.stdin.close()
        program.wait(timeout=10)
        wait_for(lambda: "ans-u4001-1" not in self.ctl(daemon, "rules").stdout,
                 what="the rule to end with its program")
        self.assertIn(f"process {program.pid} exited", daemon.log())
        curl = self.curl(ALICE, max_time=5)
        self.wait_pending(daemon, 1)  # asked again
        self.assertEqual(curl.wait(timeout=10), 28)

    def test_rules_by_hand_and_the_apps_seen(self):
        daemon = self.start(policy())
        self.prompt_tty(daemon, ALICE)
        # Alice allows curl to port 80 for 10 minutes: an absolute until, not moved by later writes.
        added = self.ctl(daemon, "--json", "add-rule", "--answers", "ask-web", "--verdict", "accept",
                         "--match", f'{{app.path: "{CURL}", dport: 80}}', "--until", "10m",
                         uid=ALICE)
        rule = json.loads(added.stdout)["rule"]
        self.assertTrue(rule.startswith("ans-u4001-1 "), rule)
        self.assertEqual(self.curl(ALICE).wait(timeout=10), 0)
        self.assertEqual(self.pending(daemon), [])
        written = self.answer_file(daemon, ALICE)
        self.assertRegex(written, r"until: 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ")
        time.sleep(1.1)
        self.ctl(daemon, "add-rule", "--answers", "ask-web", "--verdict", "drop", "--match",
                 "{dport: 81}", "--until", "1h", uid=ALICE)
        self.assertIn(written.split("until: ")[1].split("\n")[0], self.answer_file(daemon, ALICE))

        # Not for another user, not past the ask rule, not a rule that is not an answer.
        foreign = self.ctl(daemon, "add-rule", "--answers", "ask-web", "--verdict", "accept",
                           "--match", "{dport: 80}", "--uid", str(BOB), uid=ALICE, check=False)
        self.assertEqual(foreign.returncode, 1)
        self.assertIn("only root adds rules for another user", foreign.stderr)
        other_uid = self.ctl(daemon, "add-rule", "--answers", "ask-web", "--verdict", "accept",
                             "--match", f"{{uid: {BOB}}}", uid=ALICE, check=False)
        self.assertIn("matches that uid alone", other_uid.stderr)
        not_ask = self.ctl(daemon, "add-rule", "--answers", "python-nothing", "--verdict",
                           "accept", "--match", "{}", uid=ALICE, check=False)
        self.assertIn("is not an ask rule", not_ask.stderr)
        bad = self.ctl(daemon, "add-rule", "--answers", "ask-web", "--verdict", "accept",
                       "--match", "{dport: 99999}", uid=ALICE, check=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("99999", bad.stderr)  # the loader's diagnostic, before anything is written
        self.assertNotIn("99999", self.answer_file(daemon, ALICE), "put back as it was")

        # Bob cannot delete Alice's rules; Alice can.
        self.ctl(daemon, "add-rule", "--answers", "ask-web", "--verdict", "accept",
                 "--match", "{dport: 80}", "--uid", str(BOB))  # root, for Bob
        refused = self.ctl(daemon, "delete-rule", "ans-u4001-1", uid=BOB, check=False)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("no answer rule 'ans-u4001-1' of yours", refused.stderr)
        self.ctl(daemon, "delete-rule", "ans-u4001-1", uid=ALICE)
        self.assertNotIn("ans-u4001-1", self.ctl(daemon, "rules").stdout)
        self.assertIn("ans-u4002-1", self.ctl(daemon, "rules").stdout)
        self.ctl(daemon, "delete-rule", "ans-u4002-1")  # root, Bob's
        self.assertNotIn("ans-u4002-1", self.ctl(daemon, "rules").stdout)

        # Each write reloads the policy: a user gets 20 a minute.
        refused = None
        for port in range(1000, 1030):
            done = self.ctl(daemon, "add-rule", "--answers", "ask-web", "--verdict", "drop",
                            "--match", f"{{dport: {port}}}", uid=ALICE, check=False)
            if done.returncode != 0:
                refused = done
                break
        self.assertIsNotNone(refused)
        self.assertIn("rules written in a minute", refused.stderr)
        self.ctl(daemon, "add-rule", "--answers", "ask-web", "--verdict", "drop", "--match",
                 "{dport: 2000}", "--uid", str(ALICE))  # root is not limited

        apps = json.loads(self.ctl(daemon, "--json", "apps", uid=ALICE).stdout)
        self.assertEqual({a["uid"] for a in apps}, {ALICE})
        curl = next(a for a in apps if a["path"] == CURL)
        self.assertIn("tcp 127.0.0.1:80", curl["destinations"])
        self.assertGreaterEqual(curl["connections"], 1)


if __name__ == "__main__":
    main()
