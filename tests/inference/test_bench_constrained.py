"""The constrained-decoding benchmark's machinery, one short round on the tiny model (its figures are not checked)."""

from __future__ import annotations

from inference.bench.constrained import bench, table


async def test_one_round_measures_every_figure_and_the_ttft_pair_shares_its_prompt(tiny_model_dir):
    report = await bench(str(tiny_model_dir), rounds=1, c1_tokens=6, c8_tokens=6)

    assert [row["label"].split(",")[0] for row in report["figures"]] == [
        "json_schema vs unconstrained tok/s",
        "json_schema vs unconstrained tok/s",
        "4+4 mixed: unconstrained rows vs a plain batch of 8",
        "first tool-call event vs plain first token",
    ]
    assert all(row["median"] > 0 and row["measured"] > 0 and row["baseline"] > 0 for row in report["figures"])
    plain, tool = report["ttft_prompt_tokens"].values()
    assert plain == tool > 100
    assert "| json_schema vs unconstrained tok/s, concurrency 8 |" in table(report)
