"""Parsing onnxruntime_perf_test output, on real outputs (data/, each with its source in its header)."""

from __future__ import annotations

import pytest

from adacomp.device_farm.devices.perf_output import (
    Z90,
    PerfOutputError,
    latency_stats,
    parse_perf_output,
    parse_result_file,
)
from tests.helpers.perf_test_samples import SME2_RUNS_S, load_sample, result_file


def test_recent_android_output() -> None:
    out = parse_perf_output(load_sample("perf_test_android_sme2.txt"))
    assert out.mean_ms == 98.961997
    assert out.requests == 5
    assert out.total_time_s == 0.49481
    assert out.run_time_s == 0.494854
    assert out.session_creation_s == 0.217932
    assert out.peak_working_set_bytes == 271122432
    assert out.percentiles_ms == pytest.approx(
        {
            "min": 95.8204,
            "max": 101.519,
            "p50": 99.5086,
            "p90": 101.519,
            "p95": 101.519,
            "p99": 101.519,
            "p999": 101.519,
        }
    )


def test_recent_output_with_random_inputs() -> None:
    out = parse_perf_output(load_sample("perf_test_spacemit_k1.txt"))
    assert (out.mean_ms, out.requests, out.peak_working_set_bytes) == (7.270205, 10, 91336704)
    assert out.total_time_s == 0.0727021 and out.run_time_s == 0.0727619
    assert out.percentiles_ms["p50"] == pytest.approx(7.27787)
    assert out.percentiles_ms["p90"] == pytest.approx(7.30163)


def test_old_output_without_percentiles() -> None:
    out = parse_perf_output(load_sample("perf_test_acl_1_3_1.txt"))
    assert (out.mean_ms, out.requests, out.peak_working_set_bytes) == (144.871, 10, 158171136)
    assert out.total_time_s == 1.44871 and out.run_time_s == 1.44916
    assert out.percentiles_ms == {}
    with pytest.raises(PerfOutputError, match="no P50/P90"):
        latency_stats(out)


def test_oldest_format_from_the_perftest_readme() -> None:
    # onnxruntime/test/perftest/README.md "Sample output" (2019), its tab indentation removed.
    text = (
        "Total time cost:58.8053\nTotal iterations:1000\nAverage time cost:58.8053 ms\n"
        "Total run time:58.8102 s\n"
        "Min Latency is 0.0559777sec\nMax Latency is 0.0623472sec\nP50 Latency is 0.0587108sec\n"
        "P90 Latency is 0.0599845sec\n"
    )
    out = parse_perf_output(text)
    assert (out.mean_ms, out.requests, out.total_time_s, out.run_time_s) == (58.8053, 1000, 58.8053, 58.8102)
    assert out.percentiles_ms["p50"] == pytest.approx(58.7108)
    assert out.percentiles_ms["p90"] == pytest.approx(59.9845)


def test_stats_from_percentiles_estimate_std_and_say_so() -> None:
    stats, note = latency_stats(parse_perf_output(load_sample("perf_test_android_sme2.txt")))
    assert stats.median_ms == pytest.approx(99.5086)
    assert stats.p90_ms == pytest.approx(101.519)
    assert stats.mean_ms == 98.961997
    assert stats.std_ms == pytest.approx((101.519 - 99.5086) / 1.2816)
    assert stats.runs == 5
    assert "estimated" in note and str(Z90) in note


def test_stats_from_the_result_file_use_the_real_runs() -> None:
    out = parse_perf_output(load_sample("perf_test_android_sme2.txt"))
    samples = parse_result_file(result_file(SME2_RUNS_S), out)
    assert samples == pytest.approx([v * 1000 for v in SME2_RUNS_S])
    stats, note = latency_stats(out, samples)
    assert stats.median_ms == pytest.approx(99.5086)  # agrees with perf_test's own P50
    assert stats.p90_ms == pytest.approx(101.519)
    assert stats.mean_ms == pytest.approx(98.962)
    assert stats.std_ms == pytest.approx(1.8645, abs=1e-4)  # population std of the five
    assert stats.runs == 5 and "per-run" in note


def test_result_file_in_nanoseconds_is_recognised() -> None:
    out = parse_perf_output(load_sample("perf_test_android_sme2.txt"))
    samples = parse_result_file(result_file([v * 1e9 for v in SME2_RUNS_S]), out)
    assert samples == pytest.approx([v * 1000 for v in SME2_RUNS_S])


@pytest.mark.parametrize(
    "text",
    [
        result_file(SME2_RUNS_S[:4]),  # a run missing
        result_file([v * 2 for v in SME2_RUNS_S]),  # does not add up to the printed total
        "models,abc,1,1,0\n" * 5,
        "no commas here\n",
    ],
)
def test_untrustworthy_result_files_are_ignored(text: str) -> None:
    out = parse_perf_output(load_sample("perf_test_android_sme2.txt"))
    assert parse_result_file(text, out) is None


def test_statistics_lines_in_the_result_file_are_skipped() -> None:
    out = parse_perf_output(load_sample("perf_test_android_sme2.txt"))
    text = result_file(SME2_RUNS_S) + "\nMin Latency: 0.0958204 s\nP50 Latency: 0.0995086 s\n"
    assert parse_result_file(text, out) is not None


@pytest.mark.parametrize(
    "text",
    ["", "Segmentation fault\n", "Total inference requests: 5\n", "Average inference time cost: 3 ms\n"],
)
def test_unparseable_output_is_refused_with_its_last_line(text: str) -> None:
    with pytest.raises(PerfOutputError, match="perf_test output has no"):
        parse_perf_output(text)


def test_crlf_from_an_old_adb_is_accepted() -> None:
    text = load_sample("perf_test_android_sme2.txt").replace("\n", "\r\n")
    assert parse_perf_output(text).percentiles_ms["p50"] == pytest.approx(99.5086)
