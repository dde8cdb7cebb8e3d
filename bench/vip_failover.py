"""VIP takeover time with keepalived (VRRPv3, unicast peers, a tracked port), as JSON.

Builds its own lab and removes it: a switch namespace with a bridge, two load-balancer
namespaces (kva, kvb) and a client namespace (kvc) on 10.231.0.0/24, VIP 10.231.0.50.
Each load balancer runs a tiny TCP server on :8080 answering its name (stand-in for HAProxy,
and the port the track script checks) and keepalived (A priority 150, B 100).
Per run (--mode crash): kill -9 the master's keepalived (VRRP child and parent, so no
priority-0 advert is sent: a crash) and time until a client connecting to VIP:8080 every
10 ms is answered by the other one. keepalived runs with nopreempt, as rendered, so the
first master is whoever passes its tracked script first (usually A, not always).
Per interval, first run only: --idle seconds with both up, counting VRRP state changes
(flaps) and keepalived's CPU.

    python3 bench/vip_failover.py [--intervals 1 0.5 0.2 0.1] [--runs 3] [--idle 60]
                                  [--mode crash|crash-restart|term|haproxy]

--mode crash-restart: as crash, then the old master's keepalived started again;
--mode term: keepalived stopped cleanly instead; --mode haproxy: the master's server killed
instead (its tracked script fails, it enters FAULT and releases the VIP).

Root only; touches nothing outside the namespaces it creates (kvsw, kva, kvb, kvc).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
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
LBS = ("kva", "kvb")
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
    # A killed VRRP child stays a zombie until PID 1 reaps it (late on this machine, whose
    # PID 1 is not an init); keepalived then says "daemon is already running": drop the files.
    for pid_file in (work / f"{ns}.pid", work / f"{ns}-vrrp.pid"):
        pid_file.unlink(missing_ok=True)
    conf = work / f"{ns}.conf"
    conf.write_text(keepalived_conf(ns, advert, work / "check.sh"))
    log = open(work / f"{ns}-{advert}.log", "a")  # noqa: SIM115 (lives as long as the process)
    pids = [f"--pid={work}/{ns}.pid", f"--vrrp_pid={work}/{ns}-vrrp.pid"]
    # -l logs through stdio: line-buffer it, or the log only reaches the file at exit.
    cmd = in_ns(ns, "stdbuf", "-oL", "-eL", "keepalived", "-n", "-l", "-D", "-P", "-f", str(conf))
    cmd += pids
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


def transitions(log: Path, words: tuple[str, ...] = ("MASTER", "BACKUP", "FAULT")) -> int:
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(any(f"Entering {w} STATE" in line for w in words) for line in lines)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(10)


def inject(mode: str, ns: str, kept: dict, servers: dict) -> None:
    """The fault on the master `ns`: `crash` kills keepalived with -9 (the VRRP child first,
    so no priority-0 goodbye is sent), `term` stops it cleanly (it sends priority 0),
    `haproxy` kills its server so the tracked script fails and it goes to FAULT."""
    proc, vrrp_pid = kept[ns]
    if mode in ("crash", "crash-restart"):
        os.kill(int(vrrp_pid.read_text()), signal.SIGKILL)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)  # reaped, as systemd would: a zombie's pid file blocks a restart
    elif mode == "term":
        os.kill(proc.pid, signal.SIGTERM)
    else:
        servers[ns].kill()


def restart(ns: str, other: str, advert: float, work: Path, probe_log: Path) -> dict:
    """After a crash: start the old master's keepalived again (as systemd's Restart= would)
    and look at who holds the VIP and who answers once things settled."""
    again, _ = start_keepalived(ns, advert, work)
    try:
        time.sleep(2 + 5 * advert)
        return {
            "after_restart_vip_on_old_master": has_vip(ns),
            "after_restart_vip_on_new_master": has_vip(other),
            "after_restart_answering": probe_answers(probe_log)[-1][1],
        }
    finally:
        stop(again)


def settled_master(probe_log: Path) -> str | None:
    """The one load balancer holding the VIP and answering on it. With nopreempt whoever
    passes its tracked script first takes the VIP at start, so it is not always A."""
    holders = [ns for ns in LBS if has_vip(ns)]
    answers = probe_answers(probe_log)
    if len(holders) == 1 and answers and answers[-1][1] == holders[0]:
        return holders[0]
    return None


def idle_window(idle: float, advert: float, kept: dict, work: Path) -> dict:
    """VRRP state changes (flaps) and keepalived's CPU while nothing happens."""
    pids = [p for proc, vrrp in kept.values() for p in (proc.pid, int(vrrp.read_text()))]
    logs = [work / f"{ns}-{advert}.log" for ns in LBS]
    before = [
        sum(transitions(log) for log in logs),
        sum(transitions(log, ("MASTER",)) for log in logs),
    ]
    cpu0 = cpu_seconds(pids)
    answers0 = len(probe_answers(work / "probe.log"))
    time.sleep(idle)
    cpu1 = cpu_seconds(pids)
    answers1 = len(probe_answers(work / "probe.log"))
    after = [
        sum(transitions(log) for log in logs),
        sum(transitions(log, ("MASTER",)) for log in logs),
    ]
    return {
        "idle_transitions": after[0] - before[0],
        "idle_new_masters": after[1] - before[1],
        "idle_client_answer_changes": answers1 - answers0,
        "idle_cpu_percent_both": round(100 * (cpu1 - cpu0) / idle, 2),
    }


def one_run(
    advert: float, idle: float, work: Path, probe_log: Path, mode: str, servers: dict
) -> dict:
    backups = {ns: transitions(work / f"{ns}-{advert}.log", ("BACKUP",)) for ns in LBS}
    kept = {ns: start_keepalived(ns, advert, work) for ns in LBS}
    try:
        if not wait_for(lambda: settled_master(probe_log) is not None, 20):
            return {"error": "no single master answering on the VIP"}
        master = settled_master(probe_log) or ""
        other = next(ns for ns in LBS if ns != master)
        result: dict = {"master": master}
        # The other one must have passed its own tracked script (FAULT -> BACKUP) first:
        # a backup still in FAULT never takes over.
        if not wait_for(
            lambda: transitions(work / f"{other}-{advert}.log", ("BACKUP",)) > backups[other], 10
        ):
            return {**result, "error": "the other one never left FAULT"}
        if idle:
            result.update(idle_window(idle, advert, kept, work))
        # A random phase against the master's last advertisement: right after its first one
        # the takeover is always the longest (3 intervals + skew), not the typical case.
        time.sleep(1 + random.uniform(0, advert))
        t0 = time.monotonic()
        inject(mode, master, kept, servers)
        wait_for(lambda: any(t > t0 and n == other for t, n in probe_answers(probe_log)), 15)
        first = next((t for t, n in probe_answers(probe_log) if t > t0 and n == other), None)
        result["takeover_s"] = round(first - t0, 3) if first else None
        result["stale_vip_on_old_master"] = has_vip(master)
        if mode == "crash-restart":
            result.update(restart(master, other, advert, work, probe_log))
        return result
    finally:
        for ns, (proc, _) in kept.items():
            stop(proc)  # TERM: the parent takes its VRRP child down with it
            if servers[ns].poll() is not None:
                servers[ns] = start_server(ns)
            subprocess.run(
                ["ip", "-n", ns, "addr", "del", f"{VIP}/24", "dev", "eth0"], capture_output=True
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
    # A TERM (from `kill PID`) still removes the namespaces and processes (finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
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
            shutil.copytree(work, args.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
