"""What the loopback benchmarks share: a free port, `gazette serve` started and
stopped around a block, and wrk's figures read from its report."""
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@contextlib.contextmanager
def serving(command, env, port):
    """Runs `command` (gazette ... serve) until the block ends; yields its base URL
    once it accepts connections."""
    server = subprocess.Popen(command, env=env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def wrk(url, seconds, connections=32, script=None, env=None):
    """wrk -t2 on `url`: (requests/s, p50, p99, requests completed, answers not 2xx/3xx)."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+\w+)", out).group(1)
    p50 = re.search(r"50%\s+([\d.]+\w+)", out).group(1)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p50, p99, total, int(bad.group(1)) if bad else 0


def release_gazette(root):
    """Builds the release binary; its path."""
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=root, check=True)
    return os.path.join(root, "target", "release", "gazette")


def sample_site(root, prefix):
    """A temporary copy of config.toml and the sample data; its directory."""
    work = tempfile.mkdtemp(prefix=prefix)
    shutil.copy(os.path.join(root, "config.toml"), work)
    shutil.copytree(os.path.join(root, "sample"), os.path.join(work, "sample"))
    return work
