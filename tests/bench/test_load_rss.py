"""bench/load.py's RSS reading: the figure quoted for "does not grow over a 10-minute run"."""

import argparse
import asyncio
import os
import time

from bench_scripts import load


def test_rss_at_takes_the_first_sample_at_or_after_the_time() -> None:
    samples = [(0.2, 100.0), (1.0, 110.0), (3.0, 120.0), (6.0, 121.0)]
    assert load.rss_at(samples, 1.0) == 110.0
    assert load.rss_at(samples, 1.5) == 120.0
    assert load.rss_at(samples, 7.0) is None
    assert load.rss_at([], 0.0) is None


def test_summary_reports_rss_a_tenth_into_the_load_not_at_start_up() -> None:
    args = argparse.Namespace(clients=2, beam=1)
    probe = load.Probe()
    samples = [(0.5, 300.0), (2.5, 350.0), (3.5, 352.0), (29.5, 353.0)]
    measured = load.Load([0.01, 0.02], 2, 0, 30.0, probe, probe, samples)
    result = load.summarize("soak", args, measured, 280.0, 353.5, 360.0)
    assert (result.rss_start_mb, result.rss_warm_mb, result.rss_end_mb) == (280.0, 352.0, 353.5)


def test_sampler_reads_this_process_every_period_until_cancelled() -> None:
    samples: list[tuple[float, float]] = []

    async def sample_briefly() -> None:
        task = asyncio.create_task(load.sample_rss(os.getpid(), time.monotonic(), 0.05, samples))
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(sample_briefly())
    count = len(samples)
    assert 3 <= count <= 8
    times = [at for at, _ in samples]
    assert times == sorted(times) and times[0] < 0.05
    rss_now, _ = load.proc_memory_mb(os.getpid())
    assert all(0.5 * rss_now < rss < 2 * rss_now for _, rss in samples)
    time.sleep(0.1)
    assert len(samples) == count  # cancelled means stopped
