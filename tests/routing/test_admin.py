"""Rule and credential edits through the real Django admin go through the services and leave admin actions."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client

from audit.models import AdminAction
from catalog.models import Profile
from routing.models import ProviderCredential, RoutingFallback, RoutingRule
from routing.selectors import routing_rule_resolve

pytestmark = pytest.mark.django_db(transaction=True)

RULES = "/admin/routing/routingrule/"


@pytest.fixture
def admin_browser(alice: AbstractUser) -> Client:
    alice.is_staff = alice.is_superuser = True
    alice.save()
    browser = Client()
    browser.force_login(alice)
    return browser


@pytest.fixture
def rule(profile: Profile, credential: ProviderCredential) -> RoutingRule:
    rule = RoutingRule.objects.create(name="claude", pattern="claude-*", match="glob", priority=10,
                                      target_credential=credential, target_model="claude-sonnet")  # fmt: skip
    RoutingFallback.objects.create(rule=rule, position=0, target_credential=credential, target_model="claude-haiku")
    return rule


def as_posted(value: Any) -> Any:
    return "on" if value is True else "" if value is None else value


def change_form_data(browser: Client, url: str) -> dict[str, Any]:
    """What a browser posts back from the add or change page untouched: the form, each inline, its management."""
    context = browser.get(url).context
    form = context["adminform"].form
    data = {name: as_posted(form[name].value()) for name in form.fields if form[name].value() is not False}
    for inline in context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        data.update({management.add_prefix(name): management[name].value() for name in management.fields})
        for step_form in formset.forms:
            for name in step_form.fields:
                value = step_form[name].value()
                if value is not False:
                    data[step_form.add_prefix(name)] = as_posted(value)
    return data


def rule_actions(action: str) -> list[AdminAction]:
    return list(AdminAction.objects.filter(object_type="routing.RoutingRule", action=action))


def test_editing_a_rule_and_its_fallback_on_the_change_form_writes_one_admin_action_with_the_changes(
    admin_browser: Client, alice: AbstractUser, rule: RoutingRule
) -> None:
    url = f"{RULES}{rule.pk}/change/"
    data = change_form_data(admin_browser, url)
    data.update({"pattern": "claude-opus-*", "fallbacks-0-target_model": "claude-3-haiku"})
    response = admin_browser.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]

    [action] = rule_actions("changed")
    assert action.actor == alice
    assert action.changes == {
        "pattern": "claude-opus-*",
        "fallbacks": [
            {"position": 0, "target_profile": None, "target_credential": "anthropic-main",
             "target_model": "claude-3-haiku"},
        ],
    }  # fmt: skip
    rule.refresh_from_db()
    assert rule.pattern == "claude-opus-*"
    assert [step.target_model for step in rule.fallbacks.all()] == ["claude-3-haiku"]
    assert [target.model for target in routing_rule_resolve(model_name="claude-opus-4").targets] == [
        "claude-sonnet", "claude-3-haiku",
    ]  # fmt: skip


def test_saving_the_change_form_unchanged_records_nothing(admin_browser: Client, rule: RoutingRule) -> None:
    url = f"{RULES}{rule.pk}/change/"
    assert admin_browser.post(url, change_form_data(admin_browser, url)).status_code == 302
    assert not rule_actions("changed")
    assert [step.target_model for step in rule.fallbacks.all()] == ["claude-haiku"]


def test_a_change_form_edit_that_fails_validation_writes_nothing(admin_browser: Client, rule: RoutingRule) -> None:
    url = f"{RULES}{rule.pk}/change/"
    data = change_form_data(admin_browser, url)
    data.update({"match": "regex", "pattern": "claude-(", "fallbacks-0-target_model": "claude-3-haiku"})
    response = admin_browser.post(url, data)
    assert response.status_code == 200
    assert "Not a valid regular expression" in response.content.decode()
    rule.refresh_from_db()
    assert (rule.pattern, rule.match) == ("claude-*", "glob")
    assert [step.target_model for step in rule.fallbacks.all()] == ["claude-haiku"]
    assert not rule_actions("changed")


def test_a_list_editable_save_on_the_changelist_writes_an_admin_action_for_the_changed_row_only(
    admin_browser: Client, alice: AbstractUser, rule: RoutingRule, profile: Profile
) -> None:
    other = RoutingRule.objects.create(name="house", pattern="house", priority=20, target_profile=profile)
    data: dict[str, Any] = {
        "form-TOTAL_FORMS": "2", "form-INITIAL_FORMS": "2", "form-MIN_NUM_FORMS": "0", "form-MAX_NUM_FORMS": "1000",
        "form-0-id": rule.pk, "form-0-priority": "30", "form-0-enabled": "on",
        "form-1-id": other.pk, "form-1-priority": "20", "form-1-enabled": "on",
        "_save": "Save",
    }  # fmt: skip
    response = admin_browser.post(RULES, data)
    assert response.status_code == 302, response.content.decode()[:3000]

    [action] = rule_actions("changed")
    assert (action.actor, action.object_id, action.changes) == (alice, str(rule.pk), {"priority": 30})
    rule.refresh_from_db()
    assert rule.priority == 30
    assert [step.target_model for step in rule.fallbacks.all()] == ["claude-haiku"]  # untouched by the list


def test_adding_a_rule_with_a_fallback_on_the_add_form_writes_a_created_action(
    admin_browser: Client, alice: AbstractUser, profile: Profile, credential: ProviderCredential
) -> None:
    data = change_form_data(admin_browser, f"{RULES}add/")
    data.update({"name": "gpt", "pattern": r"gpt-\d+", "match": "regex", "priority": "5",
                 "target_credential": credential.pk, "target_model": "gpt-4o",
                 "fallbacks-0-position": "0", "fallbacks-0-target_profile": profile.pk})  # fmt: skip
    response = admin_browser.post(f"{RULES}add/", data)
    assert response.status_code == 302, response.content.decode()[:3000]

    added = RoutingRule.objects.get(name="gpt")
    assert response["Location"].endswith(RULES)
    assert [step.target_profile for step in added.fallbacks.all()] == [profile]
    [action] = rule_actions("created")
    assert (action.actor, action.object_id) == (alice, str(added.pk))
    assert action.changes["pattern"] == r"gpt-\d+"
    assert [step["target_profile"] for step in action.changes["fallbacks"]] == ["tiny"]


def test_deleting_rules_and_a_credential_in_the_admin_writes_deleted_actions(
    admin_browser: Client, rule: RoutingRule, profile: Profile, credential: ProviderCredential
) -> None:
    other = RoutingRule.objects.create(name="house", pattern="house", target_profile=profile)
    assert admin_browser.post(f"{RULES}{other.pk}/delete/", {"post": "yes"}).status_code == 302
    selected = {"action": "delete_selected", "_selected_action": [rule.pk], "post": "yes"}
    assert admin_browser.post(RULES, selected).status_code == 302
    credential_url = f"/admin/routing/providercredential/{credential.pk}/delete/"
    assert admin_browser.post(credential_url, {"post": "yes"}).status_code == 302

    assert not RoutingRule.objects.exists()
    assert not ProviderCredential.objects.exists()
    deleted = AdminAction.objects.filter(action="deleted")
    assert sorted((action.object_type, action.object_repr) for action in deleted) == [
        ("routing.ProviderCredential", "anthropic-main"),
        ("routing.RoutingRule", "claude"),
        ("routing.RoutingRule", "house"),
    ]


def test_ticking_delete_on_the_fallback_inline_removes_the_step_and_records_the_empty_list(
    admin_browser: Client, rule: RoutingRule
) -> None:
    url = f"{RULES}{rule.pk}/change/"
    data = change_form_data(admin_browser, url)
    data["fallbacks-0-DELETE"] = "on"
    assert admin_browser.post(url, data).status_code == 302
    assert not rule.fallbacks.exists()
    [action] = rule_actions("changed")
    assert action.changes == {"fallbacks": []}
