"""The price budget formula and its place in the trigger (pure, no I/O)."""

from __future__ import annotations

import itertools

import pytest

from langchain_kimi_context.context.compaction import should_compact
from langchain_kimi_context.context.compaction.budget import (
    expected_cost_per_call,
    price_budget,
)
from langchain_kimi_context.context.compaction.trigger import budget_for
from langchain_kimi_context.context.policy import ContextPolicy
from langchain_kimi_context.errors import KimiConfigurationError
from langchain_kimi_context.profiles import Pricing, get_profile

SIZES = {"growth_tokens": 2_500, "floor_tokens": 20_000, "summary_tokens": 3_000}
PRICES = (0.05, 0.16, 0.3, 0.95, 3.0, 15.0)


def _pricing(hit: float, miss: float, output: float) -> Pricing:
    return Pricing(currency="USD", input_cache_hit=hit, input_cache_miss=miss, output=output)


def _trigger(hit: float, miss: float, output: float, ceiling: int = 10**9) -> int:
    budget = price_budget(_pricing(hit, miss, output), ceiling=ceiling, **SIZES)
    assert budget is not None
    return budget.trigger_tokens


def _window_rule(window: int, policy: ContextPolicy) -> int:
    decision = should_compact(0, window, policy)
    assert decision.threshold is not None
    return decision.threshold


class TestMonotoneInPrices:
    @pytest.mark.parametrize(("miss", "output"), list(itertools.product((1.0, 3.0), (4.0, 15.0))))
    def test_a_dearer_cache_hit_never_raises_the_budget(self, miss: float, output: float) -> None:
        hits = [h for h in PRICES if h < miss]
        triggers = [_trigger(h, miss, output) for h in hits]
        assert triggers == sorted(triggers, reverse=True)
        assert triggers[0] > triggers[-1]

    @pytest.mark.parametrize(("hit", "output"), list(itertools.product((0.05, 0.3), (4.0, 15.0))))
    def test_a_dearer_cache_miss_never_lowers_the_budget(self, hit: float, output: float) -> None:
        misses = [m for m in PRICES if m > hit]
        triggers = [_trigger(hit, m, output) for m in misses]
        assert triggers == sorted(triggers)
        assert triggers[0] < triggers[-1]

    @pytest.mark.parametrize(("hit", "miss"), [(0.16, 0.95), (0.3, 3.0)])
    def test_a_dearer_output_never_lowers_the_budget(self, hit: float, miss: float) -> None:
        triggers = [_trigger(hit, miss, o) for o in PRICES]
        assert triggers == sorted(triggers)
        assert triggers[0] < triggers[-1]

    def test_scaling_every_price_leaves_the_budget_unchanged(self) -> None:
        assert abs(_trigger(0.3, 3.0, 15.0) - _trigger(0.6, 6.0, 30.0)) <= 1
        assert abs(_trigger(0.16, 0.95, 4.0) - _trigger(1.6, 9.5, 40.0)) <= 1

    def test_the_budget_is_the_minimum_of_the_expected_cost(self) -> None:
        pricing = get_profile("kimi-k3").pricing
        best = price_budget(pricing, ceiling=10**9, **SIZES)
        assert best is not None
        at_best = expected_cost_per_call(pricing, best.trigger_tokens, **SIZES)
        for other in (25_000, 40_000, 55_000, 70_000, 100_000, 300_000, 900_000):
            assert at_best <= expected_cost_per_call(pricing, other, **SIZES)
        assert best.cost_per_call == pytest.approx(at_best, rel=1e-6)


class TestNeverAboveTheWindowRule:
    @pytest.mark.parametrize("model", ["kimi-k3", "kimi-k2.6"])
    @pytest.mark.parametrize("window", [32_000, 64_000, 131_072, 262_144, 1_048_576])
    @pytest.mark.parametrize(
        "policy",
        [
            ContextPolicy(),
            ContextPolicy(compact_reserve_tokens=None, compact_trigger_ratio=0.5),
            ContextPolicy(compact_budget_growth_tokens=200_000),
            ContextPolicy(compact_budget=5_000_000),
            ContextPolicy(compact_budget_floor_tokens=60_000),
        ],
    )
    def test_budget_and_trigger_threshold(
        self, model: str, window: int, policy: ContextPolicy
    ) -> None:
        profile = get_profile(model)
        rule = _window_rule(window, policy)
        budget = budget_for(window, policy, profile)
        if budget is not None:
            assert budget <= rule
        threshold = should_compact(0, window, policy, profile=profile).threshold
        assert threshold is not None
        assert threshold <= rule

    def test_a_budget_above_the_ceiling_is_the_ceiling(self) -> None:
        budget = price_budget(get_profile("kimi-k3").pricing, ceiling=30_000, **SIZES)
        assert budget is not None
        assert budget.capped
        assert budget.trigger_tokens == 30_000
        # the trigger then leaves the window rule alone (no second form at the same place)
        policy = ContextPolicy(compact_budget_growth_tokens=10_000_000)
        assert budget_for(262_144, policy, get_profile("kimi-k2.6")) is None

    def test_a_fixed_budget_is_capped_by_the_window_rule(self) -> None:
        policy = ContextPolicy(compact_budget=500_000)
        assert budget_for(262_144, policy, None) == _window_rule(262_144, policy)
        assert budget_for(1_048_576, policy, None) == 500_000


