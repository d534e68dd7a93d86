#!/usr/bin/env python3
"""Load figure for counted story links: `gazette serve` (release build) with the
sample issue sent, and wrk GETting 10,000 distinct counted links (5,000 copies x
2 stories: no copy opens 3 stories, so no scanner burst) round and round with a
browser's User-Agent. Prints requests/second and latency percentiles as wrk
measured them, the same for GET /healthz (no database write, same run) as the
reference, and checks the counts afterwards: every link counted once as a unique
click, and the clicks recorded equal to the requests wrk completed (plus at most
one in flight per connection when wrk stopped).

    python3 benches/clicks_wrk.py [--links 10000] [--seconds 10]

Needs wrk (`apt-get install wrk`); says SKIPPED and exits 0 without it. The ids
are computed here from the documented scheme (HMAC-SHA256 of
"click\\n<list id>\\n<week>.<position>.<copy>", 16 bytes, base64url): a mismatch
with gazette's would show as requests answered 400 and nothing counted.
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
WEEK = "2026-W06"
CONNECTIONS = 32

LUA = r"""
local paths = {}
for line in io.lines(os.getenv("LINKS")) do paths[#paths + 1] = line end
local threads = 0
setup = function(thread) thread:set("first", threads); threads = threads + 1 end
local i = -2
request = function()
  i = i + 2
  local p = paths[((i + (first or 0)) % #paths) + 1]
  return wrk.format("GET", p, {["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"})
end
"""


def click_path(position, copy):
    payload = f"{WEEK}.{position}.{copy}"
    mac = hmac.new(SECRET.encode(), f"click\n{LIST_ID}\n{payload}".encode(), hashlib.sha256).digest()[:16]
    return f"/c/{payload}." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--links", type=int, default=10000)
    p.add_argument("--seconds", type=int, default=10)
    a = p.parse_args()
    if not shutil.which("wrk"):
        print("SKIPPED: wrk not found (apt-get install wrk)")
        return 0
    gazette = release_gazette(ROOT)
    work = sample_site(ROOT, "gazette-clicks-")
    port = free_port()
    env = dict(os.environ, GAZETTE_SECRET=SECRET, GAZETTE_SERVER__LISTEN=f"127.0.0.1:{port}", GAZETTE_LOG="warn")
    cfg = ["--config", os.path.join(work, "config.toml")]
    # The sample issue, sent to the file outbox: the issue and its stories are stored.
    subprocess.run([gazette, *cfg, "run", "--week", WEEK], env=env, check=True, capture_output=True)
    copies = a.links // 2
    with open(os.path.join(work, "links.txt"), "w") as f:
        for position in range(2):
            for copy in range(copies):
                f.write(click_path(position, f"bench{copy}") + "\n")
    with open(os.path.join(work, "get.lua"), "w") as f:
        f.write(LUA)
    with serving([gazette, *cfg, "serve"], env, port) as base:
        ref = wrk(f"{base}/healthz", a.seconds, CONNECTIONS)
        got = wrk(base, a.seconds, CONNECTIONS, os.path.join(work, "get.lua"), dict(os.environ, LINKS=os.path.join(work, "links.txt")))
    db = sqlite3.connect(os.path.join(work, "gazette.db"))
    clicks, unique, automated = db.execute(
        "SELECT sum(clicks), count(*), sum(CASE WHEN automated = 1 THEN clicks ELSE 0 END) FROM clicks_seen"
    ).fetchone()
    human_rows = db.execute("SELECT count(*) FROM clicks_seen WHERE automated = 0").fetchone()[0]
    print(f"clicks_wrk: {2 * copies} distinct counted links ({copies} copies x 2 stories), wrk -t2 -c{CONNECTIONS} -d{a.seconds}s against gazette serve (release) on loopback")
    print(f"  GET /c/ID (302, counted)   {got[0]:9.0f} req/s  p50 {got[1]}  p99 {got[2]}  not 2xx/3xx {got[4]}")
    print(f"  GET /healthz (reference)   {ref[0]:9.0f} req/s  p50 {ref[1]}  p99 {ref[2]}")
    print(f"  ratio                      {got[0] / ref[0]:9.3f} x the reference")
    print(f"  afterwards: {clicks} clicks recorded for {got[3]} requests wrk completed; "
          f"{human_rows} unique (copy, story) pairs of {2 * copies}; {automated} counted as automated")
    shutil.rmtree(work, ignore_errors=True)
    exact = (human_rows == 2 * copies and automated == 0 and got[4] == 0
             and 0 <= clicks - got[3] <= CONNECTIONS)
    print("  counts exact" if exact else "  COUNTS WRONG")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
