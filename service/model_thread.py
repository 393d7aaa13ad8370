"""The one thread that runs every in-process model's torch work: loading, warm-up, batches.

Why one: PyTorch's CPU kernels run in OpenMP parallel regions, and GNU OpenMP keeps a team of
threads per calling thread. Between regions a team's threads spin for their next task, which is
what makes back-to-back small regions (a search step) fast, but only while the process has no
more OpenMP threads than CPUs: with a second calling thread's team on top, libgomp spins a few
iterations at most and every region pays futex wake-ups. On the 2-core dev machine a batch of 32
greedy translations took 17-19 ms when one thread did all the work and 42-49 ms when the model was
loaded on one thread and run on another (bench/README.md). asyncio's default pool gives no such
guarantee: it starts a second thread whenever a call arrives before the first one is marked idle.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def model_thread_executor() -> ThreadPoolExecutor:
    """A pool of exactly one thread, named so that profilers and `top -H` show it."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="nmt-model")
