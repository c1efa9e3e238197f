#!/usr/bin/env python3
"""The side-by-side benchmark: pktbrokerd scenarios against a bare NFQUEUE program (the
reference) on the same machine, in the same invocation, runs alternating.

Topology: namespace `gen` sends UDP (udp_blast, pinned to CPU 0) over a veth pair to namespace
`sink`, where mangle PREROUTING sends it to NFQUEUE and filter INPUT drops it, so that rule's
counter is the delivered count. The queue's consumer (reference or pktbrokerd and its clients)
is pinned to CPU 1, and so is the sink's receive processing (RPS on its veth): the consumer's CPU
pays for its own queue, PREROUTING, the enqueue and the verdicts, as on a real host, and the
generator's CPU only sends. Each side's capacity comes from a sweep of paced rates, and CPU
per packet is 1 / capacity; each side is also offered 1.5 times its own capacity (overload). Run by scripts/bench, which builds everything
first; see its --help."""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("BUILD_DIR", "build")
GEN, SINK = "pktb-bench-gen", "pktb-bench-sink"
GEN_ADDR, SINK_ADDR = "10.77.0.1", "10.77.0.2"
PORT, ECHO_PORT, DNS_PORT = 9999, 9998, 53
CLIENT_PORTS = 8  # source ports 40000..40007, marked 1..8 in the sink
TICKS = os.sysconf("SC_CLK_TCK")


def run(*args, check=True, ns=None, **kwargs):
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kwargs)


def popen(ns, *args, **kwargs):
    return subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def binary(name):
    for path in (f"{BUILD}/bench/{name}", f"{BUILD}/broker/{name}", f"{BUILD}/replay/{name}",
                 f"{BUILD}/client/{name}", f"{BUILD}/client/nfq-compat/{name}",
                 f"{BUILD}/test/netns/{name}"):
        if os.path.exists(path):
            return os.path.abspath(path)
    raise SystemExit(f"run_bench: {name} is not built in {BUILD}/ (run scripts/bench)")


class Topology:
    def __enter__(self):
        self.down()
        run("ip", "netns", "add", GEN)
        run("ip", "netns", "add", SINK)
        run("ip", "link", "add", "pktbg0", "type", "veth", "peer", "name", "pktbs0")
        run("ip", "link", "set", "pktbg0", "netns", GEN)
        run("ip", "link", "set", "pktbs0", "netns", SINK)
        for ns, dev, addr in ((GEN, "pktbg0", GEN_ADDR), (SINK, "pktbs0", SINK_ADDR)):
            run("ip", "addr", "add", f"{addr}/24", "dev", dev, ns=ns)
            run("ip", "link", "set", dev, "up", ns=ns)
            run("ip", "link", "set", "lo", "up", ns=ns)
        # Static neighbours: no ARP in the measurements.
        mac = lambda ns, dev: re.search(r"link/ether (\S+)", run("ip", "link", "show", dev,
                                                                 ns=ns).stdout).group(1)
        run("ip", "neigh", "add", SINK_ADDR, "lladdr", mac(SINK, "pktbs0"), "dev", "pktbg0",
            ns=GEN)
        run("ip", "neigh", "add", GEN_ADDR, "lladdr", mac(GEN, "pktbg0"), "dev", "pktbs0", ns=SINK)
        # 20,000 short connections per replay round: ports enough, TIME_WAIT reused.
        run("sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535", ns=GEN)
        run("sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1", ns=GEN)
        for i in range(CLIENT_PORTS):  # scenario 4 dispatches by mark
            run("iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "udp", "--sport",
                str(40000 + i), "-j", "MARK", "--set-mark", str(i + 1), ns=SINK)
        for port in (PORT, DNS_PORT):
            run("iptables", "-A", "INPUT", "-p", "udp", "--dport", str(port), "-j", "DROP",
                ns=SINK)
        # The sink's receive processing on the consumer's CPU (1): `ip netns exec` mounts the
        # namespace's own /sys, so this names the sink's device.
        run("sh", "-c", "echo 2 > /sys/class/net/pktbs0/queues/rx-0/rps_cpus", ns=SINK)
        return self

    def __exit__(self, *exc):
        self.down()

    @staticmethod
    def down():
        for ns in (GEN, SINK):
            if os.path.exists(f"/run/netns/{ns}"):
                for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                run("ip", "netns", "del", ns, check=False)

    @staticmethod
    def queue(spec, protocol="udp", ports=f"{PORT},{ECHO_PORT},{DNS_PORT}"):
        """Sends the bench traffic to NFQUEUE: spec is '0', '0:1' (balance) or None (no queue)."""
        run("iptables", "-t", "mangle", "-D", "PREROUTING", "-j", "BENCHQ", ns=SINK, check=False)
        run("iptables", "-t", "mangle", "-F", "BENCHQ", ns=SINK, check=False)
        run("iptables", "-t", "mangle", "-X", "BENCHQ", ns=SINK, check=False)
        if spec is None:
            return
        run("iptables", "-t", "mangle", "-N", "BENCHQ", ns=SINK)
        target = (["--queue-balance", spec] if ":" in spec else ["--queue-num", spec])
        run("iptables", "-t", "mangle", "-A", "BENCHQ", "-p", protocol, "-m", "multiport",
            "--dports", ports, "-j", "NFQUEUE", *target, ns=SINK)
        run("iptables", "-t", "mangle", "-A", "PREROUTING", "-j", "BENCHQ", ns=SINK)


def sink_counters(port):
    """The delivered count (the INPUT drop rule's packets for `port`) and the kernel queue drops
    (queue_dropped + user_dropped over the sink's queues), read in one call."""
    out = run("sh", "-c", "iptables -L INPUT -v -x -n && echo == && "
              "{ cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null || true; }", ns=SINK).stdout
    rules, queues = out.split("==\n")
    got = next((int(line.split()[0]) for line in rules.splitlines() if f"dpt:{port}" in line), 0)
    drops = sum(int(f[5]) + int(f[6]) for f in (l.split() for l in queues.splitlines())
                if len(f) > 6)
    return got, drops


def cpu_busy():
    """Busy and total jiffies of CPUs 0 and 1, from /proc/stat."""
    busy = {}
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] in ("cpu0", "cpu1"):
                values = list(map(int, fields[1:8]))
                busy[fields[0]] = (sum(values) - values[3] - values[4], sum(values))
    return busy


def idle_share(before, after, cpu):
    busy = after[cpu][0] - before[cpu][0]
    total = after[cpu][1] - before[cpu][1]
    return 1 - busy / total if total else 0


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except FileNotFoundError:
            pass
    return total / TICKS


# The reference binds the scenario's queues plus this, so that both sides' consumers run side by
# side and the queue rule alone picks which one a run measures.
REFERENCE_QUEUES = 10


