"""Helpers the benchmarks share: percentiles, machine notes, peak RSS, the API as a subprocess, a load generator
in a second process, and a Markdown section writer.

Importing this module is cheap (no model, no engine): the load generator (`services.bench.load`), which
runs as its own process, uses it too.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "docs" / "results"
CACHE_ROOT = Path.home() / ".cache" / "trawl" / "bench"

T = TypeVar("T")
W = TypeVar("W")  # the work one measure is given in one round


# ---- statistics ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Latency figures in milliseconds over `n` samples (numpy's default, linear interpolation)."""

    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Latency:
        import numpy as np

        if not samples_ms:
            return cls(0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"))
        arr = np.asarray(samples_ms, dtype=np.float64)
        p50, p95, p99 = (float(v) for v in np.percentile(arr, [50, 95, 99]))
        return cls(len(arr), p50, p95, p99, float(arr.mean()), float(arr.max()))

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def p99_ratio_interval(
    numerator_ms: Sequence[float], denominator_ms: Sequence[float], *, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """5th and 95th percentiles of p99(numerator) / p99(denominator) over bootstrap resamples of each."""
    import numpy as np

    rng = np.random.default_rng(seed)
    num, den = np.asarray(numerator_ms, dtype=np.float64), np.asarray(denominator_ms, dtype=np.float64)
    if not len(num) or not len(den):
        return float("nan"), float("nan")
    ratios = np.empty(resamples)
    for i in range(resamples):
        ratios[i] = np.percentile(rng.choice(num, len(num)), 99) / np.percentile(rng.choice(den, len(den)), 99)
    low, high = np.percentile(ratios, [5, 95])
    return float(low), float(high)


# ---- progress --------------------------------------------------------------------------------------------


class Steps:
    """A progress bar on a terminal (rich); in a log, a plain line every tenth of the way."""

    def __init__(self, console: Any, description: str, total: int) -> None:
        self._console = console
        self._description = description
        self._total = max(1, total)
        self._done = 0
        self._logged = 0
        self._start = time.perf_counter()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Steps:
        if self._console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self._description, total=self._total)
        else:
            self._console.print(f"{self._description}: 0/{self._total}")
        return self

    def advance(self, n: int) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
        elif self._done * 10 // self._total > self._logged or self._done >= self._total:
            self._logged = self._done * 10 // self._total
            elapsed = time.perf_counter() - self._start
            self._console.print(f"{self._description}: {self._done}/{self._total} in {elapsed:.0f} s")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


# ---- the machine -----------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_notes() -> dict[str, Any]:
    mem_total = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gib": round(mem_total / 2**30, 1),
        "python": platform.python_version(),
        "python_env": sys.prefix,
        "platform": platform.platform(),
        "commit": git_commit(),
    }


