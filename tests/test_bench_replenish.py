"""bench.replenish: the generator matches the research notes' ruler, and --json carries the agreed keys."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import replenish


@pytest.mark.parametrize("dispersion", [2.0, 10.0])
def test_generator_statistics_match_research_notes(dispersion):
    g = replenish.generate(800, dispersion, seed=5)
    stats = replenish.generator_stats(g)
    assert 0.44 <= stats["zero_day_share"] <= 0.56  # ≈ 50 % zero product-days
    mix = stats["velocity_mix"]
    assert abs(mix["below_0.5"] - 0.38) < 0.05
    assert abs(mix["0.5_to_3"] - 0.48) < 0.05
    assert abs(mix["above_3"] - 0.14) < 0.04
    assert abs(stats["promo_sku_share"] - 0.30) < 0.06
    assert 0.01 < stats["promo_share"] < 0.04
    assert set(np.unique(g.lead_nominal)) <= {3.0, 5.0, 7.0, 10.0, 14.0}


def test_generator_is_deterministic_per_seed():
    a, b = replenish.generate(50, 2.0, seed=3), replenish.generate(50, 2.0, seed=3)
    np.testing.assert_array_equal(a.demand, b.demand)
    assert not np.array_equal(a.demand, replenish.generate(50, 2.0, seed=4).demand)


def test_json_output_keys(capsys):
    assert replenish.main(["--skus", "150", "--seed", "2", "--json", "--no-timing"]) == 0
    out = json.loads(capsys.readouterr().out)
    for policy in ("static", "dynamic", "oracle"):
        for key in ("hit_month", "hit_month_fast", "wape", "bias", "fill_rate", "stockout_days", "inventory_days"):
            assert isinstance(out[policy][key], float), (policy, key)
        assert 0 <= out[policy]["hit_month"] <= 1 and 0 < out[policy]["fill_rate"] <= 1
    assert "inventory_at_matched_fill" in out and "seconds" in out
    assert set(out["generator"]) >= {"zero_day_share", "velocity_mix", "promo_share"}
    # the oracle knows the true means: its monthly forecast cannot be beaten on the same windows by much
    assert out["oracle"]["hit_month"] >= out["static"]["hit_month"]
