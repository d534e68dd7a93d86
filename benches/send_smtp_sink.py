#!/usr/bin/env python3
"""Sending benchmark: gazette sends the sample issue to N subscribers (each copy
personalized, each delivery recorded in the ledger) into postfix's smtp-sink on
loopback, then postfix's own smtp-source sends N messages of the same size over
the same number of connections into the same sink. Prints both rates, their
ratio, and gazette's peak RSS, for each N; and optionally gazette's peak RSS at a
much larger N.

    python3 benches/send_smtp_sink.py [--subscribers 10000,100000] [--connections 20] [--rss-at 1000000]

Needs smtp-sink and smtp-source (Debian: `apt-get install postfix`, with debconf
"No configuration"); says SKIPPED and exits 0 without them.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

from loopback import free_port, release_gazette, sample_site

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd, env=None):
    """Runs cmd; returns (seconds, output, the process's own peak RSS in KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{out}")
    return seconds, out, usage.ru_maxrss


def run_gazette(gazette, port, subscribers, connections):
    """One fresh site with `subscribers` readers: returns (seconds, sent, message size, peak RSS KiB)."""
    work = sample_site(ROOT, "gazette-bench-")
    try:
        with open(os.path.join(work, "subscribers.csv"), "w") as f:
            f.write("email,name\n")
            for i in range(subscribers):
                f.write(f"reader{i}@bench.example,Reader {i}\n")
        env = dict(os.environ,
                   GAZETTE_DATABASE__SEED_SUBSCRIBERS=os.path.join(work, "subscribers.csv"),
                   GAZETTE_SMTP__URL=f"smtp://127.0.0.1:{port}",
                   GAZETTE_SMTP__CONCURRENCY=str(connections),
                   GAZETTE_SECRET="benchmark-secret-0123456789-0123456789")
        cfg = ["--config", os.path.join(work, "config.toml")]
        subprocess.run([gazette, *cfg, "fetch"], env=env, check=True, capture_output=True)
        built = subprocess.run([gazette, *cfg, "build", "--week", "2026-W06"], env=env, check=True,
                               capture_output=True, text=True).stdout
        size = int(re.search(r"(\d+) bytes as sent", built).group(1))
        seconds, out, rss = timed([gazette, *cfg, "send", "--week", "2026-W06"], env)
        sent = int(re.search(r"sent (\d+)", out).group(1))
        assert sent == subscribers, out
        return seconds, sent, size, rss
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--subscribers", default="10000,100000",
                   help="comma-separated list sizes to compare with smtp-source")
    p.add_argument("--connections", type=int, default=20)
    p.add_argument("--rss-at", type=int, default=0,
                   help="also send to this many subscribers and report only gazette's peak RSS (e.g. 1000000)")
    a = p.parse_args()
    sink, source = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink", shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not (os.path.exists(sink) and os.path.exists(source)):
        print("SKIPPED: smtp-sink/smtp-source not found (apt-get install postfix)")
        return 0
    gazette = release_gazette(ROOT)
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink_proc = subprocess.Popen([sink, *user, f"127.0.0.1:{port}", "1024"])
    try:
        time.sleep(0.3)
        print(f"send_smtp_sink: {a.connections} connections into smtp-sink on loopback")
        print(f"  {'subscribers':>11}  {'gazette msg/s':>13}  {'smtp-source msg/s':>17}  {'ratio':>6}  {'gazette peak RSS':>16}  message")
        for n in [int(x) for x in a.subscribers.split(",") if x]:
            seconds, sent, size, rss = run_gazette(gazette, port, n, a.connections)
            src_seconds, _, _ = timed([source, "-s", str(a.connections), "-m", str(n), "-l", str(size),
                                       "-d", "-f", "weekly@fintech-news.example", "-t", "reader@bench.example",
                                       f"127.0.0.1:{port}"])
            ours, theirs = sent / seconds, n / src_seconds
            print(f"  {n:>11}  {ours:>13.0f}  {theirs:>17.0f}  {ours / theirs:>6.3f}  {rss / 1024:>13.1f} MiB  {size} bytes")
        if a.rss_at:
            seconds, sent, size, rss = run_gazette(gazette, port, a.rss_at, a.connections)
            print(f"  {a.rss_at:>11}  {sent / seconds:>13.0f}  {'(not run)':>17}  {'':>6}  {rss / 1024:>13.1f} MiB  {size} bytes")
    finally:
        sink_proc.terminate()
        sink_proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