def proc_status_bytes(pid: int, key: str) -> int | None:
    """A memory figure of /proc/<pid>/status in bytes: VmHWM (peak resident set), VmRSS (current)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB (KiB)
    except (OSError, ValueError):
        return None
    return None


# ---- the API as a subprocess -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiProcess:
    """`python -m services.cli serve` on a free loopback port with TRAWL_* settings, as a user runs it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ApiProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def _get(self, path: str, timeout: float) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {}

    def wait_ready(self, timeout: float, expect_count: int | None = None) -> dict[str, Any]:
        """Until /readyz answers 200 (the first call opens the index: at 100k items that takes a while)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                status, body = self._get("/readyz", timeout=max(1.0, deadline - time.monotonic()))
                if status == 200 and (expect_count is None or body.get("count") == expect_count):
                    return body
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the API was not ready in {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


# ---- timing ------------------------------------------------------------------------------------------------


@dataclass
class Timed:
    latencies_ms: list[float]
    statuses: list[int]
    wall_s: float
    marked: list[bool] | None = None  # per request: whether its answer held the load's marker

    @property
    def errors(self) -> int:
        return sum(1 for s in self.statuses if not 200 <= s < 300)


def run_concurrently(
    work: Sequence[T],
    call: Callable[[T], int],
    concurrency: int,
    setup: Callable[[], None] | None = None,
    *,
    pause_s: float = 0.0,
) -> Timed:
    """Each unit of `work` through `call` (which returns a status), from `concurrency` threads that take the
    next unit as they finish one; each call is timed. `setup` runs in every thread before the clock starts.
    `pause_s`: each thread waits that long after an answer before it sends the next (a person's think time
    between keystrokes), outside the timed call."""
    latencies = [0.0] * len(work)
    statuses = [0] * len(work)
    next_index = iter(range(len(work)))
    lock = threading.Lock()
    workers = max(1, concurrency)
    ready = threading.Barrier(workers + 1)
    failures: list[BaseException] = []

    def loop() -> None:
        try:
            if setup is not None:
                setup()
        except BaseException as exc:
            failures.append(exc)
        ready.wait()
        ready.wait()  # the clock has started
        while not failures:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                statuses[i] = call(work[i])
            except Exception:
                statuses[i] = -1
            latencies[i] = (time.perf_counter() - start) * 1000
            if pause_s > 0:
                time.sleep(pause_s)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    ready.wait()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"a worker thread could not start: {failures[0]!r}") from failures[0]
    return Timed(latencies, statuses, time.perf_counter() - started)


def http_load(
    base_url: str,
    paths: Sequence[str],
    concurrency: int,
    timeout: float = 600,
    *,
    bodies: Sequence[str] | None = None,
    pause_s: float = 0.0,
    marker: str | None = None,
) -> Timed:
    """GET each path (or with `bodies`, POST each its JSON body) from a second process on loopback
    (`services.bench.load`), `concurrency` at a time, each client waiting `pause_s` after each answer;
    `marker`: which answers' bodies hold that text (`Timed.marked`)."""
    request: dict[str, Any] = {"base_url": base_url, "paths": list(paths), "concurrency": concurrency}
    if pause_s > 0:
        request["pause_s"] = pause_s
    if marker is not None:
        request["marker"] = marker
    if bodies is not None:
        request |= {"method": "POST", "bodies": list(bodies)}
    spec = json.dumps(request)
    proc = subprocess.run(
        [sys.executable, "-m", "services.bench.load"],
        input=spec,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout)
    return Timed(out["latencies_ms"], out["statuses"], out["wall_s"], out.get("marked"))


def alternating_rounds(
    runners: Mapping[str, Callable[[W], Timed]], work: Callable[[str, int], W], rounds: int, steps: Steps
) -> dict[str, dict[str, Any]]:
    """Each measure's runner on `work(measure, round)`, in rounds that alternate the measures' order (a busy
    neighbour then weighs on each alike); per measure, its errors and latency figures (`Latency`)."""
    samples: dict[str, list[float]] = {key: [] for key in runners}
    errors = dict.fromkeys(runners, 0)
    for r in range(rounds):
        for key in runners if r % 2 == 0 else reversed(list(runners)):
            timed = runners[key](work(key, r))
            samples[key].extend(timed.latencies_ms)
            errors[key] += timed.errors
            steps.advance(len(timed.latencies_ms))
    return {key: {"errors": errors[key], **Latency.of(found).to_json()} for key, found in samples.items()}


# ---- reports -----------------------------------------------------------------------------------------------


def replace_section(path: Path, heading: str, body: str, preamble: str = "") -> None:
    """Write `## heading` + body into a Markdown file, replacing that section (up to the next `## `) if present."""
    text = path.read_text() if path.exists() else preamble
    section = f"## {heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align_right_from: int = 1) -> str:
    line = "| " + " | ".join(header) + " |"
    sep = "|" + "|".join("---" if i < align_right_from else "---:" for i in range(len(header))) + "|"
    return "\n".join([line, sep, *("| " + " | ".join(r) + " |" for r in rows)])
