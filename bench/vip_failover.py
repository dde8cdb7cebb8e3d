"""VIP takeover time with keepalived (VRRPv3, unicast peers, a tracked port), as JSON.

Builds its own lab and removes it: a switch namespace with a bridge, two load-balancer
namespaces (kva, kvb) and a client namespace (kvc) on 10.231.0.0/24, VIP 10.231.0.50.
Each load balancer runs a tiny TCP server on :8080 answering its name (stand-in for HAProxy,
and the port the track script checks) and keepalived (A priority 150, B 100).
Per run (--mode crash): kill -9 A's keepalived (VRRP child and parent, so no priority-0 advert is sent: a
crash) and time until a client connecting to VIP:8080 every 10 ms is answered by B.
Per interval, first run only: --idle seconds with both up, counting VRRP state changes (flaps).

    python3 bench/vip_failover.py [--intervals 1 0.5 0.2 0.1] [--runs 3] [--idle 60]
                                  [--mode crash|crash-restart|term|haproxy]

--mode crash-restart: as crash, then A's keepalived started again (stale VIP?);
--mode term: keepalived stopped cleanly instead; --mode haproxy: A's server killed instead
(the tracked script fails, A enters FAULT and releases the VIP).

Root only; touches nothing outside the namespaces it creates (kvsw, kva, kvb, kvc).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NET = "10.231.0"
VIP = f"{NET}.50"
NODES = {"kva": 11, "kvb": 12, "kvc": 100}
PRIORITY = {"kva": 150, "kvb": 100}
SWITCH = "kvsw"

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(64)
while True:
    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
"""

# One line per change of answer: "<CLOCK_MONOTONIC> <name or ->" (monotonic is system-wide).
PROBE = """
import socket, sys, time
last = None
while True:
    t = time.monotonic()
    try:
        c = socket.create_connection((sys.argv[1], 8080), timeout=0.01)
        name = c.recv(16).decode() or "-"; c.close()
    except OSError:
        name = "-"
    if name != last:
        print(f"{t:.4f} {name}", flush=True); last = name
    time.sleep(max(0.0, 0.01 - (time.monotonic() - t)))
"""

