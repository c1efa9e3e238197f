"""Reusable fixture for pktbroker's kernel integration tests.

Every test runs in its own throwaway network namespace: the test process itself enters it
(setns), so Python sockets and every subprocess live there, and it is deleted in tearDown even
when the test fails. Traffic goes only to loopback or to peer namespaces the test created.
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

PKTBROKERD = os.environ.get("PKTBROKERD", "")
PLUGINS = os.environ.get("PLUGINS", "")  # the directory holding the built plugins
SKIP = 77  # ctest SKIP_RETURN_CODE
SO_SNDBUFFORCE = 32  # from <asm-generic/socket.h>; Python exports neither
SO_RCVBUFFORCE = 33


def run(*args, check=True, **kwargs):
    """Runs a command, raising with its output when it fails."""
    result = subprocess.run(list(args), capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Polls until predicate() is truthy; the timeout only guards against hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def _setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path})")
    finally:
        os.close(fd)


class Namespace:
    """A named network namespace (`ip netns add`) with loopback up."""

    _count = 0

    def __init__(self, prefix="pktb"):
        Namespace._count += 1
        self.name = f"{prefix}-{os.getpid()}-{Namespace._count}"
        run("ip", "netns", "add", self.name)
        self.path = f"/run/netns/{self.name}"
        self.processes = []
        self.exec("ip", "link", "set", "lo", "up")

    def exec(self, *args, check=True, **kwargs):
        return run("ip", "netns", "exec", self.name, *args, check=check, **kwargs)

    def popen(self, *args, **kwargs):
        """Starts a process inside; it is killed when the namespace is deleted."""
        process = subprocess.Popen(["ip", "netns", "exec", self.name, *args], **kwargs)
        self.processes.append(process)
        return process

    def delete(self):
        # Processes started here may not have entered the namespace yet, so `ip netns pids`
        # alone could miss them.
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        pids = run("ip", "netns", "pids", self.name, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        run("ip", "netns", "del", self.name, check=False)


def remove_orphaned_namespaces():
    """Deletes namespaces left by test runs that were killed before their cleanup ran
    (their names carry the pid of a process that no longer exists)."""
    listing = run("ip", "netns", "list", check=False).stdout
    for name in re.findall(r"^(pktb(?:-peer)?-(\d+)-\d+)", listing, re.M):
        if not os.path.exists(f"/proc/{name[1]}"):
            run("ip", "netns", "del", name[0], check=False)


def own_namespaces():
    """Names of the namespaces this process created that still exist."""
    listing = run("ip", "netns", "list", check=False).stdout
    return re.findall(rf"^(pktb(?:-peer)?-{os.getpid()}-\d+)", listing, re.M)


def _die_with_parent():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def as_user(user, *argv):
    """argv run as `user` (name or uid) with that user's primary group and no supplementary
    groups; 'nobody' gets the group 'nogroup' as on Debian."""
    group = "nogroup" if user == "nobody" else user
    return ["setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups", *argv]


class Daemon:
    """A pktbrokerd process serving a policy written to a temporary directory."""

    def __init__(self, test, policy, drop_ins=None, args=(), log_level="debug", socket_options="",
                 env=None, launcher=()):
        """`launcher` prefixes the command (setpriv, to start it as systemd would); the policy
        is then made readable to all."""
        if not PKTBROKERD or not os.access(PKTBROKERD, os.X_OK):
            raise AssertionError(f"PKTBROKERD='{PKTBROKERD}' does not name the pktbrokerd binary")
        self.test = test
        self.dir = tempfile.mkdtemp(prefix="pktbroker-test-")
        self.config = os.path.join(self.dir, "policy.yaml")
        self.socket = os.path.join(self.dir, "broker.sock")
        self.socket_options = socket_options
        self.write_policy(policy)
        if drop_ins:
            os.mkdir(os.path.join(self.dir, "policy.d"))
            for name, text in drop_ins.items():
                with open(os.path.join(self.dir, "policy.d", name), "w") as f:
                    f.write(text)
        self.log_path = os.path.join(self.dir, "pktbrokerd.log")
        self.log_file = open(self.log_path, "w")
        env = dict(os.environ, **(env or {}))
        if PLUGINS:
            env["PKTBROKER_PLUGIN_PATH"] = PLUGINS
        if launcher:
            os.chmod(self.dir, 0o755)
            os.chmod(self.config, 0o644)
        self.process = subprocess.Popen(
            [*launcher, PKTBROKERD, "--config", self.config, "--foreground", "--log-level", log_level, *args],
            stdout=self.log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, env=env)
        test.addCleanup(self.cleanup)
        wait_for(lambda: "pktbrokerd ready" in self.log() or self.process.poll() is not None,
                 what="pktbrokerd to bind its queues")
        if self.process.poll() is not None:
            raise AssertionError(f"pktbrokerd exited early:\n{self.log()}")

    def write_policy(self, text):
        """Writes the policy; unless it names one, the client socket lives in the temp dir."""
        if not re.search(r"^socket:", text, re.M):
            extra = f", {self.socket_options}" if self.socket_options else ""
            text += f"\nsocket: {{path: {self.socket}{extra}}}\n"
        with open(self.config + ".tmp", "w") as f:
            f.write(text)
        os.replace(self.config + ".tmp", self.config)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def send(self, signum):
        self.process.send_signal(signum)

    def pause(self):
        """SIGSTOP, returning only once every thread has really stopped."""
        self.send(signal.SIGSTOP)

        def stopped():
            tasks = os.listdir(f"/proc/{self.process.pid}/task")
            states = []
            for task in tasks:
                with open(f"/proc/{self.process.pid}/task/{task}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            return all(state == "T" for state in states)

        wait_for(stopped, what="pktbrokerd to stop")

    def reload(self, text):
        self.write_policy(text)
        self.send(signal.SIGHUP)

    def stats(self, queue=0):
        """Asks for counters (SIGUSR1) and returns the newest block for `queue` as
        {'queue': {...}, 'rules': {name: {...}}, 'malformed': {...}, 'netlink_error': {...}}."""
        header = re.compile(rf"stats queue={queue} packets=")
        before = len(header.findall(self.log()))
        self.send(signal.SIGUSR1)
        wait_for(lambda: len(header.findall(self.log())) > before, what="stats")
        time.sleep(0.05)  # the rule lines follow the header line
        lines = [l.split(" stats ", 1)[1] for l in self.log().splitlines() if " stats " in l]
        last = max(i for i, l in enumerate(lines) if header.match("stats " + l))
        block = {"queue": {}, "rules": {}, "malformed": {}, "netlink_error": {}}
        for i, line in enumerate(lines[last:]):
            pairs = dict(p.split("=", 1) for p in line.split() if "=" in p)
            if pairs.get("queue") != str(queue) or (i > 0 and "packets" in pairs and "rule" not in pairs):
                break
            if i == 0:
                block["queue"] = {k: int(v) for k, v in pairs.items()}
            elif "rule" in pairs:
                block["rules"][pairs["rule"]] = {k: int(pairs[k]) for k in ("packets", "bytes")}
            elif "malformed" in pairs:
                block["malformed"][pairs["malformed"]] = int(pairs["count"])
            elif "netlink_error" in pairs:
                block["netlink_error"][pairs["netlink_error"]] = int(pairs["count"])
            elif "flows" in pairs:
                block["flows"] = {k: int(v) for k, v in pairs.items()}
        return block

    def plugin_stats(self, plugin):
        """The counters of `plugin` from the newest stats block (call stats() first)."""
        lines = [l for l in self.log().splitlines() if f" stats plugin={plugin} " in l + " "]
        if not lines:
            raise AssertionError(f"no stats line for plugin {plugin}:\n{self.log()[-3000:]}")
        pairs = dict(p.split("=", 1) for p in lines[-1].split(" stats ", 1)[1].split() if "=" in p)
        return {k: int(v) for k, v in pairs.items() if k != "plugin"}

    def stop(self, signum=signal.SIGTERM):
        """Stops the daemon; returns its exit code."""
        self.send(signum)
        return self.process.wait(timeout=20)

    def cleanup(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log_file.close()
        outcome = self.test._outcome  # None when an interrupted test is cleaned up late
        if outcome is None or not outcome.success:
            sys.stderr.write(f"--- pktbrokerd log ({self.log_path}) ---\n{self.log()[-6000:]}\n")
        subprocess.run(["rm", "-rf", self.dir])


TEST_CLIENT = os.environ.get("TEST_CLIENT", "")


class CollectedProcess:
    """A program whose stdout and stderr lines are collected in the background; lines that
    start with "packet " are its packets, as key=value pairs."""

    def __init__(self, test, argv, env=None):
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, preexec_fn=_die_with_parent,
                                        env=dict(os.environ, **env) if env else None)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        test.addCleanup(self.kill)

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, prefix, timeout=10):
        return wait_for(lambda: next((l for l in self.lines if l.startswith(prefix)), None),
                        timeout=timeout, what=f"client line '{prefix}' (got {self.lines[-5:]})")

    def packets(self):
        """The packet lines as dicts."""
        return [dict(p.split("=", 1) for p in l.split()[1:]) for l in list(self.lines)
                if l.startswith("packet ")]

    def wait_exit(self, timeout=20):
        code = self.process.wait(timeout=timeout)
        self._reader.join()
        return code

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        self.process.stdout.close()


class ClientProcess(CollectedProcess):
    """A pktbroker_test_client run."""

    def __init__(self, test, daemon, *args, user=None, **options):
        argv = [TEST_CLIENT, f"--socket={daemon.socket}", *args]
        argv += [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        if user:
            argv = as_user(user, *argv)
        super().__init__(test, argv)


class UdpSink:
    """Counts datagrams arriving on a UDP port, in a background thread."""

    def __init__(self, test, address="127.0.0.1", port=5000):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        # Room for a whole burst (100,000 datagrams of ~1 KiB truesize): a slow reader loses none.
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
        self.sock.bind((address, port))
        self.sock.settimeout(0.1)
        self.count = 0
        self.payloads = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        test.addCleanup(self.close)

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.count += 1
            if len(self.payloads) < 100000:
                self.payloads.append(data)

    def settle(self, expected=None, quiet=0.5):
        """Waits until `expected` datagrams arrived, or until none arrived for `quiet` seconds."""
        if expected is not None:
            try:
                wait_for(lambda: self.count >= expected, timeout=15, what="datagrams")
            except AssertionError:
                pass
        last = -1
        while last != self.count:
            last = self.count
            time.sleep(quiet)
        return self.count

    def close(self):
        if self._stop:
            return
        self._stop = True
        self._thread.join()
        self.sock.close()


def sanitized():
    """Whether pktbrokerd is the AddressSanitizer build."""
    result = subprocess.run(["ldd", PKTBROKERD], capture_output=True, text=True, check=False)
    return "libasan" in result.stdout


def without_asan_quarantine(test):
    """Processes started from now to the end of `test` keep no AddressSanitizer quarantine
    (freed memory held back, 256 MiB by default), which would read as growth in a memory test."""
    previous = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [previous, "quarantine_size_mb=0"]))
    if previous is None:
        test.addCleanup(os.environ.pop, "ASAN_OPTIONS", None)
    else:
        test.addCleanup(os.environ.__setitem__, "ASAN_OPTIONS", previous)


def mark_ports(count, base=6000):
    """UDP to port base+i carries mark i (iptables mangle OUTPUT)."""
    for i in range(1, count + 1):
        run("iptables", "-t", "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", str(base + i),
            "-j", "MARK", "--set-mark", str(i))


def send_udp(address, port, count, rate=None, payload=b"x" * 64):
    """Sends `count` datagrams, paced at `rate` per second when given. Returns count sent."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        # Queued packets stay charged to the sender: a large buffer keeps sendto from blocking.
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 64 << 20)
        start = time.monotonic()
        for i in range(count):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sock.sendto(payload, (address, port))
    return count


