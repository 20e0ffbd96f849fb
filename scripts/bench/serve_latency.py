#!/usr/bin/env python3
"""What a viewer user waits for: `leukex serve DIR` from process start to the first answer,
the map listing the browse page loads, and heat-map PNGs as the page requests them.

    python3 scripts/bench/serve_latency.py target/release/leukex demo/ [--maps 200] [--seed 0]

Standard library only. Prints one line per measurement (median and 95th percentile over the
requests, in milliseconds)."""

import argparse
import json
import random
import socket
import statistics
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        body = r.read()
        status = r.status
    return time.perf_counter() - t, status, body


def summary(name, seconds, sizes=None):
    ms = sorted(1000 * s for s in seconds)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    extra = f", {statistics.median(sizes) / 1024:.1f} KiB median" if sizes else ""
    print(f"{name}: n={len(ms)}, median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms{extra}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("leukex")
    ap.add_argument("dir")
    ap.add_argument("--maps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [a.leukex, "serve", a.dir, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                get(base + "/api/maps")
                break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit("leukex serve exited")
                time.sleep(0.01)
        print(f"start to first answer: {1000 * (time.perf_counter() - t0):.0f} ms")

        listing = []
        for _ in range(5):
            s, status, body = get(base + "/api/maps")
            assert status == 200
            listing.append(s)
        maps = json.loads(body)["maps"]
        summary(f"/api/maps ({len(maps)} maps, {len(body) / 1024:.0f} KiB)", listing)

        s, status, _ = get(base + "/")
        assert status == 200

        rng = random.Random(a.seed)
        ids = [m["id"] for m in maps]
        chosen = [rng.choice(ids) for _ in range(a.maps)]
        for style in ["native", "blinded"]:
            times, sizes = [], []
            for mid in chosen:
                q = urllib.parse.urlencode({"id": mid, "style": style})
                s, status, body = get(f"{base}/api/map.png?{q}")
                assert status == 200, (mid, status)
                times.append(s)
                sizes.append(len(body))
            summary(f"/api/map.png style={style} (random maps)", times, sizes)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    import urllib.parse  # noqa: F401  (used above)

    main()
