"""Load benchmark for the translation service: N concurrent clients, one sentence at a time.

Each client posts one sentence to /v1/translate, waits for the answer, and sends the next,
for `--duration` seconds or until `--max-requests` requests in all, whichever comes first.
Only 127.0.0.1 is ever contacted.

Against a running server:
    python bench/load.py --sentences test.en.gz --url http://127.0.0.1:8000 --pid 1234

Starting the server itself, once per `--run` (env overrides), e.g. batching on vs off:
    python bench/load.py --sentences ../shared/data/multi30k/test_2016_flickr.en.gz \\
        --serve --run default --run nobatch:NMT_MAX_BATCH_SIZE=1 --clients 32 --duration 60

Prints one row per run: requests/s, sentences/s, p50/p95/p99 latency, errors, and the server's
RSS after start-up (RSS0), a tenth of the way into the measured load (RSS10%, sampled every
second: the server is warm by then, so RSS1 - RSS10% is what a long run grew) and at the end
(RSS1), with its peak (VmHWM), read from /proc/PID/status and summed over the server and its
model worker processes. Then, to show where the time went during the
measured load: the mean batch size and model time per batch (from the server's /metrics), and
the CPU cores the server and this load generator used (they share the machine). With
`--offline BUNDLE`, each run is preceded by an offline timing of the same model on the same
sentences (as `bench/decode.py` times "batched"), and the row ends with it and the run's
fraction of it: on a shared machine whose speed drifts, the ratio is only fair within one run.
With `--server-cpus 0-1` on a machine with more cores, the server and the offline timing run
on those CPUs alone and the load generator on the rest, so the two no longer share cores.
Give the `--run`s in rounds (A, B, A, B, ...): the last lines are each label's medians and the
first label's requests/s over each other's, round by round, with their median.

Two clients: `--client httpx` (httpx.AsyncClient) and `--client streams` (the default), a
keep-alive HTTP/1.1 client of a few lines on asyncio streams. Both send the same requests and
count only 200s as successes. On the 2-core dev machine httpx used 4.5 ms of CPU per request
against 0.14 ms for the streams client (32 clients polling /health), so with httpx the load
generator took about half of the cores the server under test needs. The load generator runs
on uvloop where it is installed: 0.065-0.083 ms of CPU per request against 0.098-0.102 on
asyncio's own loop (against `bench/echo_server.py`, 32 clients).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import itertools
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import httpx
from prometheus_client.parser import text_string_to_metric_families

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class RunResult:
    label: str
    clients: int
    beam: int
    seconds: float
    requests: int
    errors: int
    requests_per_s: float
    sentences_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rss_start_mb: float | None
    rss_end_mb: float | None
    rss_peak_mb: float | None
    rss_warm_mb: float | None = None  # a tenth of the way into the measured load
    mean_batch: float | None = None  # sentences per batch during the measured load
    batch_ms: float | None = None  # model time per batch
    server_cores: float | None = None  # server CPU seconds per second
    client_cores: float | None = None  # this process's CPU seconds per second
    offline_per_s: float | None = None  # --offline: the same model offline, just before
    of_offline: float | None = None  # sentences_per_s / offline_per_s


@dataclass
class Probe:
    """Counters read before and after the measured load; their difference is what it cost."""

    batches: float = 0.0
    sentences: float = 0.0
    compute_s: float = 0.0
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0


class Load(NamedTuple):
    """What `run_load` measured."""

    latencies: list[float]  # of successful requests, s
    requests: int  # sent
    errors: int
    elapsed: float  # s
    before: Probe
    after: Probe
    rss_samples: list[tuple[float, float]]  # (s into the measured load, server RSS MiB)


def rss_at(samples: list[tuple[float, float]], seconds: float) -> float | None:
    """The first RSS sample taken at or after `seconds` (None when there is none)."""
    return next((rss for at, rss in samples if at >= seconds), None)


async def sample_rss(
    pid: int | None, started: float, every: float, out: list[tuple[float, float]]
) -> None:
    """Append (seconds since `started`, RSS MiB) of the server every `every` s until cancelled."""
    while pid is not None:
        rss, _ = proc_memory_mb(pid)
        if rss is not None:
            out.append((time.monotonic() - started, rss))
        await asyncio.sleep(every)


async def probe(client: httpx.AsyncClient, pid: int | None) -> Probe:
    sums: dict[str, float] = {}
    try:
        text = (await client.get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    except httpx.HTTPError:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Probe(
        sums.get("nmt_batch_size_count", 0.0),
        sums.get("nmt_batch_size_sum", 0.0),
        sums.get("nmt_batch_compute_seconds_sum", 0.0),
        proc_cpu_s(pid),
        usage.ru_utime + usage.ru_stime,
    )


def process_tree(pid: int) -> list[int]:
    """`pid` and its live descendants (the server's model worker processes), from /proc."""
    found, index = [pid], 0
    while index < len(found):
        for task in Path(f"/proc/{found[index]}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the process ended meanwhile
                found.extend(int(child) for child in task.read_text().split())
        index += 1
    return found


def proc_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of `pid` and its live descendants, from /proc/PID/stat."""
    if pid is None:
        return None
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def read_sentences(path: Path, limit: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        lines = [line.strip() for line in itertools.islice(f, limit)]
    sentences = [line for line in lines if line]
    if not sentences:
        sys.exit(f"{path}: no sentences")
    return sentences


def proc_memory_mb(pid: int | None) -> tuple[float | None, float | None]:
    """(VmRSS, VmHWM) in MiB of `pid` plus its live descendants, from /proc (None when unknown).

    The peak is the sum of each process's own peak: at least the tree's true peak.
    """
    if pid is None:
        return None, None
    values: dict[str, float] = {}
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = values.get(key, 0.0) + int(rest.split()[0]) / 1024  # kB->MiB
        except OSError:
            if member == pid:
                return None, None
    return values.get("VmRSS"), values.get("VmHWM")


class StreamsClient:
    """One keep-alive HTTP/1.1 connection: POST a JSON body, read the status and the body."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.timeout = timeout
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: dict[str, object]) -> int:
        """The response's status code; raises OSError (or TimeoutError) when the exchange fails."""
        try:
            async with asyncio.timeout(self.timeout):  # no task per request, as wait_for makes
                return await self._exchange(path, body)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            await self.close()  # reconnect on the next request
            raise OSError("request failed") from None

    async def _exchange(self, path: str, body: dict[str, object]) -> int:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        payload = json.dumps(body).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"{self.extra}Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
        await reader.readexactly(int(fields["content-length"]))
        return int(head[0].split()[1])

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(q) - 1]


