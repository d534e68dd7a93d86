#!/usr/bin/env python3
"""Sending benchmark: gazette sends the sample issue to N subscribers into
postfix's smtp-sink on loopback, then postfix's own smtp-source sends N messages of
the same size over the same number of connections into the same sink. Prints both
rates, their ratio, and gazette's peak RSS.

    python3 benches/send_smtp_sink.py [--subscribers 20000] [--connections 20]

Needs smtp-sink and smtp-source (Debian: `apt-get install postfix`, with debconf
"No configuration"); says SKIPPED and exits 0 without them.
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--subscribers", type=int, default=20000)
    p.add_argument("--connections", type=int, default=20)
    a = p.parse_args()
    sink, source = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink", shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not (os.path.exists(sink) and os.path.exists(source)):
        print("SKIPPED: smtp-sink/smtp-source not found (apt-get install postfix)")
        return 0
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    gazette = os.path.join(ROOT, "target", "release", "gazette")
    work = tempfile.mkdtemp(prefix="gazette-bench-")
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink_proc = subprocess.Popen([sink, *user, f"127.0.0.1:{port}", "1024"])
    try:
        time.sleep(0.3)
        shutil.copy(os.path.join(ROOT, "config.toml"), work)
        shutil.copytree(os.path.join(ROOT, "sample"), os.path.join(work, "sample"))
        with open(os.path.join(work, "subscribers.csv"), "w") as f:
            f.write("email,name\n")
            for i in range(a.subscribers):
                f.write(f"reader{i}@bench.example,Reader {i}\n")
        env = dict(os.environ,
                   GAZETTE_DATABASE__SEED_SUBSCRIBERS=os.path.join(work, "subscribers.csv"),
                   GAZETTE_SMTP__URL=f"smtp://127.0.0.1:{port}",
                   GAZETTE_SMTP__CONCURRENCY=str(a.connections),
                   GAZETTE_SECRET="benchmark-secret")
        cfg = ["--config", os.path.join(work, "config.toml")]
        subprocess.run([gazette, *cfg, "fetch"], env=env, check=True, capture_output=True)
        built = subprocess.run([gazette, *cfg, "build", "--week", "2026-W06"], env=env, check=True,
                               capture_output=True, text=True).stdout
        size = int(re.search(r"(\d+) bytes as sent", built).group(1))

        seconds, out, rss = timed([gazette, *cfg, "send", "--week", "2026-W06"], env)
        sent = int(re.search(r"sent (\d+)", out).group(1))
        assert sent == a.subscribers, out
        gazette_rate = sent / seconds

        src_seconds, _, _ = timed([source, "-s", str(a.connections), "-m", str(a.subscribers), "-l", str(size),
                                   "-d", "-f", "weekly@fintech-news.example", "-t", "reader@bench.example",
                                   f"127.0.0.1:{port}"])
        source_rate = a.subscribers / src_seconds
        print(f"send_smtp_sink: {a.subscribers} subscribers, {a.connections} connections, {size}-byte messages, smtp-sink on loopback")
        print(f"  gazette send   {gazette_rate:10.0f} msg/s  ({seconds:.2f} s, peak RSS {rss / 1024:.1f} MiB)")
        print(f"  smtp-source    {source_rate:10.0f} msg/s  ({src_seconds:.2f} s)")
        print(f"  ratio          {gazette_rate / source_rate:10.3f} × smtp-source")
    finally:
        sink_proc.terminate()
        sink_proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