class Consumer:
    """The queue's consumer for one scenario: the reference, or pktbrokerd plus clients."""

    def __init__(self, name, scenario, workdir):
        self.name, self.scenario, self.workdir = name, scenario, workdir
        self.processes = []

    def start(self):
        s = self.scenario
        # A libnetfilter_queue program (scenario "program") is the reference bound to the queue
        # itself, and the client through the broker with the nfq shim preloaded.
        quiet = dict(os.environ, NFQ_TOOL_QUIET="1")
        if self.runs_reference():
            # A hop scenario measures the reference with --hop against the reference.
            hop = ["--hop", str(s["hops"])] if self.name != "reference" else []
            for queue in s.get("queues", [0]):
                queue += REFERENCE_QUEUES if self.name == "reference" else 0
                argv = ([binary(s["program"]), str(queue), "accept"] if s.get("program") else
                        [binary("nfq_reference"), "--queue", str(queue),
                         *s.get("reference_args", []), *hop])
                self.processes.append(popen(SINK, "taskset", "-c", "1", *argv, env=quiet))
            time.sleep(0.3)
        else:
            policy = os.path.join(self.workdir, "policy.yaml")
            socket_path = os.path.join(self.workdir, "broker.sock")
            with open(policy, "w") as f:
                f.write(s["policy"].replace("SOCKET", socket_path))
            env = dict(os.environ, PKTBROKER_PLUGIN_PATH=os.path.abspath(f"{BUILD}/plugins"))
            broker = popen(SINK, "taskset", "-c", "1", binary("pktbrokerd"), "--config", policy,
                           "--foreground", "--log-level", "warn", "--threads",
                           str(s.get("threads", 1)), env=env)
            self.processes.append(broker)
            for _ in range(100):
                if os.path.exists(socket_path) or broker.poll() is not None:
                    break
                time.sleep(0.05)
            if broker.poll() is not None:
                raise SystemExit(f"pktbrokerd exited: {broker.stderr.read()}")
            for mode, selector in s.get("clients", []):
                client = popen(SINK, "chrt", "--batch", "0", "taskset", "-c",
                               str(s.get("client_cpu", 1)), binary("bench_client"), socket_path,
                               mode, selector, *s.get("client_args", []))
                if client.stdout.readline().strip() != "ready":
                    raise SystemExit(f"bench_client failed: {client.stderr.read()}")
                self.processes.append(client)
            if s.get("program"):
                env = dict(quiet, LD_PRELOAD=binary("libpktbroker-nfq.so"),
                           PKTBROKER_SOCKET=socket_path)
                client = popen(SINK, "chrt", "--batch", "0", "taskset", "-c", "1",
                               binary(s["program"]), "0", "accept", env=env)
                if client.stdout.readline().strip() != "ready":
                    raise SystemExit(f"{s['program']} through the shim failed: "
                                     f"{client.stderr.read()}")
                self.processes.append(client)
        for p in self.processes:
            if p.poll() is not None:
                raise SystemExit(f"{self.name} consumer exited: {p.stderr.read()}")

    def runs_reference(self):
        """True when this side's consumer is nfq_reference (the reference, or a hop scenario's)."""
        return self.name == "reference" or bool(self.scenario.get("hops"))

    def sleeps(self):
        """Each consumer process's voluntary context switches so far (a sleep each), its threads
        and children included: the broker's or the reference's first, then the clients'."""
        return [process_sleeps(p.pid) for p in self.processes]  # `ip netns exec` execs in place

    def packets_per_verdict_send(self):
        """Packets per verdict sendmsg over the consumer's life (pktbrokerd, while running)."""
        out = run(binary("pktbrokerctl"), "--socket=" + os.path.join(self.workdir, "broker.sock"),
                  "stats", "--json", ns=SINK, check=False)
        if out.returncode != 0:
            return None
        stats = json.loads(out.stdout)
        queues = [v for k, v in stats.items() if k.startswith("queue ")]
        sends = sum(q.get("verdict_sends", 0) for q in queues)
        return sum(q.get("packets", 0) for q in queues) / sends if sends else None

    def stop(self):
        """Stops the consumer; returns the packets per verdict send."""
        per_send = None
        if not self.runs_reference() and not self.scenario.get("program"):
            per_send = self.packets_per_verdict_send()
        for p in self.processes:
            p.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.runs_reference() and not self.scenario.get("program"):
            counts = [re.search(r"packets=(\d+) batches=(\d+)", p.stdout.read() or "")
                      for p in self.processes]
            packets = sum(int(m.group(1)) for m in counts if m)
            batches = sum(int(m.group(2)) for m in counts if m)
            per_send = packets / batches if batches else None
        self.processes = []
        return per_send


def blast(rate, seconds, scenario):
    args = ["taskset", "-c", "0", binary("udp_blast"), "--dst", SINK_ADDR, "--rate", str(rate),
            "--duration", str(seconds), "--src-port-spread", str(CLIENT_PORTS)]
    if scenario.get("payload_file"):
        args += ["--port", str(DNS_PORT), "--payload-file", scenario["payload_file"]]
    else:
        args += ["--port", str(PORT), "--size", str(scenario.get("size", 64))]
    out = run(*args, ns=GEN).stdout
    return int(re.search(r"sent=(\d+)", out).group(1))


def measure(scenario, rate, seconds):
    """One paced run through whichever consumer the queue rule names."""
    port = DNS_PORT if scenario.get("payload_file") else PORT
    before, drops_before = sink_counters(port)
    busy_before = cpu_busy()
    sent = blast(rate, seconds, scenario)
    busy_after = cpu_busy()
    time.sleep(0.2)  # the tail of the queue (8,192 packets at most: 90 ms at 91k packets/s)
    after, drops_after = sink_counters(port)
    got = after - before
    return {"offered_pps": sent / seconds, "sent": sent, "delivered": got, "pps": got / seconds,
            "kernel_drops": drops_after - drops_before,
            "generator_idle": idle_share(busy_before, busy_after, "cpu0"),
            "consumer_idle": idle_share(busy_before, busy_after, "cpu1"),
            "loss": 1 - got / sent if sent else 0}


def latency():
    """Round trips from the generator's CPU (the consumer's CPU runs the queue and the echo)."""
    out = run("taskset", "-c", "0", binary("udp_echo_latency"), "--client", SINK_ADDR,
              str(ECHO_PORT), "--count",
              "2000", "--interval-us", "300", ns=GEN).stdout
    values = dict(kv.split("=") for kv in out.split())
    return {"p50_us": int(values["p50_us"]), "p99_us": int(values["p99_us"]),
            "lost": int(values["lost"])}


def hop_floor(rounds):
    """The least a client process on the consumer's CPU can add to a round trip, paced like the
    latency probe: median p50/p99 over the rounds."""
    runs = []
    for _ in range(rounds):
        out = run(binary("hop_floor"), "--cpu", "1", "--count", "2000", "--interval-us",
                  "300").stdout
        runs.append({k: float(v) for k, v in (kv.split("=") for kv in out.split())})
    return {key: statistics.median(r[key] for r in runs) for key in ("p50_us", "p99_us")}


OVERLOAD = 1.5  # the overload runs offer each side this many times its own capacity


def queue_for(side, scenario):
    """The queue rule's spec for one side: '0', or '0:1' with queue-balance; None for no queue."""
    if side is None:
        return None
    offset = REFERENCE_QUEUES if side == "reference" else 0
    return ":".join(str(int(q) + offset) for q in scenario.get("queue", "0").split(":"))


def sweep(sides, probe, start, step, order):
    """Each side's capacity: the best of paced probes (probe(side, rate) -> measure()'s dict),
    the sides probing in turn. Each side starts at start[side]; while none of its probes has
    kept up (95% of the offer delivered) it steps down by a fifth, so that an overloaded first
    probe's collapsed delivery never stands for its capacity; then it rises by `step` until a
    probe falls behind. Returns each side's best probe."""
    best, rate = {side: None for side in sides}, dict(start)
    kept_up, rising = set(), set(sides)
    while rising:
        for side in order:
            if side not in rising:
                continue
            asked = rate[side]
            result = probe(side, asked)
            if best[side] is None or result["pps"] > best[side]["pps"]:
                best[side] = result
            if result["pps"] >= 0.95 * result["offered_pps"]:
                kept_up.add(side)
                rate[side] = int(rate[side] * step)
            elif side in kept_up or rate[side] < 20_000:
                rising.discard(side)
            else:
                rate[side] = int(rate[side] * 0.8)
            if result["offered_pps"] < 0.95 * asked or rate[side] > 5_000_000:
                rising.discard(side)  # the generator, not the consumer, is the limit
    return best