async def run_load(
    url: str, sentences: list[str], args: argparse.Namespace, pid: int | None
) -> Load:
    latencies: list[float] = []
    counter = itertools.count()
    errors = 0
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)

    async def post(client: httpx.AsyncClient | StreamsClient, body: dict[str, object]) -> bool:
        try:
            if isinstance(client, StreamsClient):
                return await client.post("/v1/translate", body) == 200
            response = await client.post("/v1/translate", json=body, headers=headers)
        except (httpx.HTTPError, OSError):
            return False
        return response.status_code == 200

    async def client_loop(client: httpx.AsyncClient, stop_at: float, record: bool) -> None:
        nonlocal errors
        own = StreamsClient(url, headers, args.timeout) if args.client == "streams" else client
        while time.monotonic() < stop_at:
            n = next(counter)
            if record and n >= args.max_requests:
                break
            text = sentences[n % len(sentences)]
            body: dict[str, object] = {"text": text, "beam_size": args.beam}
            started = time.perf_counter()
            ok = await post(own, body)
            if record:
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
        if isinstance(own, StreamsClient):
            await own.close()

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=args.timeout) as client:
        if args.warmup > 0:
            stop = time.monotonic() + args.warmup
            await asyncio.gather(*(client_loop(client, stop, False) for _ in range(args.clients)))
        counter = itertools.count()
        before = await probe(client, pid)
        started = time.monotonic()
        stop = started + args.duration
        rss_samples: list[tuple[float, float]] = []
        sampler = asyncio.create_task(sample_rss(pid, started, args.rss_every, rss_samples))
        await asyncio.gather(*(client_loop(client, stop, True) for _ in range(args.clients)))
        elapsed = time.monotonic() - started
        sampler.cancel()
        after = await probe(client, pid)
    return Load(latencies, len(latencies) + errors, errors, elapsed, before, after, rss_samples)


