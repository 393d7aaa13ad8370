"""bench/load.py --server-cpus: the CPU list it reads, and the lists it refuses."""

import os

import pytest
from bench_scripts import load

SENTENCES = ["--sentences", "x.txt", "--serve"]


@pytest.mark.parametrize(
    ("spec", "cpus"), [("0", {0}), ("0-1", {0, 1}), ("0-1,4", {0, 1, 4}), ("3,1-2", {1, 2, 3})]
)
def test_cpu_lists_read_as_taskset_reads_them(spec: str, cpus: set[int]) -> None:
    assert load.parse_cpus(spec) == cpus


@pytest.mark.parametrize("spec", ["", "a", "0-", "1,,2", "3-1"])
def test_malformed_cpu_lists_are_refused(spec: str) -> None:
    with pytest.raises(load.argparse.ArgumentTypeError, match="CPU"):
        load.parse_cpus(spec)


def test_the_server_cannot_take_every_cpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The load generator needs CPUs of its own, else it would share the server's again."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    with pytest.raises(SystemExit):
        load.parse_args([*SENTENCES, "--server-cpus", "0-1"])
    assert "proper subset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load.parse_args([*SENTENCES, "--server-cpus", "1-2"])
    assert load.parse_args([*SENTENCES, "--server-cpus", "1"]).server_cpus == {1}
    with pytest.raises(SystemExit):
        load.parse_args(["--sentences", "x.txt", "--server-cpus", "1"])  # no server to pin
    assert "needs --serve" in capsys.readouterr().err