CHECK = "#!/bin/bash\n# tracked health: the local port answers\nexec 3<>/dev/tcp/127.0.0.1/8080\n"


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def in_ns(ns: str, *args: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", *args]


def lab_up() -> None:
    for ns in [SWITCH, *NODES]:
        sh("ip", "netns", "add", ns)
    sh("ip", "-n", SWITCH, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", SWITCH, "link", "set", "br0", "up")
    for ns, host in NODES.items():
        sh("ip", "link", "add", f"{ns}0", "type", "veth", "peer", "name", f"{ns}1")
        sh("ip", "link", "set", f"{ns}0", "netns", SWITCH)
        sh("ip", "link", "set", f"{ns}1", "netns", ns)
        sh("ip", "-n", SWITCH, "link", "set", f"{ns}0", "master", "br0", "up")
        sh("ip", "-n", ns, "link", "set", f"{ns}1", "name", "eth0")
        sh("ip", "-n", ns, "addr", "add", f"{NET}.{host}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def lab_down() -> None:
    # Deleting a namespace deletes its veth ends and the bridge with it.
    for ns in [*NODES, SWITCH]:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def keepalived_conf(ns: str, advert: float, check: Path) -> str:
    me, peer = ("kva", "kvb") if ns == "kva" else ("kvb", "kva")
    return f"""global_defs {{
  router_id {ns}
  vrrp_version 3
  script_user root
  enable_script_security
}}
vrrp_script chk_port {{
  script "{check}"
  interval 1
  timeout 1
  fall 2
  rise 2
}}
vrrp_instance VI_1 {{
  state BACKUP
  nopreempt
  interface eth0
  virtual_router_id 51
  priority {PRIORITY[ns]}
  advert_int {advert}
  unicast_src_ip {NET}.{NODES[me]}
  unicast_peer {{
    {NET}.{NODES[peer]}
  }}
  virtual_ipaddress {{
    {VIP}/24 dev eth0
  }}
  track_script {{
    chk_port
  }}
}}
"""


def start_keepalived(ns: str, advert: float, work: Path) -> tuple[subprocess.Popen, Path]:
    conf = work / f"{ns}.conf"
    conf.write_text(keepalived_conf(ns, advert, work / "check.sh"))
    log = open(work / f"{ns}-{advert}.log", "a")  # noqa: SIM115 (lives as long as the process)
    pids = [f"--pid={work}/{ns}.pid", f"--vrrp_pid={work}/{ns}-vrrp.pid"]
    cmd = in_ns(ns, "keepalived", "-n", "-l", "-D", "-P", "-f", str(conf), *pids)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), work / f"{ns}-vrrp.pid"


def start_server(ns: str) -> subprocess.Popen:
    return subprocess.Popen(in_ns(ns, "python3", "-c", SERVER, ns))


def has_vip(ns: str) -> bool:
    out = subprocess.run(["ip", "-n", ns, "-br", "addr", "show", "eth0"], capture_output=True)
    return f"{VIP}/" in out.stdout.decode()


def wait_for(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def probe_answers(path: Path) -> list[tuple[float, str]]:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(float(t), name) for t, name in rows]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (/proc/PID/stat fields 14 and 15)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def transitions(log: Path) -> int:
    words = ("Entering MASTER STATE", "Entering BACKUP STATE", "Entering FAULT STATE")
    return sum(any(w in line for w in words) for line in log.read_text().splitlines())


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(10)


def inject(mode: str, a: subprocess.Popen, a_vrrp: Path, servers: dict) -> None:
    """The fault on A: `crash` kills keepalived with -9 (the VRRP child first, so no
    priority-0 goodbye is sent), `term` stops it cleanly (it sends priority 0), `haproxy`
    kills A's server so the tracked script fails and A goes to FAULT."""
    if mode in ("crash", "crash-restart"):
        os.kill(int(a_vrrp.read_text()), signal.SIGKILL)
        os.kill(a.pid, signal.SIGKILL)
    elif mode == "term":
        os.kill(a.pid, signal.SIGTERM)
    else:
        servers["kva"].kill()


def restart_a(advert: float, work: Path, probe_log: Path) -> dict:
    """After a crash: start A's keepalived again (as systemd's Restart= would) and look at
    who holds the VIP and who answers once things settled."""
    a2, _ = start_keepalived("kva", advert, work)
    try:
        time.sleep(2 + 5 * advert)
        return {
            "after_restart_vip_on_a": has_vip("kva"),
            "after_restart_vip_on_b": has_vip("kvb"),
            "after_restart_answering": probe_answers(probe_log)[-1][1],
        }
    finally:
        stop(a2)


def one_run(
    advert: float, idle: float, work: Path, probe_log: Path, mode: str, servers: dict
) -> dict:
    a, a_vrrp = start_keepalived("kva", advert, work)
    b, b_vrrp = start_keepalived("kvb", advert, work)
    try:
        if not wait_for(lambda: has_vip("kva") and not has_vip("kvb"), 15):
            return {"error": "A never became the only master"}
        if not wait_for(lambda: probe_answers(probe_log)[-1][1] == "kva", 5):
            return {"error": "client never reached A through the VIP"}
        result: dict = {}
        if idle:
            before = {ns: transitions(work / f"{ns}-{advert}.log") for ns in ("kva", "kvb")}
            cpu0 = cpu_seconds([a.pid, b.pid, int(a_vrrp.read_text()), int(b_vrrp.read_text())])
            time.sleep(idle)
            cpu1 = cpu_seconds([a.pid, b.pid, int(a_vrrp.read_text()), int(b_vrrp.read_text())])
            result["idle_cpu_percent_both"] = round(100 * (cpu1 - cpu0) / idle, 2)
            after = {ns: transitions(work / f"{ns}-{advert}.log") for ns in ("kva", "kvb")}
            result["idle_transitions"] = sum(after[n] - before[n] for n in after)
        # A random phase against A's last advertisement: right after A's first one the
        # takeover is always the longest (3 intervals + skew), which is not the typical case.
        time.sleep(1 + random.uniform(0, advert))
        t0 = time.monotonic()
        inject(mode, a, a_vrrp, servers)
        moved = wait_for(
            lambda: any(t > t0 and n == "kvb" for t, n in probe_answers(probe_log)), 15
        )
        after_kill = [(t, n) for t, n in probe_answers(probe_log) if t > t0]
        first_b = next((t for t, n in after_kill if n == "kvb"), None)
        result["takeover_s"] = round(first_b - t0, 3) if moved and first_b else None
        result["stale_vip_on_a"] = has_vip("kva")
        if mode == "crash-restart":
            result.update(restart_a(advert, work, probe_log))
        return result
    finally:
        stop(b)
        stop(a, signal.SIGKILL)
        if servers["kva"].poll() is not None:
            servers["kva"] = start_server("kva")
        subprocess.run(
            ["ip", "-n", "kva", "addr", "del", f"{VIP}/24", "dev", "eth0"], capture_output=True
        )
        time.sleep(0.3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--intervals", type=float, nargs="+", default=[1, 0.5, 0.2, 0.1])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument(
        "--mode", choices=["crash", "crash-restart", "term", "haproxy"], default="crash"
    )
    ap.add_argument("--keep-logs", default=None, help="copy keepalived logs into this folder")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vip-lab-"))
    (work / "check.sh").write_text(CHECK)
    (work / "check.sh").chmod(0o755)
    procs: list[subprocess.Popen] = []
    servers: dict[str, subprocess.Popen] = {}
    report: dict = {
        "mode": args.mode,
        "keepalived": subprocess.run(
            ["keepalived", "--version"], capture_output=True, text=True
        ).stderr.splitlines()[0],
    }
    lab_up()
    try:
        servers = {ns: start_server(ns) for ns in ("kva", "kvb")}
        probe_log = work / "probe.log"
        probe_out = open(probe_log, "w")  # noqa: SIM115 (lives as long as the probe)
        procs.append(subprocess.Popen(in_ns("kvc", "python3", "-c", PROBE, VIP), stdout=probe_out))
        for advert in args.intervals:
            runs = [
                one_run(advert, args.idle if i == 0 else 0, work, probe_log, args.mode, servers)
                for i in range(args.runs)
            ]
            times = [r["takeover_s"] for r in runs if r.get("takeover_s") is not None]
            report[str(advert)] = {
                "runs": runs,
                "takeover_median_s": statistics.median(times) if times else None,
                "takeover_min_s": min(times) if times else None,
                "takeover_max_s": max(times) if times else None,
            }
            print(json.dumps({str(advert): report[str(advert)]}), file=sys.stderr, flush=True)
    finally:
        for p in [*procs, *servers.values()]:
            stop(p, signal.SIGKILL)
        lab_down()
        if args.keep_logs:
            subprocess.run(["cp", "-r", f"{work}/.", args.keep_logs], check=False)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
