"""pktbrokerd's and pktreplay's command lines: --check output compared to golden files, --help
and --version, usage errors. Needs no privileges. Run with UPDATE_GOLDEN=1 to rewrite the
expected outputs."""

import os
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")
PKTBROKERD = os.environ["PKTBROKERD"]
PKTREPLAY = os.environ["PKTREPLAY"]


def pktbrokerd(*args):
    return subprocess.run([PKTBROKERD, *args], capture_output=True, text=True, cwd=GOLDEN)


def pktreplay(*args):
    return subprocess.run([PKTREPLAY, *args], capture_output=True, text=True, cwd=GOLDEN)


class Cli(unittest.TestCase):
    def check_golden(self, name, text):
        path = os.path.join(GOLDEN, name)
        if os.environ.get("UPDATE_GOLDEN"):
            with open(path, "w") as f:
                f.write(text)
        with open(path) as f:
            self.assertEqual(text, f.read(), f"output differs from {path}")

    def test_check_accepts_a_valid_policy(self):
        result = pktbrokerd("--check", "--config", "good.yaml")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.check_golden("good.out", result.stdout)

    def test_check_reports_every_problem_with_its_position(self):
        result = pktbrokerd("--check", "--config", "bad.yaml")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "")
        self.check_golden("bad.out", result.stderr)

    def test_check_reports_yaml_syntax_errors(self):
        result = pktbrokerd("--check", "--config", "syntax.yaml")
        self.assertEqual(result.returncode, 1)
        self.check_golden("syntax.out", result.stderr)

    def test_check_reports_a_missing_file(self):
        result = pktbrokerd("--check", "--config", "no-such-policy.yaml")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr,
                         "no-such-policy.yaml: error: cannot read the file: No such file or directory\n")

    def test_the_shipped_policy_is_valid(self):
        repo = os.path.dirname(os.path.dirname(HERE))
        result = pktbrokerd("--check", "--config", os.path.join(repo, "config", "policy.yaml"))
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_help_reads_like_a_man_page(self):
        result = pktbrokerd("--help")
        self.assertEqual(result.returncode, 0)
        self.check_golden("help.out", result.stdout)

    def test_the_policy_man_page_documents_every_key_the_loader_accepts(self):
        # The loader's key lists are its `constexpr std::string_view NAME_keys[]` arrays.
        repo = os.path.dirname(os.path.dirname(HERE))
        with open(os.path.join(repo, "broker", "policy", "policy_loader.cpp")) as f:
            loader = f.read()
        arrays = re.findall(r"constexpr std::string_view (\w+)\[\] = \{(.*?)\};", loader, re.S)
        self.assertGreaterEqual(len(arrays), 10)
        # and the top-level keys, each a Section {"key", in_drop_ins, reader}
        sections = re.search(r"constexpr Section sections\[\] = \{(.*?)\n\};", loader, re.S)
        arrays.append(("sections", "".join(f'"{key}"' for key in re.findall(
            r'\{"(\w+)", (?:true|false),', sections.group(1)))))
        with open(os.path.join(repo, "doc", "man", "pktbroker-policy.5.scd")) as f:
            page = f.read()
        for name, body in arrays:
            keys = re.findall(r'"([^"]+)"', body)
            self.assertTrue(keys, name)
            for key in keys:
                self.assertIn(f"*{key}*", page, f"{name}: '{key}' is not in pktbroker-policy(5)")

    def test_every_policy_in_the_readme_and_man_page_is_valid(self):
        repo = os.path.dirname(os.path.dirname(HERE))
        policies = []
        for doc in ("README.md", "doc/man/pktbroker-policy.5.scd"):
            with open(os.path.join(repo, doc)) as f:
                text = f.read()
            blocks = re.findall(r"^```[a-z]*\n(.*?)^```$", text, re.S | re.M)
            policies += [(doc, block) for block in blocks
                         if re.match(r"(broker|rules|socket|clients|plugins):", block)]
        self.assertGreaterEqual(len(policies), 6)
        for doc, policy in policies:
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                f.write(policy)
                f.flush()
                result = pktbrokerd("--check", "--config", f.name)
            # The examples' users and groups need not exist on this machine.
            errors = [line for line in result.stderr.splitlines()
                      if not re.search(r"unknown (user 'monitor'|group 'netops')", line)]
            self.assertEqual(errors, [], f"{doc}:\n{policy}")

    def test_version(self):
        result = pktbrokerd("--version")
        self.assertEqual(result.returncode, 0)
        self.assertRegex(result.stdout, r"^pktbrokerd \d+\.\d+\.\d+\n$")

    def test_bad_usage_exits_2(self):
        for args in (["--no-such-option"], ["--log-level", "loud"], ["--threads", "many"]):
            result = pktbrokerd(*args)
            self.assertEqual(result.returncode, 2, args)
            self.assertIn("pktbrokerd", result.stderr)

    def test_pktreplay_help_and_version(self):
        result = pktreplay("--help")
        self.assertEqual(result.returncode, 0)
        self.check_golden("pktreplay-help.out", result.stdout)
        result = pktreplay("--version")
        self.assertRegex(result.stdout, r"^pktreplay \d+\.\d+\.\d+\n$")

    def test_pktreplay_bad_usage_exits_2_with_the_reason(self):
        capture = os.path.join(os.path.dirname(os.path.dirname(HERE)), "test", "data",
                               "dns.pcapng")
        cases = {
            (): "no capture file given",
            (capture,): "--target is required",
            (capture, "--target", "example.com"): "bad --target 'example.com'",
            (capture, "--target", "10.0.0.1:99999"): "bad --target '10.0.0.1:99999'",
            (capture, "-t", "::1", "--map", "10.0.0.53:53"): "bad --map '10.0.0.53:53'",
            (capture, "-t", "::1", "--timing", "slow"): "bad --timing 'slow'",
            (capture, "-t", "::1", "--plugin", "nope=/nonexistent.so"): "cannot load",
        }
        for args, message in cases.items():
            result = pktreplay(*args)
            self.assertEqual(result.returncode, 2, args)
            self.assertIn(message, result.stderr, args)


if __name__ == "__main__":
    unittest.main(verbosity=2)