class TestNoCacheDiscountMeansTheWindowRule:
    def test_formula_returns_none_without_a_hit_discount(self) -> None:
        assert price_budget(_pricing(1.0, 1.0, 3.0), ceiling=212_144, **SIZES) is None
        assert price_budget(_pricing(2.0, 1.0, 3.0), ceiling=212_144, **SIZES) is None

    @pytest.mark.parametrize("tokens", [10_000, 60_000, 150_000, 212_144, 240_000])
    def test_trigger_decides_exactly_as_the_window_rule(self, tokens: int) -> None:
        flat = get_profile("kimi-k2.6").replace(pricing=_pricing(0.95, 0.95, 4.0))
        policy = ContextPolicy()
        with_profile = should_compact(tokens, 262_144, policy, profile=flat)
        window_only = should_compact(tokens, 262_144, policy)
        assert with_profile == window_only
        assert with_profile.budget is None

    def test_models_without_automatic_prefix_caching_keep_the_window_rule(self) -> None:
        explicit = get_profile("moonshot-v1-128k")
        assert explicit.cache_kind == "explicit"
        assert budget_for(explicit.context_window, ContextPolicy(), explicit) is None
        uncached = get_profile("kimi-k2.6").replace(cache_kind="none")
        assert budget_for(262_144, ContextPolicy(), uncached) is None


class TestPolicy:
    def test_the_price_budget_is_the_default_trigger_on_k3_and_k26(self) -> None:
        for model in ("kimi-k3", "kimi-k2.6"):
            profile = get_profile(model)
            decision = should_compact(
                70_000, profile.context_window, ContextPolicy(), profile=profile
            )
            assert decision.reason == "budget"
            assert decision.budget is not None
            assert decision.budget < 70_000

    def test_users_keep_fixed_token_and_fraction_triggers(self) -> None:
        k3 = get_profile("kimi-k3")
        window = k3.context_window
        fixed = ContextPolicy(compact_trigger_tokens=300_000)
        assert not should_compact(200_000, window, fixed, profile=k3)
        assert should_compact(300_001, window, fixed, profile=k3).reason == "absolute"
        fraction = ContextPolicy(compact_budget="off", compact_trigger_ratio=0.5)
        assert not should_compact(500_000, window, fraction, profile=k3)
        assert should_compact(524_288, window, fraction, profile=k3).reason == "ratio"

    def test_the_last_compactions_real_floor_moves_the_budget_up(self) -> None:
        k3 = get_profile("kimi-k3")
        low = budget_for(k3.context_window, ContextPolicy(), k3)
        high = budget_for(k3.context_window, ContextPolicy(), k3, floor_tokens=90_000)
        assert low is not None
        assert high is not None
        assert high > low + 70_000

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("compact_budget", "cheap"),
            ("compact_budget", 0),
            ("compact_budget", True),
            ("compact_budget_growth_tokens", 0),
            ("compact_summary_form", "cache"),
        ],
    )
    def test_bad_budget_settings_are_refused(self, field: str, value: object) -> None:
        with pytest.raises(KimiConfigurationError, match=field):
            ContextPolicy(**{field: value})

    def test_bad_formula_inputs_are_refused(self) -> None:
        pricing = get_profile("kimi-k3").pricing
        with pytest.raises(ValueError, match="growth_tokens"):
            price_budget(pricing, growth_tokens=0, floor_tokens=1, summary_tokens=1, ceiling=9)
        with pytest.raises(ValueError, match="above floor_tokens"):
            expected_cost_per_call(pricing, 10, growth_tokens=1, floor_tokens=10, summary_tokens=1)
