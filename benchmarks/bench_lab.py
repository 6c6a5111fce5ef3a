"""The lab's cost: training inside `trainlab lab` with viewers streaming vs `trainlab train` on the same config.

For a population of 32 members and of 1 member (the default MLP 784-100-100-10 on mnist-5k), it trains

* ``train``: ``trainlab train CONFIG`` (its own process, no server);
* ``lab+1``: the same config started through a `trainlab lab` server, with one viewer streaming its events
  (what an open page receives: every progress, evaluation and probe event);
* ``lab+5``: the same with five viewers streaming.

and compares the training seconds each run records itself (the fastest of ``--repeats`` interleaved rounds,
and the median) (``summary.json`` "seconds": the trainer's wall
time from the first to the last step, checkpoints included, start-up excluded) -- the lab's worker trains
through the same `train_run` plus the lab's callbacks (stream, steering, the per-layer probe every 20 steps).
It also measures the server: the time to load the page (the HTML, its scripts and styles, and the form's
schema, over HTTP on this machine), the updates per second a viewer receives with 32 members, and the CPU
the server process took while the population trained, as a fraction of the worker's (read from /proc).

Every run gets one torch thread (OMP_NUM_THREADS=1), like the test suite. Usage:

    python benchmarks/bench_lab.py [--steps 300] [--sizes 32,1] [--repeats 1]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
from pathlib import Path
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class LabServer:
    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "trainlab.cli", "lab", "--root", str(root), "--port", "0",
                                      "--threads", "1"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     env=ENV, text=True)
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", self.proc.stderr.readline())
        assert m, "the lab did not start"
        self.port = int(m.group(1))

    def get(self, path: str) -> bytes:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("GET", path)
        body = c.getresponse().read()
        c.close()
        return body

    def post(self, path: str, body: dict) -> dict:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = json.loads(r.read())
        c.close()
        if r.status >= 400:
            raise RuntimeError(data)
        return data

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)


class Viewer(threading.Thread):
    """Reads a run's event stream like an open page, counting events by type and their arrival times."""

    def __init__(self, port: int, name: str) -> None:
        super().__init__(daemon=True)
        self.port, self.name = port, name
        self.times: list[float] = []
        self.kinds: dict[str, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        c.request("GET", f"/api/runs/{self.name}/events")
        r = c.getresponse()
        while not self.done.is_set():
            line = r.fp.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                ev = json.loads(line[6:])
                self.kinds[ev["type"]] = self.kinds.get(ev["type"], 0) + 1
                if ev["type"] in ("progress", "eval", "probe"):
                    self.times.append(time.monotonic())
                if ev["type"] == "state" and ev["state"] in ("finished", "failed", "interrupted"):
                    break
        c.close()


def fields(size: int, steps: int) -> dict:
    # one member: the default config; P members: a comparison of P init scales (one population)
    f = {"train.steps": str(steps), "data.train": "4000", "data.val": "500", "data.test": "500"}
    compare = [] if size == 1 else [{"key": "model.init_scale", "values": ", ".join(f"{1 + i / size:.4f}" for i in range(size))}]
    return {"fields": f, "compare": compare}


def run_train(size: int, steps: int, work: Path) -> float:
    from trainlab.lab._form import compose, given_to_toml

    given, _ = compose(**fields(size, steps))
    cfg = work / f"bench-{size}.toml"
    cfg.write_text(given_to_toml(given))
    out = work / f"train-{size}-{time.monotonic_ns()}"
    subprocess.run([sys.executable, "-m", "trainlab.cli", "train", str(cfg), "--out", str(out), "--quiet"], env=ENV,
                   check=True)
    return json.loads((out / "summary.json").read_text())["seconds"]


def run_lab(srv: LabServer, size: int, steps: int, viewers: int, root: Path) -> dict:
    name = f"bench-{size}-{viewers}-{time.monotonic_ns()}"
    srv.post("/api/runs", {**fields(size, steps), "name": name})
    vs = [Viewer(srv.port, name) for _ in range(viewers)]
    for v in vs:
        v.start()
    cpu0, worker_pid, t0 = cpu_seconds(srv.proc.pid), None, None
    while True:
        s = json.loads(srv.get(f"/api/runs/{name}"))
        if s["status"] == "running" and t0 is None:
            t0 = time.monotonic()
        if s["status"] in ("finished", "failed", "interrupted"):
            break
        time.sleep(0.5)  # about what the page does (it lists the runs every 1.5 s; the stream carries the rest)
    server_cpu = cpu_seconds(srv.proc.pid) - cpu0
    for v in vs:
        v.join(timeout=30)
    summary = json.loads((root / name / "summary.json").read_text())
    v = vs[0]
    span = (v.times[-1] - v.times[0]) if len(v.times) > 1 else float("nan")
    return {"seconds": summary["seconds"], "server_cpu": server_cpu,
            "updates_per_s": (len(v.times) - 1) / span if span == span and span > 0 else float("nan"),
            "events": dict(v.kinds)}


def page_load(srv: LabServer, repeats: int = 5) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for path in ("/", "/static/lab.css", "/static/plot.js", "/static/lab.js", "/api/schema", "/api/runs"):
            srv.get(path)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--sizes", default="32,1")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-lab-"))
    root = work / "lab"
    srv = LabServer(root)
    results: dict = {"steps": args.steps, "cpus": os.cpu_count(), "load": os.getloadavg()}
    try:
        loads = page_load(srv)
        results["page_load_s"] = {"first": loads[0], "median": statistics.median(loads)}
        for size in sizes:
            rows: dict[str, list] = {"train": [], "lab+1": [], "lab+5": []}
            kinds = list(rows)
            for rep in range(args.repeats):  # interleaved, the order rotated each round
                for k in kinds[rep % 3:] + kinds[:rep % 3]:
                    if k == "train":
                        rows[k].append(run_train(size, args.steps, work))
                    else:
                        rows[k].append(run_lab(srv, size, args.steps, int(k[-1]), root))
            # On a shared machine other jobs only ever slow a run down: the fastest of the repeats is the
            # estimate of what the code costs; the medians are reported too.
            train = min(rows["train"])
            res = {"train_s": {"min": train, "median": statistics.median(rows["train"]), "all": rows["train"]}}
            for k in ("lab+1", "lab+5"):
                secs = [r["seconds"] for r in rows[k]]
                res[k] = {"seconds": {"min": min(secs), "median": statistics.median(secs), "all": secs},
                          "speed_vs_train": {"min": train / min(secs),
                                             "median": statistics.median(rows["train"]) / statistics.median(secs)},
                          "updates_per_s": statistics.median(r["updates_per_s"] for r in rows[k]),
                          "server_cpu_fraction": statistics.median(r["server_cpu"] / r["seconds"] for r in rows[k]),
                          "events": rows[k][-1]["events"]}
            results[f"P={size}"] = res
            print(json.dumps({f"P={size}": res}), flush=True)
    finally:
        srv.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
