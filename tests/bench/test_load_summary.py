"""bench/load.py's summary of interleaved runs: the figures quoted for the service's floors."""

import pytest
from bench_scripts import load


def run(label: str, req_s: float, of_offline: float | None = None) -> "load.RunResult":
    return load.RunResult(
        label, 32, 1, 30.0, int(req_s * 30), 0, req_s, req_s, 1.0, 2.0, 3.0, None, None, None,
        of_offline=of_offline,
    )  # fmt: skip


def test_ratios_pair_the_kth_run_of_each_label_and_take_the_median() -> None:
    results = [
        run("default", 400.0, 0.40),
        run("nobatch", 100.0, 0.10),
        run("default", 600.0, 0.45),
        run("nobatch", 100.0, 0.09),
        run("default", 450.0, 0.41),
        run("nobatch", 90.0, 0.08),
    ]
    lines = load.rounds_summary(results)
    assert lines[0] == "default: median 450.0 req/s over 3 run(s), median 0.410 of offline"
    assert lines[1] == "nobatch: median 100.0 req/s over 3 run(s), median 0.090 of offline"
    # rounds: 400/100, 600/100, 450/90 -> 4, 6, 5; not the ratio of the medians (4.5)
    assert lines[2] == "default / nobatch by round: 4.00, 6.00, 5.00; median 5.00x"


def test_a_single_run_has_no_summary_and_offline_is_optional() -> None:
    assert load.rounds_summary([run("default", 400.0)]) == []
    lines = load.rounds_summary([run("a", 300.0), run("b", 0.0), run("a", 200.0)])
    assert lines[0] == "a: median 250.0 req/s over 2 run(s)"
    assert lines[2:] == []  # b answered nothing: no ratio to show, and no division by zero


@pytest.mark.parametrize("count", [2, 3])
def test_a_repeated_label_alone_gets_its_median(count: int) -> None:
    lines = load.rounds_summary([run("soak", 100.0 * (i + 1)) for i in range(count)])
    assert lines == [f"soak: median {100.0 * (count + 1) / 2:.1f} req/s over {count} run(s)"]