def tcp_connects(address, port, timeout=1.0):
    """True when a TCP connection to address:port completes within `timeout` seconds."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((address, port))
            return True
        except (socket.timeout, OSError):
            return False


def port_open(port, address="127.0.0.1"):
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
        s.settimeout(0.2)
        return s.connect_ex((address, port)) == 0


NGINX_CONF = """daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log stderr;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 10000;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{
    listen 127.0.0.1:80;
    listen [::1]:80;
    location / {{ root {root}; }}
  }}
}}
"""

VSFTPD_CONF = """listen=YES
listen_address=127.0.0.1
background=NO
anonymous_enable=YES
local_enable=NO
anon_root={root}
no_anon_password=YES
pasv_enable=YES
pasv_min_port=40000
pasv_max_port=40999
seccomp_sandbox=NO
secure_chroot_dir={empty}
xferlog_enable=NO
"""


def write_files(root, files):
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)


def tcp_listener(test, address, port):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(64)
    test.addCleanup(sock.close)
    return sock


def kernel_queues():
    """{queue_num: {...}} from /proc/net/netfilter/nfnetlink_queue of this namespace."""
    queues = {}
    try:
        with open("/proc/net/netfilter/nfnetlink_queue") as f:
            for line in f:
                cols = [int(c) for c in line.split()]
                queues[cols[0]] = dict(portid=cols[1], queue_total=cols[2], copy_mode=cols[3],
                                       copy_range=cols[4], queue_dropped=cols[5],
                                       user_dropped=cols[6], id_sequence=cols[7])
    except FileNotFoundError:
        pass
    return queues


def iptables_packets(table, chain, rule_number, ipv6=False):
    """Packet counter of one rule (1-based) of a chain."""
    tool = "ip6tables" if ipv6 else "iptables"
    out = run(tool, "-t", table, "-L", chain, "-n", "-v", "-x", "--line-numbers").stdout
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] == str(rule_number):
            return int(cols[1])
    raise AssertionError(f"no rule {rule_number} in {table}/{chain}:\n{out}")


class NetnsTestCase(unittest.TestCase):
    """Runs each test inside a fresh network namespace, entered by this process. Everything a
    test sets up through this class is undone in cleanups that run on success, failure and
    interruption (Ctrl-C, SIGTERM), and no namespace of this process outlives its test class."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root for network namespaces")
        remove_orphaned_namespaces()

    @classmethod
    def tearDownClass(cls):
        leaked = own_namespaces()
        for name in leaked:
            run("ip", "netns", "del", name, check=False)
        if leaked:
            raise AssertionError(f"namespaces left behind: {leaked}")

    def run(self, result=None):
        try:
            return super().run(result)
        finally:
            # unittest skips the cleanups when KeyboardInterrupt escapes a test; run them here.
            self.doCleanups()

    def setUp(self):
        self.original_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.ns = Namespace()
        self.addCleanup(self._leave)
        _setns(self.ns.path)

    def _leave(self):
        if _libc.setns(self.original_ns, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the original namespace")
        os.close(self.original_ns)
        self.ns.delete()

    def peer(self, address="10.99.0.2/24", local="10.99.0.1/24"):
        """A second namespace joined to this one by a veth pair; returns (namespace, local_if)."""
        peer = Namespace("pktb-peer")
        self.addCleanup(peer.delete)
        local_if, peer_if = f"vb{Namespace._count}a", f"vb{Namespace._count}b"
        run("ip", "link", "add", local_if, "type", "veth", "peer", "name", peer_if,
            "netns", peer.name)
        run("ip", "addr", "add", local, "dev", local_if)
        run("ip", "link", "set", local_if, "up")
        peer.exec("ip", "addr", "add", address, "dev", peer_if)
        peer.exec("ip", "link", "set", peer_if, "up")
        return peer, local_if

    def scratch(self):
        """A temporary directory removed after the test."""
        path = tempfile.mkdtemp(prefix="pktbroker-test-")
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def server(self, *argv, port, address="127.0.0.1", udp=False):
        """Starts a server program (nginx, dnsmasq, ...) in this namespace and waits until it
        listens on `port`; it is killed after the test, its output shown if the test failed."""
        log = open(os.path.join(self.scratch(), "server.log"), "w+")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

        def stop():
            process.kill()
            process.wait()
            log.seek(0)
            if self._outcome is None or not self._outcome.success:
                print(f"--- {argv[0]} output ---\n{log.read()[-3000:]}")
            log.close()

        self.addCleanup(stop)
        if udp:
            wait_for(lambda: f":{port} " in run("ss", "-lunH").stdout or process.poll() is not None,
                     what=f"{argv[0]} to listen on udp {port}")
        else:
            wait_for(lambda: port_open(port, address) or process.poll() is not None,
                     what=f"{argv[0]} to listen on {port}")
        self.assertIsNone(process.poll(), f"{argv[0]} exited early")
        return process

    def nginx(self, files):
        """nginx on 127.0.0.1:80 and [::1]:80 serving `files` ({name: bytes}); returns its root."""
        scratch = self.scratch()
        root = os.path.join(scratch, "www")
        os.makedirs(root)
        write_files(root, files)
        conf = os.path.join(scratch, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=scratch, root=root))
        self.server("nginx", "-c", conf, "-p", scratch, port=80)
        return root

    def vsftpd(self, files, upload=False):
        """Anonymous vsftpd on 127.0.0.1:21 (passive ports 40000-40999) serving `files`; with
        `upload`, anonymous uploads go to incoming/. Returns its root."""
        scratch = self.scratch()
        root, empty = os.path.join(scratch, "root"), os.path.join(scratch, "empty")
        os.makedirs(root)
        os.makedirs(empty)
        os.chmod(scratch, 0o755)  # vsftpd refuses a root others cannot read
        write_files(root, files)
        conf = os.path.join(scratch, "vsftpd.conf")
        with open(conf, "w") as f:
            f.write(VSFTPD_CONF.format(root=root, empty=empty))
            if upload:
                os.makedirs(os.path.join(root, "incoming"))
                os.chmod(os.path.join(root, "incoming"), 0o777)
                f.write("write_enable=YES\nanon_upload_enable=YES\nanon_umask=022\n")
        self.server("vsftpd", conf, port=21)
        return root

    def iptables(self, *args, ipv6=False):
        run("ip6tables" if ipv6 else "iptables", *args)

    def daemon(self, policy, **kwargs):
        return Daemon(self, policy, **kwargs)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    if os.geteuid() != 0:
        print("skipped: needs root")
        sys.exit(SKIP)
    # A terminated run unwinds like Ctrl-C, so the cleanups delete its namespaces.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    unittest.main(verbosity=2)