def scenario_runs(name, scenario, args, workdir):
    """Each side's capacity (and so its CPU per packet), the delivered rate under overload, the
    loss-free rate and latency. Both sides' consumers run for
    the whole scenario, each on its own queues, and every measurement alternates between them
    run by run (the queue rule switches), so that the machine's drift hits both alike."""
    print(f"== {name}", flush=True)
    sides = ("reference", "broker")
    consumers = {}

    def both(measurement, order):
        """measurement(side) for each side in turn, in the given order, through its consumer."""
        results = {}
        for side in order:
            Topology.queue(queue_for(side, scenario))
            results[side] = measurement(side)
        return results

    loss_free = {side: 0 for side in sides}  # the highest probed rate with less than 0.1% loss

    def probe(side, rate):
        """One paced probe through a side's consumer; keeps its loss-free rate."""
        Topology.queue(queue_for(side, scenario))
        result = measure(scenario, rate, args.probe_seconds)
        if result["loss"] < 0.001:
            loss_free[side] = max(loss_free[side], round(result["offered_pps"]))
        return result

    try:
        for side in sides:
            consumers[side] = Consumer(side, scenario, workdir)
            consumers[side].start()
        # A coarse sweep sets where each round's finer one starts.
        coarse = {side: best["pps"] for side, best in
                  sweep(sides, probe, {side: 150_000 for side in sides}, 1.3, sides).items()}
        print(f"   coarse capacity: reference {coarse['reference']:,.0f} pps, pktbrokerd "
              f"{coarse['broker']:,.0f} pps", flush=True)
        runs = {side: [] for side in sides}
        baselines, estimate = [], dict(coarse)
        for round_ in range(args.rounds):
            order = sides if round_ % 2 == 0 else sides[::-1]  # neither side always goes first
            Topology.queue(None)
            baselines.append(latency())
            best = sweep(sides, probe, {side: int(0.95 * estimate[side]) for side in sides}, 1.04,
                         order)
            capacities = {side: best[side]["pps"] for side in sides}
            estimate = capacities

            def overload_run(side):
                """Overload, with the sleeps per 1,000 delivered packets of each process."""
                before = consumers[side].sleeps()
                result = measure(scenario, int(OVERLOAD * capacities[side]), args.seconds)
                after = consumers[side].sleeps()
                result["sleeps_per_kpacket"] = [1000 * (a - b) / max(result["delivered"], 1)
                                                for a, b in zip(after, before)]
                return result

            overload = both(overload_run, order)
            latencies = both(lambda side: latency(), order)
            for side in sides:
                r = {"capacity_pps": capacities[side],
                     "idle_at_capacity": best[side]["consumer_idle"],
                     "overload": overload[side], "latency": latencies[side]}
                runs[side].append(r)
                o = r["overload"]
                print(f"   {side:9} round {round_ + 1}: capacity {r['capacity_pps']:>8.0f} pps "
                      f"({1e6 / r['capacity_pps']:.2f} us a packet, consumer CPU "
                      f"{r['idle_at_capacity']:.0%} idle); offered "
                      f"{o['offered_pps']:.0f} (generator {o['generator_idle']:.0%} idle) delivers "
                      f"{o['pps']:.0f} with {o['kernel_drops']} kernel queue drops; p99 "
                      f"{r['latency']['p99_us']} us (no queue: {baselines[-1]['p99_us']} us); "
                      f"sleeps a 1,000 packets then {sleeps_text(o['sleeps_per_kpacket'])}",
                      flush=True)
    finally:
        per_send = {side: consumer.stop() for side, consumer in consumers.items()}
    median = statistics.median
    summary = {"baseline_latency": median_latency(baselines), "baseline_runs": baselines,
               "coarse_capacity": coarse,
               "description": scenario["description"]}
    for side in sides:
        rs = runs[side]
        summary[side] = {
            "pps": median(r["capacity_pps"] for r in rs),
            # At capacity the consumer's CPU never idles: its cost per packet is 1 / capacity.
            "us_per_packet": 1e6 / median(r["capacity_pps"] for r in rs),
            "idle_at_capacity": max(r["idle_at_capacity"] for r in rs),
            "overload_offered_pps": median(r["overload"]["offered_pps"] for r in rs),
            "overload_pps": median(r["overload"]["pps"] for r in rs),
            "overload_share": median(r["overload"]["pps"] / r["capacity_pps"] for r in rs),
            "overload_drops": median(r["overload"]["kernel_drops"] for r in rs),
            "generator_idle": median(r["overload"]["generator_idle"] for r in rs),
            "packets_per_verdict_send": per_send[side] or 0,
            "sleeps_per_kpacket": [median(values) for values in
                                   zip(*(r["overload"]["sleeps_per_kpacket"] for r in rs))],
            "loss_free_pps": loss_free[side],
            "latency": median_latency([r["latency"] for r in rs]),
            "added_p99_us": median(r["latency"]["p99_us"] - b["p99_us"]
                                   for r, b in zip(rs, baselines)),
            "runs": rs,
        }
    ref, broker = summary["reference"], summary["broker"]
    summary["pps_ratio"] = broker["pps"] / ref["pps"]
    summary["pps_ratios"] = [b["capacity_pps"] / r["capacity_pps"]
                             for b, r in zip(runs["broker"], runs["reference"])]
    return summary


