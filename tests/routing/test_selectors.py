"""Rule resolution: match kinds and priority, fallbacks, the cache, the name cap, bounded regex matching."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from catalog.models import Profile
from routing import selectors
from routing.constants import MODEL_NAME_MAX_LENGTH
from routing.models import ProviderCredential, RoutingFallback, RoutingRule
from routing.selectors import ModelNameTooLong, routing_rule_aresolve, routing_rule_resolve

pytestmark = pytest.mark.django_db(transaction=True)

# `gpt-(\w+-?)+` backtracks exponentially in `re` on a name it cannot match: `\w+` splits a run of
# letters in 2^n ways. With `re`, 22 letters already take 0.2 s here and each 2 more take about 4 times
# as long; these names are within the 200-character cap.
BACKTRACKING_PATTERN = r"gpt-(\w+-?)+"
CRAFTED_NAMES = ["gpt-" + "a-" * 90 + "!", "gpt-" + "a" * 190 + "!"]
# A pattern that `regex` cannot decide quickly either (no optimisation saves it): the time limit must act.
SLOW_IN_EVERY_ENGINE = r"(a|aa)+"


@pytest.fixture(autouse=True)
def no_rule_warned_yet() -> None:
    # Rule ids restart after each test's flush, so a rule warned about in one test could hide another's warning.
    selectors._slow_rules.clear()


def test_no_rule_means_the_local_profile_of_that_name(profile: Profile) -> None:
    route = routing_rule_resolve(model_name="tiny")
    assert route.rule is None
    assert [target.profile for target in route.targets] == ["tiny"]


def test_rules_match_exact_glob_and_regex_in_priority_order(profile: Profile, credential: ProviderCredential) -> None:
    RoutingRule.objects.create(name="glob", pattern="claude-*", match="glob", priority=20,
                               target_credential=credential, target_model="claude-sonnet")  # fmt: skip
    RoutingRule.objects.create(name="regex", pattern=r"claude-\d+", match="regex", priority=10,
                               target_credential=credential, target_model="claude-opus")  # fmt: skip
    RoutingRule.objects.create(name="exact", pattern="house", priority=30, target_profile=profile)
    RoutingRule.objects.create(name="off", pattern="*", match="glob", priority=1, enabled=False, target_profile=profile)
    assert routing_rule_resolve(model_name="claude-3").rule == "regex"
    assert routing_rule_resolve(model_name="claude-haiku").targets[0].model == "claude-sonnet"
    assert routing_rule_resolve(model_name="house").targets[0].profile == "tiny"
    assert routing_rule_resolve(model_name="houses").rule is None


def test_fallbacks_come_in_their_order(profile: Profile, credential: ProviderCredential) -> None:
    rule = RoutingRule.objects.create(name="r", pattern="big", target_credential=credential, target_model="c1")
    RoutingFallback.objects.create(rule=rule, position=2, target_profile=profile)
    RoutingFallback.objects.create(rule=rule, position=1, target_credential=credential, target_model="c2")
    route = routing_rule_resolve(model_name="big")
    assert [target.backend for target in route.targets] == ["anthropic-main", "anthropic-main", "local"]
    assert [target.model or target.profile for target in route.targets] == ["c1", "c2", "tiny"]


def test_the_resolution_is_cached_and_dropped_when_a_rule_changes(
    profile: Profile, credential: ProviderCredential, django_assert_num_queries: Any
) -> None:
    rule = RoutingRule.objects.create(name="r", pattern="big", target_profile=profile)
    routing_rule_resolve(model_name="big")
    with django_assert_num_queries(0):
        assert routing_rule_resolve(model_name="big").targets[0].is_local
    rule.target_profile = None
    rule.target_credential = credential
    rule.target_model = "claude"
    rule.save()
    assert routing_rule_resolve(model_name="big").targets[0].backend == "anthropic-main"
    rule.delete()
    assert routing_rule_resolve(model_name="big").rule is None


def test_a_backtracking_regex_rule_decides_a_crafted_name_in_well_under_a_second(
    profile: Profile, credential: ProviderCredential
) -> None:
    RoutingRule.objects.create(name="gpt", pattern=BACKTRACKING_PATTERN, match="regex", priority=10,
                               target_credential=credential, target_model="gpt-4o")  # fmt: skip
    assert routing_rule_resolve(model_name="gpt-4o-mini").rule == "gpt"  # the rule works for real names
    for name in CRAFTED_NAMES:
        started = time.monotonic()
        route = routing_rule_resolve(model_name=name)
        assert time.monotonic() - started < 1.0
        assert route.rule is None
        assert [target.profile for target in route.targets] == [name]


def test_a_regex_rule_that_runs_out_of_time_counts_as_not_matching_and_is_logged_once(
    profile: Profile, credential: ProviderCredential, caplog: pytest.LogCaptureFixture
) -> None:
    RoutingRule.objects.create(name="slow", pattern=SLOW_IN_EVERY_ENGINE, match="regex", priority=10,
                               target_credential=credential, target_model="claude")  # fmt: skip
    RoutingRule.objects.create(name="rest", pattern="*", match="glob", priority=20, target_profile=profile)
    assert routing_rule_resolve(model_name="aaaa").rule == "slow"
    name = "a" * 40 + "!"
    with caplog.at_level(logging.WARNING, logger="routing.selectors"):
        started = time.monotonic()
        routes = [routing_rule_resolve(model_name=name) for _ in range(3)]
        elapsed = time.monotonic() - started
    assert [route.rule for route in routes] == ["rest"] * 3  # the request goes on, to the next rule
    warnings = [record for record in caplog.records if record.name == "routing.selectors"]
    assert len(warnings) == 1
    assert "'slow'" in warnings[0].getMessage()
    assert elapsed < 3.0  # three time limits of 50 ms, not the minutes the pattern would take


def test_a_name_over_the_cap_is_refused_before_any_rule_is_tried(
    profile: Profile, django_assert_num_queries: Any
) -> None:
    RoutingRule.objects.create(name="all", pattern=".*", match="regex", target_profile=profile)
    assert routing_rule_resolve(model_name="x" * MODEL_NAME_MAX_LENGTH).rule == "all"
    with django_assert_num_queries(0), pytest.raises(ModelNameTooLong, match="at most 200"):
        routing_rule_resolve(model_name="x" * (MODEL_NAME_MAX_LENGTH + 1))


async def test_the_event_loop_resolution_is_bounded_the_same_way(
    profile: Profile, credential: ProviderCredential
) -> None:
    await RoutingRule.objects.acreate(name="gpt", pattern=BACKTRACKING_PATTERN, match="regex",
                                      target_credential=credential, target_model="gpt-4o")  # fmt: skip
    assert (await routing_rule_aresolve(model_name="gpt-4o")).rule == "gpt"
    started = time.monotonic()
    assert (await routing_rule_aresolve(model_name=CRAFTED_NAMES[1])).rule is None
    assert time.monotonic() - started < 1.0
    with pytest.raises(ModelNameTooLong):
        await routing_rule_aresolve(model_name="g" * (MODEL_NAME_MAX_LENGTH + 1))
