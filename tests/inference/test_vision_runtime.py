"""VisionRuntime on a tiny random-weight PaliGemma built locally, with Pillow-made images."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import pytest
from PIL import Image

from inference.engine.vision_runtime import VisionGeneration, VisionRuntime, chat_messages
from tests.model_builders import PALIGEMMA_CONTEXT, PALIGEMMA_IMAGE_TOKENS, build_tiny_paligemma


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> VisionRuntime:
    return VisionRuntime(str(build_tiny_paligemma(tmp_path_factory.mktemp("models") / "paligemma")))


def red_square() -> Image.Image:
    return Image.new("RGB", (48, 40), (220, 20, 20))


def striped() -> Image.Image:
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    for x in range(0, 64, 8):
        image.paste((0, 0, 255), (x, 0, x + 4, 64))
    return image


def ask(text: str) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "<decoded>"}}, {"type": "text", "text": text}],
        }
    ]


def run_to_end(generation: VisionGeneration) -> list[tuple[str, int, str | None]]:
    steps = []
    while not steps or steps[-1][2] is None:
        steps.append(generation.step())
    return steps


def test_it_loads_the_model_and_measures_it(runtime):
    assert runtime.context_length == PALIGEMMA_CONTEXT
    assert 100_000 < runtime.weights_bytes < 1_000_000
    assert runtime.eos_token_ids == {runtime.tokenizer.convert_tokens_to_ids("<eos>")}


def test_a_greedy_generation_runs_one_token_per_step_to_max_tokens(runtime):
    generation = runtime.start(ask("describe this"), [red_square()], max_tokens=5, sampler=None, logits_processors=None)
    steps = run_to_end(generation)
    assert [reason for _, _, reason in steps] == [None, None, None, None, "length"]
    tokens = [token for _, token, _ in steps]
    assert generation.tokens == tokens
    # The streamed pieces add up to the decoded completion.
    assert "".join(text for text, _, _ in steps) == runtime.tokenizer.decode(tokens)
    with pytest.raises(RuntimeError):
        generation.step()


def test_prompt_tokens_count_the_image_tokens(runtime):
    generation = runtime.start(ask("describe this"), [red_square()], max_tokens=1)
    text_tokens = runtime.tokenizer.encode("<bos>describe this\n", add_special_tokens=False)
    assert generation.prompt_tokens == PALIGEMMA_IMAGE_TOKENS + len(text_tokens)
    generation.close()


def test_a_text_only_request_needs_no_image(runtime):
    generation = runtime.start([{"role": "user", "content": "hello there"}], [], max_tokens=2)
    assert generation.prompt_tokens == len(runtime.tokenizer.encode("hello there", add_special_tokens=False))
    assert [reason for _, _, reason in run_to_end(generation)] == [None, "length"]


def test_interleaved_generations_give_what_each_gives_alone(runtime):
    requests = [(ask("describe this"), [red_square()]), (ask("what color is the picture"), [striped()])]
    alone = [[token for _, token, _ in run_to_end(runtime.start(m, i, max_tokens=6))] for m, i in requests]
    assert alone[0] != alone[1]  # different prompts and images, so interleaving could mix them up

    generations = [runtime.start(m, i, max_tokens=6) for m, i in requests]
    interleaved: list[list[int]] = [[], []]
    for _ in range(6):
        for index, generation in enumerate(generations):
            interleaved[index].append(generation.step()[1])
    assert interleaved == alone


def test_it_stops_on_the_end_of_sequence_token_without_emitting_it(runtime):
    eos = next(iter(runtime.eos_token_ids))
    calls = []

    def end_on_third_token(tokens: mx.array, logits: mx.array) -> mx.array:
        calls.append(1)
        if len(calls) < 3:
            return logits
        return mx.where(mx.arange(logits.shape[-1]) == eos, 100.0, -100.0)[None].astype(logits.dtype)

    generation = runtime.start(
        ask("describe this"), [red_square()], max_tokens=10, logits_processors=[end_on_third_token]
    )
    steps = run_to_end(generation)
    assert [reason for _, _, reason in steps] == [None, None, "stop"]
    assert steps[-1][1] == eos
    assert "".join(text for text, _, _ in steps) == runtime.tokenizer.decode(generation.tokens[:-1])


def test_it_draws_tokens_with_the_callers_sampler(runtime):
    chosen = runtime.tokenizer.encode(" the", add_special_tokens=False)[0]

    def always_the(logprobs: mx.array) -> mx.array:
        return mx.array([chosen])

    steps = run_to_end(runtime.start(ask("describe this"), [red_square()], max_tokens=3, sampler=always_the))
    assert [token for _, token, _ in steps] == [chosen] * 3
    assert "".join(text for text, _, _ in steps) == " the the the"  # the first token keeps its space


def test_close_stops_a_generation_midway(runtime):
    generation = runtime.start(ask("describe this"), [red_square()], max_tokens=5)
    generation.step()
    generation.close()
    generation.close()
    with pytest.raises(RuntimeError):
        generation.step()


def test_the_caller_can_change_max_tokens_between_steps(runtime):
    generation = runtime.start(ask("describe this"), [red_square()], max_tokens=2)
    generation.max_tokens = 4
    assert [reason for _, _, reason in run_to_end(generation)] == [None, None, None, "length"]
    generation = runtime.start(ask("describe this"), [red_square()], max_tokens=5)
    generation.step()
    generation.max_tokens = 2
    assert generation.step()[2] == "length"


def test_start_runs_nothing_on_the_model_and_leaves_the_context_check_to_the_caller(runtime):
    generation = runtime.start(ask("the water " * 400), [red_square()], max_tokens=1)
    assert generation.prompt_tokens > runtime.context_length
    assert generation.tokens == []
    generation.close()


def test_image_parts_must_match_the_images_given(runtime):
    with pytest.raises(ValueError, match="1 image parts but 2 images"):
        runtime.start(ask("describe this"), [red_square(), striped()], max_tokens=1)


def test_images_must_be_in_the_last_message_for_a_model_that_reads_only_that_one(runtime):
    messages = [*ask("describe this"), {"role": "assistant", "content": "A red square."}, *ask("and this?")]
    with pytest.raises(ValueError, match="1 of 2 are in earlier messages"):
        runtime.start(messages, [red_square(), striped()], max_tokens=1)


def test_it_converts_openai_parts_in_order_and_refuses_images_outside_user_messages():
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
        },
    ]
    assert chat_messages(messages, 1)[1]["content"] == [
        {"type": "text", "text": "a"},
        {"type": "image"},
        {"type": "text", "text": "b"},
    ]
    with pytest.raises(ValueError, match="user messages only"):
        chat_messages([{"role": "assistant", "content": [{"type": "image_url"}]}], 1)
    with pytest.raises(ValueError, match="input_audio"):
        chat_messages([{"role": "user", "content": [{"type": "input_audio"}]}], 0)


def test_it_never_downloads_a_missing_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        VisionRuntime(str(tmp_path / "google" / "paligemma-3b-mix-224"))