def process_sleeps(pid):
    """Voluntary context switches of every thread of `pid` and of its descendants."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                total += int(re.search(r"voluntary_ctxt_switches:\s+(\d+)", f.read()).group(1))
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = f.read().split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        total += sum(process_sleeps(int(child)) for child in children)
    return total


def sleeps_text(per_process):
    """'12' for one process, '3 + 40' for a broker and its client."""
    return " + ".join(f"{x:.0f}" for x in per_process)


def median_latency(runs):
    return {key: statistics.median(r[key] for r in runs) for key in ("p50_us", "p99_us", "lost")}


def tcp_bulk(args, workdir):
    """Gbit/s of one iperf3 stream through the queue: none, the reference, pktbrokerd with and
    without GSO."""
    results = {}
    cases = [("no queue", None, None), ("reference", "reference", None),
             ("pktbrokerd gso", "broker", True), ("pktbrokerd no gso", "broker", False)]
    for label, side, gso in cases:
        server = popen(SINK, "iperf3", "-s", "-1", "-p", "5201")  # one test, then it exits
        for _ in range(100):
            if ":5201 " in run("ss", "-Hltn", ns=SINK).stdout:
                break
            time.sleep(0.02)
        Topology.queue(queue_for(side, {}), "tcp", "5201")
        consumer = None
        if side:
            scenario = {"policy": POLICY_HEAD.replace("GSO", "true" if gso else "false") +
                        "rules: []\n"}
            consumer = Consumer(side, scenario, workdir)
            consumer.start()
        try:
            report = json.loads(run("iperf3", "-c", SINK_ADDR, "-p", "5201", "-t",
                                    str(args.seconds), "-J", ns=GEN, check=False).stdout or "{}")
        finally:
            if consumer:
                consumer.stop()
            server.kill()
            server.wait()
        bits = report.get("end", {}).get("sum_received", {}).get("bits_per_second")
        results[label] = round(bits / 1e9, 2) if bits else None
        print(f"   tcp bulk, {label:18}: {results[label]} Gbit/s "
              f"{report.get('error', '')}", flush=True)
    Topology.queue(None)
    return results


NGINX_CONF = """daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log stderr;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{ listen {addr}:80 backlog=4096; location / {{ root {dir}; }} }}
}}
"""


def replay_bench(args, workdir):
    """pktreplay replaying 10,000 one-request HTTP flows against nginx, side by side with ab
    doing the same 10,000 requests (one connection each, 64 at once)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test",
                                    "netns"))
    import pcap_writer as pw
    with open(os.path.join(workdir, "index.html"), "w") as f:
        f.write("hello\n")
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=workdir, addr=SINK_ADDR))
    nginx = popen(SINK, "taskset", "-c", "1", "nginx", "-c", conf, "-p", workdir)
    capture = os.path.join(workdir, "10k.pcap")
    packets = []
    for i in range(10_000):
        c = pw.TcpConversation(f"10.1.{i // 250}.{i % 250 + 1}", 20000 + i % 40000, "10.0.0.2",
                               80, time=i * 0.0001)
        c.handshake().client_says(b"GET /index.html HTTP/1.1\r\nHost: bench\r\n\r\n")
        c.server_says(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n").close()
        packets += c.packets
    packets.sort(key=lambda p: p[0])
    pw.write_pcap(capture, packets)
    env = dict(os.environ, PKTBROKER_PLUGIN_PATH=os.path.abspath(f"{BUILD}/plugins"))
    replays, abs_ = [], []
    try:
        time.sleep(0.3)
        for _ in range(args.rounds):
            out = subprocess.run(["ip", "netns", "exec", GEN, "taskset", "-c", "0", "/usr/bin/time",
                                  "-f", "maxrss_kib=%M", binary("pktreplay"), capture, "--target",
                                  SINK_ADDR, "--concurrency", "64", "--json"],
                                 capture_output=True, text=True, env=env)
            report = json.loads(out.stdout)
            flows = report["flows"]
            complete = sum(1 for f in flows if f["status"] == "complete")
            elapsed = report["summary"]["elapsed_s"]
            moved = sum(f["bytes_sent"] + f["bytes_received"] for f in flows)
            rss = int(re.search(r"maxrss_kib=(\d+)", out.stderr).group(1))
            replays.append({"flows_per_s": len(flows) / elapsed, "bytes_per_s": moved / elapsed,
                            "complete": complete, "maxrss_mib": round(rss / 1024, 1)})
            ab = run("taskset", "-c", "0", "ab", "-q", "-n", "10000", "-c", "64",
                     f"http://{SINK_ADDR}/index.html", ns=GEN).stdout
            abs_.append(float(re.search(r"Requests per second:\s+([\d.]+)", ab).group(1)))
            print(f"   pktreplay {replays[-1]['flows_per_s']:8.0f} flows/s "
                  f"({complete} of {len(flows)} complete, {replays[-1]['maxrss_mib']} MiB); "
                  f"ab {abs_[-1]:8.0f} requests/s", flush=True)
    finally:
        nginx.kill()
    best = {k: statistics.median(r[k] for r in replays) for k in replays[0]}
    return {**best, "ab_requests_per_s": statistics.median(abs_),
            "ratio": statistics.median(r["flows_per_s"] for r in replays) /
            statistics.median(abs_)}


HTTP_SIDES = ("no queue", "reference", "pktbrokerd", "pktbrokerd + http plugin")


def http_bench(args, workdir):
    """ab against nginx in the sink namespace (over loopback, both directions of port 80 queued
    on OUTPUT), with pktbrokerd's default queue settings (whole packets, uid/gid asked for,
    fail-open; this kernel sends no conntrack state), the reference set alike: requests per second with no queue, through the reference, through pktbrokerd, and
    through pktbrokerd with the http plugin inspecting every request; a new connection per
    request, then keep-alive. nginx and ab run on CPU 0, the consumers on CPU 1; all sides'
    consumers run side by side and the queue rule picks one, run by run."""
    with open(os.path.join(workdir, "index.html"), "w") as f:
        f.write("hello\n")
    conf = os.path.join(workdir, "nginx-http.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=workdir, addr=SINK_ADDR))
    default_queue = "broker:\n  queues: [{num: NUM}]\n  default_verdict: accept\nsocket: {path: SOCKET}\n"
    scenarios_ = {
        "reference": {"queues": [0], "reference_args": ["--copy-range", "65535", "--uid-gid", "--fail-open"]},
        "pktbrokerd": {"policy": default_queue.replace("NUM", "0") + "rules: []\n"},
        "pktbrokerd + http plugin": {
            "policy": default_queue.replace("NUM", "1") + HTTP_PLUGIN_RULES},
    }
    queues = {"no queue": None, "reference": REFERENCE_QUEUES, "pktbrokerd": 0,
              "pktbrokerd + http plugin": 1}

    def route(side):
        run("iptables", "-D", "OUTPUT", "-j", "BENCHHTTP", ns=SINK, check=False)
        run("iptables", "-F", "BENCHHTTP", ns=SINK, check=False)
        run("iptables", "-X", "BENCHHTTP", ns=SINK, check=False)
        if queues.get(side) is None:
            return
        run("iptables", "-N", "BENCHHTTP", ns=SINK)
        for direction in ("--dport", "--sport"):
            run("iptables", "-A", "BENCHHTTP", "-p", "tcp", direction, "80", "-j", "NFQUEUE",
                "--queue-num", str(queues[side]), ns=SINK)
        run("iptables", "-A", "OUTPUT", "-j", "BENCHHTTP", ns=SINK)

    def ab(keep_alive):
        argv = ["taskset", "-c", "0", "ab", "-q", "-n", "40000" if keep_alive else "10000",
                "-c", "64", *(["-k"] if keep_alive else []), f"http://{SINK_ADDR}/index.html"]
        out = run(*argv, ns=SINK).stdout
        failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))
        if failed:
            raise SystemExit(f"run_bench: ab saw {failed} failed requests: {out}")
        return float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))

    nginx = popen(SINK, "taskset", "-c", "0", "nginx", "-c", conf, "-p", workdir)
    consumers = {}
    results = {mode: {side: [] for side in HTTP_SIDES} for mode in ("new", "keep-alive")}
    try:
        for side, scenario in scenarios_.items():
            side_dir = os.path.join(workdir, side.replace(" ", "_").replace("+", ""))
            os.makedirs(side_dir, exist_ok=True)
            consumers[side] = Consumer("reference" if side == "reference" else "broker",
                                       scenario, side_dir)
            consumers[side].start()
        time.sleep(0.3)
        for round_ in range(args.rounds):
            for mode in results:
                for side in HTTP_SIDES if round_ % 2 == 0 else HTTP_SIDES[::-1]:
                    route(side)
                    results[mode][side].append(ab(mode == "keep-alive"))
                print(f"   round {round_ + 1}, {mode}: " + ", ".join(
                    f"{side} {results[mode][side][-1]:,.0f}" for side in HTTP_SIDES) +
                    " requests/s", flush=True)
    finally:
        route(None)
        for consumer in consumers.values():
            consumer.stop()
        nginx.kill()
    summary = {}
    for mode, sides in results.items():
        summary[mode] = {side: statistics.median(v) for side, v in sides.items()}
        for side in ("pktbrokerd", "pktbrokerd + http plugin"):
            summary[mode][side + " ratios"] = [b / r for b, r in zip(sides[side],
                                                                      sides["reference"])]
    return summary


# The http plugin as a user would load it: every request head inspected, admin paths dropped.
HTTP_PLUGIN_RULES = """plugins: [{name: http}]
rules:
  - {name: no-admin, match: {http.path: "/admin*"}, verdict: drop}
  - {name: web, match: {proto: tcp, dport: 80}, verdict: {inspect: [http], fallback: accept}}
"""


# The reference's queue settings: no uid/gid, no conntrack (it asks for GSO only).
POLICY_HEAD = """broker:
  queues: [{num: 0, fail_open: false, max_len: 8192, copy_range: 128, gso: GSO, uid_gid: false,
            conntrack: false}]
  default_verdict: accept
socket: {path: SOCKET}
"""

TWENTY_RULES = "".join(
    f"  - {{name: miss{i}, match: {{proto: tcp, dport: {1000 + i}}}, verdict: drop}}\n"
    if i % 2 else
    f"  - {{name: miss{i}, match: {{proto: udp, dst: 10.{i}.0.0/16}}, verdict: drop}}\n"
    for i in range(19)) + f"  - {{name: bench, match: {{proto: udp, dport: [{PORT}, {ECHO_PORT}]}}, verdict: accept}}\n"

SELECT = f"{{proto: udp, dport: [{PORT}, {ECHO_PORT}]}}"