def summarize(
    label: str,
    args: argparse.Namespace,
    load: Load,
    rss_start: float | None,
    rss_end: float | None,
    rss_peak: float | None,
) -> RunResult:
    latencies, requests, errors, elapsed, before, after, rss_samples = load
    ordered = sorted(latencies)
    batches = after.batches - before.batches
    server_cpu = None
    if after.server_cpu_s is not None and before.server_cpu_s is not None:
        server_cpu = (after.server_cpu_s - before.server_cpu_s) / elapsed
    return RunResult(
        label=label,
        clients=args.clients,
        beam=args.beam,
        seconds=round(elapsed, 1),
        requests=requests,
        errors=errors,
        requests_per_s=round(requests / elapsed, 2),
        sentences_per_s=round(len(latencies) / elapsed, 2),  # one sentence per request
        p50_ms=round(percentile(ordered, 50) * 1000, 1),
        p95_ms=round(percentile(ordered, 95) * 1000, 1),
        p99_ms=round(percentile(ordered, 99) * 1000, 1),
        rss_start_mb=_round(rss_start),
        rss_end_mb=_round(rss_end),
        rss_peak_mb=_round(rss_peak),
        rss_warm_mb=_round(rss_at(rss_samples, elapsed / 10)),
        mean_batch=_round((after.sentences - before.sentences) / batches) if batches else None,
        batch_ms=_round(1000 * (after.compute_s - before.compute_s) / batches) if batches else None,
        server_cores=_round(server_cpu, 2),
        client_cores=_round((after.client_cpu_s - before.client_cpu_s) / elapsed, 2),
    )


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_cpus(spec: str) -> set[int]:
    """'0-1,4' -> {0, 1, 4}, as taskset -c reads a CPU list."""
    cpus: set[int] = set()
    try:
        for part in spec.split(","):
            first, dash, last = part.partition("-")
            start, end = int(first), int(last if dash else first)
            if end < start:
                raise ValueError(part)
            cpus.update(range(start, end + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a CPU list such as 0-1,4, got {spec!r}"
        ) from None
    return cpus


def parse_run(spec: str) -> tuple[str, dict[str, str]]:
    """'label:KEY=VAL,KEY=VAL' or 'default' -> (label, env)."""
    label, _, assignments = spec.partition(":")
    env = {}
    for item in filter(None, assignments.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.startswith("NMT_"):
            sys.exit(f"--run {spec!r}: expected label:NMT_NAME=value[,...]")
        env[key] = value
    return label, env


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                sys.exit(f"server exited with status {proc.returncode} during start-up")
            try:
                if (await client.get("/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    sys.exit(f"server not ready after {timeout:g} s")


async def serve_and_load(
    label: str, env: dict[str, str], sentences: list[str], args: argparse.Namespace
) -> RunResult:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {**os.environ, **env, "NMT_HOST": "127.0.0.1", "NMT_PORT": str(port)}
    full_env.setdefault("NMT_LOG_LEVEL", "warning")
    if args.server_cpus:
        full_env.setdefault("NMT_THREADS", str(len(args.server_cpus)))
    proc = subprocess.Popen([sys.executable, "-m", "service"], env=full_env)
    if args.server_cpus:  # before the server imports torch: its threads inherit the mask
        os.sched_setaffinity(proc.pid, args.server_cpus)
    try:
        await wait_ready(url, proc, args.startup_timeout)
        rss_start, _ = proc_memory_mb(proc.pid)
        load = await run_load(url, sentences, args, proc.pid)
        rss_end, rss_peak = proc_memory_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return summarize(label, args, load, rss_start, rss_end, rss_peak)


def offline_rate(
    model: Path, sentences: list[str], beam: int, batch_tokens: int, env: dict[str, str]
) -> float:
    """Sentences/s of `model` translating `sentences` offline: length-sorted batches of
    `batch_tokens` (bench/decode.py's "batched"), on the device and precision the run's server
    gets from NMT_DEVICE and NMT_QUANTIZE (their defaults: auto, so int8 on CPU), on every core
    this process may use, in as many lanes where the model has them (the library's default,
    whatever the run's NMT_LANES), median of 3. Measured in this process just before a run,
    while no server is up, so the service/offline ratio is taken within one run of a noisy
    machine."""
    # imported only with --offline: the load generator itself stays light
    from model import DecodeOptions, load_on_cores

    translator = load_on_cores(
        model,
        device=env.get("NMT_DEVICE", "auto"),
        quantize=env.get("NMT_QUANTIZE", "auto"),
        batch_tokens=batch_tokens,
    )
    options = DecodeOptions(beam_size=beam)
    translator.translate(sentences[:8], options)  # warm-up
    times = []
    for _ in range(3):
        started = time.perf_counter()
        translator.translate(sentences, options)
        times.append(time.perf_counter() - started)
    return len(sentences) / statistics.median(times)


async def main_async(args: argparse.Namespace) -> list[RunResult]:
    sentences = read_sentences(args.sentences, args.max_sentences)
    if not args.serve:
        if urlparse(args.url).hostname not in LOCAL_HOSTS:
            sys.exit(f"--url must point at 127.0.0.1 (got {args.url})")
        rss_start, _ = proc_memory_mb(args.pid)
        load = await run_load(args.url, sentences, args, args.pid)
        rss_end, rss_peak = proc_memory_mb(args.pid)
        return [summarize("external", args, load, rss_start, rss_end, rss_peak)]
    results = []
    load_cpus = os.sched_getaffinity(0) - set(args.server_cpus or ())
    for spec in args.run or ["default"]:
        label, env = parse_run(spec)
        offline = None
        if args.offline:
            if args.server_cpus:  # offline gets the cores the server will get
                os.sched_setaffinity(0, args.server_cpus)
            run_env = {**os.environ, **env}
            offline = offline_rate(
                args.offline, sentences, args.beam, args.offline_batch_tokens, run_env
            )
        if args.server_cpus:
            os.sched_setaffinity(0, load_cpus)
        result = await serve_and_load(label, env, sentences, args)
        if offline is not None:
            result.offline_per_s = round(offline, 1)
            result.of_offline = round(result.sentences_per_s / offline, 3)
        results.append(result)
        print_table(results[-1:], header=len(results) == 1)
    return results


COLUMNS = [
    ("label", "{:<12}"),
    ("clients", "{:>7}"),
    ("beam", "{:>4}"),
    ("requests", "{:>8}"),
    ("requests_per_s", "{:>8}"),
    ("sentences_per_s", "{:>8}"),
    ("p50_ms", "{:>8}"),
    ("p95_ms", "{:>8}"),
    ("p99_ms", "{:>8}"),
    ("errors", "{:>6}"),
    ("rss_start_mb", "{:>9}"),
    ("rss_warm_mb", "{:>9}"),
    ("rss_end_mb", "{:>9}"),
    ("rss_peak_mb", "{:>9}"),
    ("mean_batch", "{:>6}"),
    ("batch_ms", "{:>8}"),
    ("server_cores", "{:>6}"),
    ("client_cores", "{:>6}"),
    ("offline_per_s", "{:>8}"),
    ("of_offline", "{:>6}"),
]
HEADERS = [
    "run",
    "clients",
    "beam",
    "requests",
    "req/s",
    "sent/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "errors",
    "RSS0 MiB",
    "RSS10%",
    "RSS1 MiB",
    "peak MiB",
    "batch",
    "batch ms",
    "srvCPU",
    "cliCPU",
    "offline",
    "ratio",
]


def rounds_summary(results: list[RunResult]) -> list[str]:
    """Lines comparing repeated, interleaved runs: each label's median requests/s (and fraction
    of offline), and the first label's requests/s over each other label's, round by round.

    Round k holds the k-th run of every label, measured minutes apart, so their ratio is the
    fair one on a machine whose speed drifts; the median of the rounds is the figure to quote.
    Empty for a single run.
    """
    if len(results) < 2:
        return []
    by_label: dict[str, list[RunResult]] = {}
    for result in results:
        by_label.setdefault(result.label, []).append(result)
    lines = []
    for label, runs in by_label.items():
        rates = [r.requests_per_s for r in runs]
        line = f"{label}: median {statistics.median(rates):.1f} req/s over {len(runs)} run(s)"
        fractions = [r.of_offline for r in runs if r.of_offline is not None]
        if fractions:
            line += f", median {statistics.median(fractions):.3f} of offline"
        lines.append(line)
    first, *others = by_label
    for other in others:
        ratios = [
            a.requests_per_s / b.requests_per_s
            for a, b in zip(by_label[first], by_label[other], strict=False)
            if b.requests_per_s > 0
        ]
        if ratios:
            shown = ", ".join(f"{r:.2f}" for r in ratios)
            lines.append(
                f"{first} / {other} by round: {shown}; median {statistics.median(ratios):.2f}x"
            )
    return lines


def print_table(results: list[RunResult], header: bool = True) -> None:
    if header:
        print(" ".join(fmt.format(h) for h, (_, fmt) in zip(HEADERS, COLUMNS, strict=True)))
    for result in results:
        row = asdict(result)
        cells = ["-" if row[name] is None else row[name] for name, _ in COLUMNS]
        print(" ".join(fmt.format(c) for c, (_, fmt) in zip(cells, COLUMNS, strict=True)))
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sentences", type=Path, required=True, help="one sentence per line (.gz ok)")
    p.add_argument("--max-sentences", type=int, default=10_000, help="read at most this many")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server to load (127.0.0.1)")
    p.add_argument("--pid", type=int, help="server PID, to report its RSS (with --url)")
    p.add_argument("--serve", action="store_true", help="start `python -m service` per run")
    p.add_argument(
        "--run",
        action="append",
        metavar="LABEL[:NMT_X=V,...]",
        help="with --serve: one server configuration per flag (default: 'default')",
    )
    p.add_argument("--clients", type=int, default=32, help="concurrent clients")
    p.add_argument(
        "--client",
        choices=["streams", "httpx"],
        default="streams",
        help="HTTP client (see above: httpx costs 30x the CPU per request)",
    )
    p.add_argument("--duration", type=float, default=30.0, help="seconds of measured load")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="cap on measured requests")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first")
    p.add_argument("--rss-every", type=float, default=1.0, help="server RSS sampling period, s")
    p.add_argument("--beam", type=int, default=1, help="beam_size per request (1 = greedy)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request client timeout, s")
    p.add_argument("--startup-timeout", type=float, default=300.0, help="wait for /ready, s")
    p.add_argument(
        "--offline",
        type=Path,
        metavar="BUNDLE",
        help="with --serve: before each run, time BUNDLE offline on the same sentences and beam "
        "(sentences/s) and print the run's sentences/s as a fraction of it",
    )
    p.add_argument(
        "--offline-batch-tokens",
        type=int,
        default=4096,
        help="offline batch budget: bench/decode.py's default, and the fastest for greedy",
    )
    p.add_argument(
        "--server-cpus",
        type=parse_cpus,
        metavar="LIST",
        help="with --serve, on a machine with cores to spare: run the server (and the offline "
        "timing) on these CPUs only, e.g. 0-1, and this load generator on the others",
    )
    p.add_argument("--api-key", help="sent as X-API-Key")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    if args.clients < 1 or args.duration <= 0 or args.duration > 3600:
        p.error("need --clients >= 1 and 0 < --duration <= 3600")
    if args.server_cpus and not args.serve:
        p.error("--server-cpus needs --serve: it pins the server this script starts")
    if args.server_cpus:
        allowed = os.sched_getaffinity(0)
        if not args.server_cpus < allowed:
            p.error(
                f"--server-cpus must be a proper subset of the CPUs this process may use "
                f"({sorted(allowed)}), leaving some for the load generator"
            )
    return args


def event_loop() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop where installed (the service's own dependency): a third less of the load
    generator's CPU per request than asyncio's loop, CPU the server under test shares."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with asyncio.Runner(loop_factory=event_loop()) as runner:
        results = runner.run(main_async(args))
    if not args.serve:
        print_table(results)
    for line in rounds_summary(results):
        print(line)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


if __name__ == "__main__":
    main()
