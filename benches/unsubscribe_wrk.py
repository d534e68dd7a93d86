#!/usr/bin/env python3
"""Load figure for one-click unsubscribe: `gazette serve` (release build) with
10,000 subscribers, and wrk POSTing `List-Unsubscribe=One-Click` to each one's
signed URL. Prints requests/second and latency percentiles as wrk measured them,
wrk's own rate against a reference (GET /healthz, no database write, same run),
and checks that every subscriber ended unsubscribed with one event each.

    python3 benches/unsubscribe_wrk.py [--subscribers 10000] [--seconds 10]

Needs wrk (`apt-get install wrk`); says SKIPPED and exits 0 without it. The
tokens are computed here from the documented scheme (HMAC-SHA256 of
"unsubscribe\\n<list id>\\n<subscriber id>", 16 bytes, base64url): a mismatch with
gazette's would show as requests answered 400 and subscribers left active.
"""
import argparse
import base64
import hashlib
import hmac
import os
import shutil
import sqlite3
import subprocess
import sys

from loopback import free_port, release_gazette, sample_site, serving, wrk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "wrk-benchmark-secret-0123456789-0123456789"
LIST_ID = "weekly.fintech-news.example"

LUA = r"""
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
-- Each of wrk's threads takes every other token, in turn, round and round.
local threads = 0
setup = function(thread) thread:set("first", threads); threads = threads + 1 end
local i = -2
request = function()
  i = i + 2
  local t = tokens[((i + (first or 0)) % #tokens) + 1]
  return wrk.format("POST", "/u/" .. t, {["Content-Type"] = "application/x-www-form-urlencoded"}, "List-Unsubscribe=One-Click")
end
"""


def token(sub_id):
    mac = hmac.new(SECRET.encode(), f"unsubscribe\n{LIST_ID}\n{sub_id}".encode(), hashlib.sha256).digest()[:16]
    return f"{sub_id}." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--subscribers", type=int, default=10000)
    p.add_argument("--seconds", type=int, default=10)
    a = p.parse_args()
    if not shutil.which("wrk"):
        print("SKIPPED: wrk not found (apt-get install wrk)")
        return 0
    gazette = release_gazette(ROOT)
    work = sample_site(ROOT, "gazette-wrk-")
    with open(os.path.join(work, "people.csv"), "w") as f:
        f.write("email,name\n")
        for i in range(a.subscribers):
            f.write(f"reader{i}@bench.example,\n")
    port = free_port()
    env = dict(os.environ, GAZETTE_SECRET=SECRET, GAZETTE_SERVER__LISTEN=f"127.0.0.1:{port}",
               GAZETTE_DATABASE__SEED_SUBSCRIBERS=os.path.join(work, "people.csv"), GAZETTE_LOG="warn")
    cfg = ["--config", os.path.join(work, "config.toml")]
    subprocess.run([gazette, *cfg, "init"], env=env, check=True, capture_output=True)
    db = sqlite3.connect(os.path.join(work, "gazette.db"))
    ids = [r[0] for r in db.execute("SELECT id FROM subscribers WHERE status = 'active' ORDER BY id")]
    with open(os.path.join(work, "tokens.txt"), "w") as f:
        f.write("\n".join(token(i) for i in ids) + "\n")
    with open(os.path.join(work, "post.lua"), "w") as f:
        f.write(LUA)
    with serving([gazette, *cfg, "serve"], env, port) as base:
        ref = wrk(f"{base}/healthz", a.seconds, 32)
        got = wrk(base, a.seconds, 32, os.path.join(work, "post.lua"), dict(os.environ, TOKENS=os.path.join(work, "tokens.txt")))
    left = db.execute("SELECT count(*) FROM subscribers WHERE status = 'active'").fetchone()[0]
    events = db.execute("SELECT count(*) FROM unsubscribe_events WHERE method = 'one-click'").fetchone()[0]
    print(f"unsubscribe_wrk: {len(ids)} subscribers, wrk -t2 -c32 -d{a.seconds}s against gazette serve (release) on loopback")
    print(f"  POST /u/TOKEN (one-click)  {got[0]:9.0f} req/s  p50 {got[1]}  p99 {got[2]}  non-2xx {got[4]}")
    print(f"  GET /healthz (reference)   {ref[0]:9.0f} req/s  p50 {ref[1]}  p99 {ref[2]}")
    print(f"  ratio                      {got[0] / ref[0]:9.3f} × the reference")
    print(f"  afterwards: {len(ids) - left} of {len(ids)} unsubscribed, {events} one-click events")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if left == 0 and events == len(ids) and got[4] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