def events_bench(args, workdir):
    """Drops per second at capacity with drops logged at 100,000 a second (the rest suppressed)
    against the same policy without an event log (the target: >= 0.9x). Both sides' brokers drop
    all bench traffic by a rule and run side by side, each on its own queue; every round sweeps
    paced probes, the sides taking turns, and a probe's rate is its broker's dropped count."""
    drop_rule = (f"rules:\n  - {{name: bench-drop, match: {{proto: udp, dport: {PORT}}}, "
                 f"verdict: drop}}\n")
    log = os.path.join(workdir, "eve.json")
    queues = {"events off": 0, "events on": REFERENCE_QUEUES}
    consumers = {}
    for side, queue in queues.items():
        policy = (POLICY_HEAD.replace("GSO", "true")
                  .replace("queues: [{num: 0,", f"queues: [{{num: {queue},")) + drop_rule
        if side == "events on":
            policy += f"events: {{file: {log}, types: [drop], rate_limit: 100000}}\n"
        home = os.path.join(workdir, side.replace(" ", "-"))
        os.makedirs(home, exist_ok=True)
        consumers[side] = Consumer("broker", {"policy": policy}, home)

    def dropped(side):
        stats = json.loads(run(binary("pktbrokerctl"), "--socket=" + os.path.join(
            consumers[side].workdir, "broker.sock"), "stats", "--json", ns=SINK).stdout)
        return stats[f"queue {queues[side]}"]["dropped"], stats.get("events", {})

    def probe(side, rate):
        Topology.queue(str(queues[side]))
        before, _ = dropped(side)
        sent = blast(rate, args.probe_seconds, {})
        time.sleep(0.2)
        after, _ = dropped(side)
        if os.path.exists(log):
            os.truncate(log, 0)  # the broker appends; the lines are not needed, the disk is
        return {"offered_pps": sent / args.probe_seconds,
                "pps": (after - before) / args.probe_seconds}

    sides = tuple(queues)
    runs = {side: [] for side in sides}
    try:
        for consumer in consumers.values():
            consumer.start()
        estimate = {side: best["pps"] for side, best in
                    sweep(sides, probe, {side: 150_000 for side in sides}, 1.3, sides).items()}
        for round_ in range(args.rounds):
            order = sides if round_ % 2 == 0 else sides[::-1]
            best = sweep(sides, probe, {side: int(0.95 * estimate[side]) for side in sides}, 1.04,
                         order)
            estimate = {side: best[side]["pps"] for side in sides}
            for side in sides:
                events = dropped(side)[1]
                runs[side].append({"pps": estimate[side], "events": events})
                print(f"   {side:10} round {round_ + 1}: {estimate[side]:>10.0f} drops/s at "
                      f"capacity{'' if not events else ', events ' + json.dumps(events)}",
                      flush=True)
    finally:
        for consumer in consumers.values():
            consumer.stop()
        Topology.queue(None)
    summary = {side: {"pps": statistics.median(r["pps"] for r in results), "runs": results}
               for side, results in runs.items()}
    summary["ratio"] = summary["events on"]["pps"] / summary["events off"]["pps"]
    summary["ratios"] = [on["pps"] / off["pps"]
                         for on, off in zip(runs["events on"], runs["events off"])]
    return summary


CONNECT_PORT = 9997


def identity_bench(args, workdir):
    """Per-application rules: what finding each flow's process costs. A queue on the
    generator's OUTPUT takes TCP SYNs to a local server and the UDP blast; pktbrokerd decides
    them by a rule on ports ("plain") or by rules on the sending program's name ("identity",
    with the eBPF programs, and "identity, no eBPF" with sock_diag and /proc). Measured: the
    connect() time of 2,000 connections one after another; 200 connections opened at once by
    20 processes (against the same with no queue at all); and UDP packets per second at
    saturation from 8 flows. Sides alternate, round after round."""
    rules = (f"rules:\n  - {{name: tcp, match: {{proto: tcp, dport: {CONNECT_PORT}MATCH_TCP}}, "
             f"verdict: accept}}\n  - {{name: udp, match: {{proto: udp, dport: {PORT}MATCH_UDP}}, "
             f"verdict: accept}}\n  - {{name: other, match: {{proto: [tcp, udp]}}, verdict: drop}}\n")
    head = POLICY_HEAD.replace("GSO", "true")
    plain = head + rules.replace("MATCH_TCP", "").replace("MATCH_UDP", "")
    identity = head + rules.replace("MATCH_TCP", ", app.name: tcp_connects").replace(
        "MATCH_UDP", ", app.name: udp_blast")
    sides = {"no queue": None, "plain": plain, "identity": identity,
             "identity, no eBPF": identity.replace("default_verdict: accept",
                                                   "default_verdict: accept\n  identity: {bpf: false}")}
    socket_path = os.path.join(workdir, "identity.sock")
    Topology.queue(None)  # the sink takes the blast unqueued: only the generator's queue counts
    server = popen(GEN, "taskset", "-c", "1", binary("tcp_connects"), "--listen", str(CONNECT_PORT))
    queue_rules = [["-p", "tcp", "--syn", "--dport", str(CONNECT_PORT)],
                   ["-p", "udp", "--dport", str(PORT)]]

    def queue(on):
        for rule in queue_rules:
            run("iptables", "-D" if not on else "-A", "OUTPUT", *rule, "-j", "NFQUEUE",
                "--queue-num", "0", ns=GEN, check=on)

    def counters():
        stats = json.loads(run(binary("pktbrokerctl"), f"--socket={socket_path}", "stats",
                               "--json", ns=GEN).stdout)
        queue0 = stats["queue 0"]
        return {k: queue0.get(k, 0) for k in ("identity_known", "identity_waits",
                                              "identity_unknown", "identity_timeouts", "dropped")}

    runs = {side: [] for side in sides}
    time.sleep(0.2)
    try:
        for round_ in range(args.rounds):
            for side, policy in sides.items():
                broker = None
                if policy is not None:
                    path = os.path.join(workdir, "identity.yaml")
                    with open(path, "w") as f:
                        f.write(policy.replace("SOCKET", socket_path))
                    broker = popen(GEN, "taskset", "-c", "1", binary("pktbrokerd"), "--config",
                                   path, "--foreground", "--log-level", "warn", "--threads", "1")
                    for _ in range(100):
                        if os.path.exists(socket_path) or broker.poll() is not None:
                            break
                        time.sleep(0.05)
                    if broker.poll() is not None:
                        raise SystemExit(f"pktbrokerd exited: {broker.stderr.read()}")
                    queue(True)
                try:
                    one = dict(kv.split("=") for kv in run(
                        "taskset", "-c", "0", binary("tcp_connects"), "--port", str(CONNECT_PORT),
                        "--count", "2000", ns=GEN).stdout.split())
                    burst = dict(kv.split("=") for kv in run(
                        "taskset", "-c", "0", binary("tcp_connects"), "--port", str(CONNECT_PORT),
                        "--programs", "20", "--each", "10", ns=GEN).stdout.split())
                    before = sink_counters(PORT)[0]
                    blast(0, args.seconds, {})
                    time.sleep(0.2)
                    result = {"connect_p50_us": float(one["p50_us"]),
                              "connect_p99_us": float(one["p99_us"]),
                              "burst_ms": float(burst["all_ms"]),
                              "udp_pps": (sink_counters(PORT)[0] - before) / args.seconds}
                    if broker is not None:
                        result["counters"] = counters()
                    runs[side].append(result)
                    print(f"   {side:18} round {round_ + 1}: connect p50 {result['connect_p50_us']:6.1f} "
                          f"p99 {result['connect_p99_us']:6.1f} us, 200 at once {result['burst_ms']:6.1f} ms, "
                          f"udp {result['udp_pps']:>9.0f} pps {result.get('counters', '')}", flush=True)
                finally:
                    if broker is not None:
                        queue(False)
                        broker.send_signal(signal.SIGTERM)
                        broker.wait(timeout=10)
    finally:
        server.kill()
        server.wait()
    summary = {}
    for side, results in runs.items():
        summary[side] = {key: statistics.median(r[key] for r in results)
                         for key in ("connect_p50_us", "connect_p99_us", "burst_ms", "udp_pps")}
        summary[side]["runs"] = results
    pair = lambda key, a, b: [x[key] - y[key] for x, y in zip(runs[a], runs[b])]
    summary["identity_cost_p50_us"] = pair("connect_p50_us", "identity", "plain")
    summary["identity_cost_p99_us"] = pair("connect_p99_us", "identity", "plain")
    summary["burst_vs_no_queue"] = [x["burst_ms"] / y["burst_ms"]
                                    for x, y in zip(runs["identity"], runs["no queue"])]
    summary["pps_ratio"] = [x["udp_pps"] / y["udp_pps"]
                            for x, y in zip(runs["identity"], runs["plain"])]
    return summary


