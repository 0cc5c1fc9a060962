"""The evaluation benchmark's machinery, one short round on the tiny model (its figures are not checked)."""

from __future__ import annotations

from inference.bench.evaluation import bench, table


async def test_one_round_measures_every_figure(tiny_model_dir):
    report = await bench(str(tiny_model_dir), rounds=1, c1_tokens=6, c8_tokens=6, prompt_tokens=60, n_tokens=4)

    assert [row["label"].split(",")[0] for row in report["figures"]] == [
        "logprobs (top 5) vs none",
        "logprobs (top 5) vs none",
        "n: 4 vs 4 separate requests",
    ]
    assert all(row["median"] > 0 and row["measured"] > 0 and row["baseline"] > 0 for row in report["figures"])
    assert report["n_prompt_tokens"] > 50
    assert "| logprobs (top 5) vs none, tok/s, concurrency 8 |" in table(report)
