"""Hub search and model details through the real huggingface_hub client, against the fake hub."""

from __future__ import annotations

import pytest

from catalog.hub import HubNotFound, HubUnavailable
from catalog.selectors import SearchQuery, hub_model_detail, hub_search
from tests.catalog import fakehub
from tests.catalog.fakehub import ORG, FakeHub
from tests.conftest import free_port

# The fake hub's fixtures, shared by the catalog tests (they live beside the server, not in conftest.py).
fake_hub = fakehub.fake_hub
hub_settings = fakehub.hub_settings

pytestmark = pytest.mark.usefixtures("db", "hub_settings")

LLAMAS = [f"{ORG}/tiny-llama-4bit", f"{ORG}/tiny-llama-bf16", f"{ORG}/tiny-llama-8bit"]


def ids(**query) -> list[str]:
    return [result["repo_id"] for result in hub_search(SearchQuery(**query)).results]


def list_requests(hub: FakeHub) -> int:
    return sum(1 for request in hub.requests if request.path == "/api/models")


def test_the_default_search_lists_mlx_community_models_by_downloads():
    assert ids() == [
        f"{ORG}/tiny-llama-4bit",
        f"{ORG}/tiny-llama-bf16",
        f"{ORG}/mini-bert-embed",
        f"{ORG}/tiny-llama-8bit",
        f"{ORG}/pali-vision-8bit",
    ]


def test_free_text_matches_repository_names():
    assert ids(text="BERT") == [f"{ORG}/mini-bert-embed"]


def test_another_author_is_searched_when_asked_and_every_author_when_blank():
    assert ids(author="someone-else") == ["someone-else/tiny-llama-4bit"]
    assert ids(author="", text="tiny-llama-4bit") == ["someone-else/tiny-llama-4bit", f"{ORG}/tiny-llama-4bit"]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("text", LLAMAS),
        ("embedding", [f"{ORG}/mini-bert-embed"]),
        ("vision", [f"{ORG}/pali-vision-8bit"]),
    ],
)
def test_the_kind_filter_returns_only_that_kind(kind, expected):
    results = hub_search(SearchQuery(kind=kind)).results

    assert [result["repo_id"] for result in results] == expected
    assert {result["kind"] for result in results} == {kind}


@pytest.mark.parametrize(
    ("quantization", "expected"),
    [
        ("4-bit", [f"{ORG}/tiny-llama-4bit"]),
        ("8-bit", [f"{ORG}/tiny-llama-8bit", f"{ORG}/pali-vision-8bit"]),
        ("bf16", [f"{ORG}/tiny-llama-bf16"]),
    ],
)
def test_the_quantization_filter_reads_the_config_and_the_tags(quantization, expected):
    assert ids(quantization=quantization) == expected


def test_the_architecture_filter_matches_the_configs_architecture():
    assert ids(architecture="bert") == [f"{ORG}/mini-bert-embed"]
    assert ids(architecture="LlamaForCausalLM") == LLAMAS


def test_results_sort_by_likes_and_by_recency():
    assert ids(sort="likes") == [
        f"{ORG}/tiny-llama-8bit",
        f"{ORG}/mini-bert-embed",
        f"{ORG}/tiny-llama-bf16",
        f"{ORG}/pali-vision-8bit",
        f"{ORG}/tiny-llama-4bit",
    ]
    assert ids(sort="recency") == [
        f"{ORG}/pali-vision-8bit",
        f"{ORG}/tiny-llama-8bit",
        f"{ORG}/mini-bert-embed",
        f"{ORG}/tiny-llama-4bit",
        f"{ORG}/tiny-llama-bf16",
    ]


def test_pages_cover_the_whole_list_once_and_say_when_another_follows():
    pages = [hub_search(SearchQuery(per_page=2, page=number)) for number in (1, 2, 3)]

    assert [page.has_next for page in pages] == [True, True, False]
    assert [result["repo_id"] for page in pages for result in page.results] == ids()


def test_a_filtered_search_pages_over_the_filtered_results():
    first = hub_search(SearchQuery(quantization="8-bit", per_page=1, page=1))
    second = hub_search(SearchQuery(quantization="8-bit", per_page=1, page=2))

    assert [first.results[0]["repo_id"], second.results[0]["repo_id"]] == [
        f"{ORG}/tiny-llama-8bit",
        f"{ORG}/pali-vision-8bit",
    ]
    assert (first.has_next, second.has_next) == (True, False)


def test_a_repeated_search_is_answered_from_the_cache(fake_hub: FakeHub):
    ids(text="tiny")
    before = list_requests(fake_hub)

    ids(text="tiny")

    assert list_requests(fake_hub) == before
    ids(text="tiny", sort="likes")
    assert list_requests(fake_hub) > before


def test_a_result_carries_its_size_and_facts(fake_hub: FakeHub):
    (result,) = hub_search(SearchQuery(text="tiny-llama-bf16")).results
    repo = fake_hub.repos[f"{ORG}/tiny-llama-bf16"]

    assert result["size_bytes"] == sum(len(data) for data in repo.files.values())
    assert (result["architecture"], result["quantization"], result["license"]) == (
        "LlamaForCausalLM",
        "bf16",
        "apache-2.0",
    )


def test_the_detail_lists_files_with_real_sizes_and_what_the_model_says_about_itself(fake_hub: FakeHub):
    detail = hub_model_detail(repo_id=f"{ORG}/tiny-llama-bf16")
    repo = fake_hub.repos[f"{ORG}/tiny-llama-bf16"]

    assert {item["path"]: item["size"] for item in detail["files"]} == {
        name: len(data) for name, data in repo.files.items()
    }
    assert detail["size_bytes"] == sum(len(data) for data in repo.files.values())
    assert detail["weights_bytes"] == len(repo.files["model.safetensors"])
    assert detail["architecture"] == "LlamaForCausalLM"
    assert detail["context_length"] == 2048
    assert detail["kind"] == "text"
    assert detail["license"] == "apache-2.0"
    assert detail["summary"] == "tiny-llama-bf16 is a tiny llama model converted to MLX for tests."
    assert detail["sha"] == repo.sha


def test_the_detail_of_a_vision_model_reads_the_nested_text_config():
    detail = hub_model_detail(repo_id=f"{ORG}/pali-vision-8bit")

    assert (detail["kind"], detail["quantization"], detail["context_length"]) == ("vision", "8-bit", 8192)


def test_whether_a_model_fits_follows_the_memory_budget(hub_settings):
    hub_settings.MLXHUB_MEMORY_BUDGET_BYTES = 10**12
    assert hub_model_detail(repo_id=f"{ORG}/tiny-llama-bf16")["fits_memory"] is True

    hub_settings.MLXHUB_MEMORY_BUDGET_BYTES = 1000
    detail = hub_model_detail(repo_id=f"{ORG}/tiny-llama-bf16")
    assert (detail["fits_memory"], detail["memory_budget_bytes"]) == (False, 1000)


def test_an_unknown_repository_is_not_found():
    with pytest.raises(HubNotFound, match="not found"):
        hub_model_detail(repo_id=f"{ORG}/no-such-model")


def test_an_unreachable_hub_is_reported_as_unavailable(hub_settings):
    hub_settings.MLXHUB_HF_ENDPOINT = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(HubUnavailable, match="Network error with the hub"):
        hub_model_detail(repo_id=f"{ORG}/tiny-llama-bf16")