CHANNEL_MEMBERS, CHANNEL_FRAMES, CHANNEL_FRAME_SIZE = 8, 200_000, 64


def channel_bench(args, workdir):
    """A broadcast channel with 8 members: frames delivered per second in aggregate, pktbrokerd
    (a backpressure channel: nothing lost) against channel_fanout (one process writing each
    frame to 8 Unix sockets with sendmmsg, blocking when one is full), rounds alternating. The
    fan-out (broker or reference) runs on CPU 1, the sender and the 8 receivers on CPU 0."""
    socket_path = os.path.join(workdir, "channel.sock")
    policy_path = os.path.join(workdir, "channel.yaml")
    with open(policy_path, "w") as f:
        f.write(f"broker:\n  queues: [{{num: 0}}]\nsocket: {{path: {socket_path}}}\n"
                f"channels:\n  - {{name: bench, max_members: 16, queue_length: 4096, "
                f"overflow: backpressure}}\n")
    tool = binary("channel_tool")
    fanout = binary("channel_fanout")
    n, members = CHANNEL_FRAMES, CHANNEL_MEMBERS

    def receivers(argv):
        procs = [subprocess.Popen(["taskset", "-c", "0", *argv], stdout=subprocess.PIPE,
                                  text=True) for _ in range(members)]
        for p in procs:
            line = p.stdout.readline()
            if not (line.startswith("joined") or line.startswith("ready")):
                raise SystemExit(f"run_bench: a channel receiver did not start: {line!r}")
        return procs

    def finish(procs, started, hub_pid):
        counts = []
        for p in procs:
            out = p.stdout.read()
            p.wait(timeout=120)
            counts.append(int(re.search(r"received (\d+)", out).group(1)))
        elapsed = time.monotonic() - started
        return {"fps": sum(counts) / elapsed, "min_member": min(counts),
                "max_member": max(counts), "seconds": elapsed,
                "hub_cpu_ns_per_frame": cpu_seconds([hub_pid]) * 1e9 / max(sum(counts), 1)}

    def broker_round():
        broker = subprocess.Popen(["ip", "netns", "exec", SINK, "taskset", "-c", "1",
                                   binary("pktbrokerd"), "--config", policy_path, "--foreground",
                                   "--threads", "1", "--log-level", "warn"])
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(socket_path) and time.monotonic() < deadline:
                time.sleep(0.05)
            procs = receivers([tool, socket_path, "receive", "bench", str(n), "0", "10000"])
            started = time.monotonic()
            run("taskset", "-c", "0", tool, socket_path, "send", "bench", str(n),
                str(CHANNEL_FRAME_SIZE))
            return finish(procs, started, broker.pid)
        finally:
            broker.terminate()
            broker.wait()

    def reference_round():
        into, out = os.path.join(workdir, "fanout.in"), os.path.join(workdir, "fanout.out")
        hub = subprocess.Popen(["taskset", "-c", "1", fanout, "hub", into, out, str(members)],
                               stdout=subprocess.PIPE, text=True)
        try:
            hub.stdout.readline()
            procs = receivers([fanout, "receive", out, str(n)])
            started = time.monotonic()
            run("taskset", "-c", "0", fanout, "send", into, str(n), str(CHANNEL_FRAME_SIZE))
            return finish(procs, started, hub.pid)
        finally:
            hub.kill()
            hub.wait()

    rounds = {"reference": [], "broker": []}
    for round_ in range(args.rounds):
        for side, one in (("reference", reference_round), ("broker", broker_round)):
            rounds[side].append(one())
            r = rounds[side][-1]
            print(f"   {side:9} round {round_ + 1}: {r['fps']:>10.0f} frames/s delivered "
                  f"(members {r['min_member']}..{r['max_member']} of {n}; fan-out CPU "
                  f"{r['hub_cpu_ns_per_frame']:.0f} ns a delivered frame)", flush=True)
    summary = {side: {"fps": statistics.median(r["fps"] for r in runs), "runs": runs}
               for side, runs in rounds.items()}
    summary["ratio"] = summary["broker"]["fps"] / summary["reference"]["fps"]
    summary["ratios"] = [b["fps"] / r["fps"] for b, r in zip(rounds["broker"], rounds["reference"])]
    return summary


def scenarios(workdir):
    dns_query = os.path.join(workdir, "query.bin")
    with open(dns_query, "wb") as f:  # a query for bench.example. A
        f.write(bytes.fromhex("12340100000100000000000005") + b"bench\x07example\x00\x00\x01\x00\x01")
    head = POLICY_HEAD.replace("GSO", "true")
    return {
        "1 reference accept-all": None,  # the reference column of every scenario
        "2 policy only (20 rules)": {
            "description": "pktbrokerd, 20 rules, the last one matches",
            "policy": head + "rules:\n" + TWENTY_RULES},
        "3 one verdict client": {
            "description": "pktbrokerd + 1 libpktbroker client accepting everything",
            "policy": head + "rules: []\n", "clients": [("verdict", SELECT)]},
        "4 eight clients by mark": {
            "description": "pktbrokerd + 8 clients on marks 1..8 (traffic spread across marks)",
            "policy": head + "rules: []\n",
            "clients": [("verdict", f"{{mark: {i + 1}}}") for i in range(CLIENT_PORTS)]},
        "5 client + 4 observers": {
            "description": "pktbrokerd + 1 verdict client + 4 observers",
            "policy": head + "rules: []\n",
            "clients": [("verdict", SELECT)] + [("observe", SELECT)] * 4},
        "6 dns plugin": {
            "description": "pktbrokerd with the dns plugin inspecting DNS queries",
            "policy": head + "plugins: [{name: dns}]\nrules:\n  - {name: dns, match: {proto: "
                      "udp, dport: 53}, verdict: {inspect: [dns], fallback: accept}}\n",
            "payload_file": dns_query},
        "7 two queues, queue-balance": {
            "description": "two queues (--queue-balance 0:1): pktbrokerd with 2 threads vs 2 "
                           "reference processes",
            "policy": head.replace("queues: [{num: 0,", "queues: [{num: 1, fail_open: false, "
                                   "max_len: 8192, copy_range: 128, uid_gid: false, "
                                   "conntrack: false}, {num: 0,") + "rules: []\n",
            "queue": "0:1", "queues": [0, 1], "threads": 2},
        "8 nfq shim (LD_PRELOAD)": {
            "description": "a libnetfilter_queue program (nfq_classic, accept) through "
                           "pktbrokerd with the nfq shim, against the same program bound to "
                           "the queue",
            "policy": head + "rules: []\n", "program": "nfq_classic"},
        "9 policy only, 1400-byte packets": {
            "description": "scenario 2 with 1400-byte datagrams (128 bytes of each copied)",
            "policy": head + "rules:\n" + TWENTY_RULES, "size": 1400},
        # What handing packets to other processes costs on this machine, with nothing else:
        # not pktbrokerd, so only when --only names them (--only hop).
        "10 reference with one process hop": {
            "description": "the reference handing each batch to a second process and waiting for "
                           "its answer (nfq_reference --hop 1) against the reference",
            "hops": 1, "opt_in": True},
        "11 reference with eight process hops": {
            "description": "the reference handing each batch to 8 processes, an eighth each, and "
                           "waiting for all their answers (nfq_reference --hop 8) against the "
                           "reference",
            "hops": 8, "opt_in": True},
        # libpktbroker's busy-poll, on the broker's CPU and on the other one (the generator's:
        # two CPUs are all there are): --only "one verdict client" runs these with scenario 3.
        "12 one verdict client, busy-poll 50 µs": {
            "description": "scenario 3, the client busy-polling 50 µs before it sleeps",
            "policy": head + "rules: []\n", "clients": [("verdict", SELECT)],
            "client_args": ["--busy-poll", "50"], "opt_in": True},
        "13 one verdict client on CPU 0": {
            "description": "scenario 3 with the client on the generator's CPU (0)",
            "policy": head + "rules: []\n", "clients": [("verdict", SELECT)],
            "client_cpu": 0, "opt_in": True},
        "14 one verdict client on CPU 0, busy-poll 50 µs": {
            "description": "scenario 13, the client busy-polling 50 µs before it sleeps",
            "policy": head + "rules: []\n", "clients": [("verdict", SELECT)],
            "client_cpu": 0, "client_args": ["--busy-poll", "50"], "opt_in": True},
    }


def markdown(results):
    lines = ["| scenario | capacity pps (ref / pktb) | capacity ratio (per round) | µs a packet at "
             "capacity, 1 / capacity (ref / pktb) | consumer CPU idle at capacity, most of the rounds "
             "(ref / pktb) | delivered at 1.5× own "
             "capacity (ref / pktb) | generator idle then (ref / pktb) | packets per verdict send "
             "(ref / pktb) | loss-free pps (ref / pktb) | p50 µs (none / ref / pktb) | p99 µs "
             "(none / ref / pktb) | added p99 µs (ref / pktb) | sleeps a 1,000 packets at 1.5× "
             "capacity (ref / pktb + clients) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rounds = lambda values: ", ".join(f"{x:.2f}" for x in values)
    for name, r in results["scenarios"].items():
        ref, pb, none = r["reference"], r["broker"], r["baseline_latency"]
        lines.append(
            f"| {name} | {ref['pps']:,.0f} / {pb['pps']:,.0f} | {r['pps_ratio']:.2f} "
            f"({rounds(r['pps_ratios'])}) | {ref['us_per_packet']:.2f} / "
            f"{pb['us_per_packet']:.2f} | {ref['idle_at_capacity']:.0%} / "
            f"{pb['idle_at_capacity']:.0%} | {ref['overload_share']:.0%} / "
            f"{pb['overload_share']:.0%} | {ref['generator_idle']:.0%} / "
            f"{pb['generator_idle']:.0%} | {ref['packets_per_verdict_send']:.1f} / "
            f"{pb['packets_per_verdict_send']:.1f} | "
            f"{ref['loss_free_pps']:,} / {pb['loss_free_pps']:,} | "
            f"{none['p50_us']:.0f} / {ref['latency']['p50_us']:.0f} / "
            f"{pb['latency']['p50_us']:.0f} | "
            f"{none['p99_us']:.0f} / {ref['latency']['p99_us']:.0f} / "
            f"{pb['latency']['p99_us']:.0f} | "
            f"{ref['added_p99_us']:.0f} / {pb['added_p99_us']:.0f} | "
            f"{sleeps_text(ref.get('sleeps_per_kpacket', []))} / "
            f"{sleeps_text(pb.get('sleeps_per_kpacket', []))} |")
    lines += ["", "Consumer-bound: the sink's receive processing runs on the consumer's CPU (RPS), "
                  "so the consumer's CPU pays for PREROUTING, the enqueue (and the kernel's drops) "
                  "and the verdicts. Both sides' consumers run side by side on their own queues and "
                  "every measurement alternates between them run by run. Capacity: the most "
                  "delivered in a sweep of paced probes (from 95% of the last estimate, a coarse "
                  "sweep's first, a fifth lower while no probe has kept up, then 4% higher a probe "
                  "until less than 95% is delivered), medians over the rounds; loss-free: the "
                  "highest rate sent in any probe with less than 0.1% loss. µs a packet at "
                  "capacity: 1 / capacity, an upper bound on what one packet costs the consumer's "
                  "CPU (the receive softirq, PREROUTING, the enqueue, the consumer's processes and "
                  "the verdict's reinjection together): the consumer's idle share at capacity is "
                  "shown, and where it is above 0 something besides CPU time also limited the "
                  "rate. (This kernel accounts CPU time by ticks, without IRQ time accounting, "
                  "and its /proc/stat fields need not add up to the wall-clock time: busy time is "
                  "no measure of CPU per packet here.) Overload: each side "
                  "offered 1.5 times its own capacity; the share of that capacity it still "
                  "delivers (the kernel builds each queued packet's message before it finds the "
                  "queue full, so every dropped packet costs the consumer's CPU nearly a queued "
                  "one's softirq work), the generator's idle share then, and how often each "
                  "consumer process slept meanwhile (its voluntary context switches a 1,000 "
                  "delivered packets: each is a wake-up paid later). Client scenarios: "
                  "the bench clients' fallback is drop, so packets pktbrokerd sheds past a "
                  "client's bounds are not counted as delivered.",
              "", "Latency: UDP echo round trips from the generator's CPU, 2,000 at 300 µs "
                  "intervals, in every round without a queue (none), through the reference and "
                  "through pktbrokerd; medians over the rounds; added p99 = the median of each "
                  "round's p99 through the queue minus that round's p99 without one."]
    if any("process hop" in name for name in results["scenarios"]):
        lines += ["", "Process hop scenarios: pktbrokerd's column holds the reference with "
                      "`--hop N`, which hands each batch to N more processes on the consumer's "
                      "CPU over SOCK_SEQPACKET pairs and waits for all their answers before the "
                      "verdict: what handing packets to other processes costs here, with no "
                      "policy, codec or bookkeeping."]
    if "hop_floor" in results:
        hop = results["hop_floor"]
        lines += ["", f"One client hop without a broker (two processes on the consumer's CPU "
                      f"answering each other over a SOCK_SEQPACKET pair, paced the same; "
                      f"`bench/hop_floor.c`): p50 {hop['p50_us']:.1f} µs, "
                      f"p99 {hop['p99_us']:.1f} µs."]
    if "events" in results:
        e = results["events"]
        lines += ["", "| drops logged at 100k/s | drops/s (median) | ratio per round |",
                  "|---|---:|---:|",
                  f"| events off | {e['events off']['pps']:,.0f} | |",
                  f"| events on | {e['events on']['pps']:,.0f} | "
                  f"{', '.join(f'{r:.2f}' for r in e['ratios'])} |",
                  f"| ratio | {e['ratio']:.2f} | |"]
    if "identity" in results:
        i = results["identity"]
        sides = ("no queue", "plain", "identity", "identity, no eBPF")
        fmt = lambda values: ", ".join(f"{v:.1f}" for v in values)
        lines += ["", "| app.* rules (queue on OUTPUT, medians over the rounds) | connect p50 µs | "
                      "connect p99 µs | 200 connections from 20 processes, ms | UDP pps, 8 flows |",
                  "|---|---:|---:|---:|---:|",
                  *[f"| {side} | {i[side]['connect_p50_us']:.1f} | {i[side]['connect_p99_us']:.1f} | "
                    f"{i[side]['burst_ms']:.1f} | {i[side]['udp_pps']:,.0f} |" for side in sides],
                  "", f"Identity cost per new connection (identity − plain, per round): p50 "
                      f"{fmt(i['identity_cost_p50_us'])} µs, p99 {fmt(i['identity_cost_p99_us'])} µs. "
                      f"200 connections at once against no queue: "
                      f"{', '.join(f'{r:.2f}x' for r in i['burst_vs_no_queue'])}. UDP pps with "
                      f"identity against plain: {', '.join(f'{r:.2f}' for r in i['pps_ratio'])}."]
    if "channels" in results:
        c = results["channels"]
        lines += ["", f"| broadcast channel, {CHANNEL_MEMBERS} members, {CHANNEL_FRAMES:,} frames "
                      f"of {CHANNEL_FRAME_SIZE} bytes | frames/s delivered (median) | fewest / most "
                      f"a member got | fan-out CPU ns a frame | ratio per round |",
                  "|---|---:|---:|---:|---:|",
                  *[f"| {label} | {c[side]['fps']:,.0f} | "
                    f"{min(r['min_member'] for r in c[side]['runs']):,} / "
                    f"{max(r['max_member'] for r in c[side]['runs']):,} | "
                    f"{statistics.median(r['hub_cpu_ns_per_frame'] for r in c[side]['runs']):.0f} | "
                    f"{', '.join(f'{x:.2f}' for x in c['ratios']) if side == 'broker' else ''} |"
                    for side, label in (("reference", "channel_fanout (sendmmsg to 8 sockets)"),
                                        ("broker", "pktbrokerd broadcast channel"))],
                  f"| ratio | {c['ratio']:.2f} | | | |"]
    if "http" in results:
        h = results["http"]
        lines += ["", "| ab -c 64 against nginx, default queue settings | " +
                  " | ".join(HTTP_SIDES) + " | pktbrokerd / reference (per round) | "
                  "with the http plugin / reference (per round) |",
                  "|---|" + "---:|" * (len(HTTP_SIDES) + 2)]
        for mode, label in (("new", "requests/s, a new connection each"),
                            ("keep-alive", "requests/s, keep-alive (-k)")):
            m = h[mode]
            ratios = lambda key: ", ".join(f"{x:.2f}" for x in m[key])
            lines.append(f"| {label} | " + " | ".join(f"{m[side]:,.0f}" for side in HTTP_SIDES) +
                         f" | {m['pktbrokerd'] / m['reference']:.2f} ({ratios('pktbrokerd ratios')})"
                         f" | {m['pktbrokerd + http plugin'] / m['reference']:.2f} "
                         f"({ratios('pktbrokerd + http plugin ratios')}) |")
    if "tcp_bulk" in results:
        lines += ["", "| TCP bulk (one iperf3 stream) | Gbit/s |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in results["tcp_bulk"].items()]
    if "replay" in results:
        r = results["replay"]
        lines += ["", "| 10,000 one-request HTTP flows vs nginx | flows/s | MB/s | max RSS MiB |",
                  "|---|---:|---:|---:|",
                  f"| pktreplay --concurrency 64 | {r['flows_per_s']:,.0f} | "
                  f"{r['bytes_per_s'] / 1e6:.1f} | {r['maxrss_mib']} |",
                  f"| ab -n 10000 -c 64 (reference client) | {r['ab_requests_per_s']:,.0f} | | |",
                  f"| ratio | {r['ratio']:.2f} | | |"]
    m = results["micro"]
    lines += ["", "| policy rules | ns per packet |", "|---:|---:|"]
    lines += [f"| {k} | {v} |" for k, v in m["match_ns"].items()]
    lines += ["", "| tracked flows | bytes per flow |", "|---:|---:|"]
    lines += [f"| {k} | {v} |" for k, v in m["bytes_per_flow"].items()]
    lines += ["", "| 20,000 flows with one plugin loaded, each having carried what it reads | "
                  "bytes per flow |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in m["bytes_per_plugin_flow"].items()]
    return "\n".join(lines) + "\n"


def chart(results, path):
    if not results["scenarios"]:
        return
    if not shutil.which("gnuplot"):
        print("   (gnuplot missing: no chart)")
        return
    data = path + ".dat"
    with open(data, "w") as f:
        for i, (name, r) in enumerate(results["scenarios"].items()):
            label = name.split(" ", 1)[0]
            f.write(f"{label} {r['reference']['pps'] / 1000:.1f} {r['broker']['pps'] / 1000:.1f} "
                    f"{r['reference']['latency']['p99_us']} {r['broker']['latency']['p99_us']}\n")
    script = f"""set terminal pngcairo size 1100,450 font ",10"
set output "{path}"
set multiplot layout 1,2 title "pktbroker vs the bare NFQUEUE reference ({results['machine']})"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set grid ytics
set yrange [0:*]
set key top left
set xlabel "scenario"
set ylabel "kpps delivered (saturation)"
plot "{data}" using 2:xtic(1) title "reference", "" using 3 title "pktbroker"
set ylabel "p99 round trip (µs)"
plot "{data}" using 4:xtic(1) title "reference", "" using 5 title "pktbroker"
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.remove(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results", help="directory for the results")
    parser.add_argument("--seconds", type=int, default=2,
                        help="seconds per overload run")
    parser.add_argument("--probe-seconds", type=int, default=1,
                        help="seconds per sweep and loss-free probe")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per side")
    parser.add_argument("--only", help="run only the scenarios (and the identity, channels, events, http, tcp bulk or "
                             "pktreplay parts) whose name contains this; the opt-in scenarios run "
                             "only this way: --only hop (the reference alone, handing packets to "
                             "other processes), --only 'one verdict client' (with libpktbroker's "
                             "busy-poll and the client on CPU 0)")
    parser.add_argument("--replot", action="store_true",
                        help="rewrite results.md and chart.png from the last results.json")
    args = parser.parse_args()
    if args.replot:
        with open(os.path.join(args.out, "results.json")) as f:
            results = json.load(f)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(markdown(results))
        chart(results, os.path.join(args.out, "chart.png"))
        return
    if os.geteuid() != 0:
        raise SystemExit("run_bench: needs root (network namespaces, iptables, NFQUEUE)")
    if os.cpu_count() < 2:
        raise SystemExit("run_bench: needs two CPUs (generator on 0, consumer on 1)")
    os.makedirs(args.out, exist_ok=True)
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="pktbroker-bench-")
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "machine": f"{os.cpu_count()} CPUs, {platform.release()}",
               "scenarios": {}}
    try:
        with Topology():
            echo = popen(SINK, "taskset", "-c", "1", binary("udp_echo_latency"), "--server",
                         SINK_ADDR, str(ECHO_PORT))
            time.sleep(0.2)
            results["hop_floor"] = hop_floor(args.rounds)
            print(f"== one client hop, without a broker: {results['hop_floor']}", flush=True)
            for name, scenario in scenarios(workdir).items():
                if scenario is None or (args.only and args.only not in name) or (
                        not args.only and scenario.get("opt_in")):
                    continue
                results["scenarios"][name] = scenario_runs(name, scenario, args, workdir)
            echo.kill()
            if not args.only or args.only in "identity":
                print("== identity: per-application rules against rules on ports", flush=True)
                results["identity"] = identity_bench(args, workdir)
            if not args.only or args.only in "channels":
                print("== channels: a broadcast channel with 8 members, against the bare fan-out",
                      flush=True)
                results["channels"] = channel_bench(args, workdir)
            if not args.only or args.only in "events":
                print("== event log: drops logged at 100k/s, against no event log", flush=True)
                results["events"] = events_bench(args, workdir)
            if not args.only or args.only in "http":
                print("== http: ab against nginx, default queue settings", flush=True)
                results["http"] = http_bench(args, workdir)
            if not args.only or args.only in "tcp bulk":
                print("== tcp bulk", flush=True)
                results["tcp_bulk"] = tcp_bulk(args, workdir)
            if not args.only or args.only in "pktreplay":
                print("== pktreplay: 10,000 HTTP flows against nginx, and ab", flush=True)
                results["replay"] = replay_bench(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("== policy matching and flow memory", flush=True)
    results["micro"] = json.loads(run(binary("policy_match_bench")).stdout)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    table = markdown(results)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table)
    chart(results, os.path.join(args.out, "chart.png"))
    print()
    print(table)
    print(f"results in {args.out}/ (results.json, results.md, chart.png); "
          f"{results['elapsed_s']} s")


if __name__ == "__main__":
    main()
