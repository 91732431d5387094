"""The LM-side `irlb` commands on the user's own model and data: random-init GPT-2, Llama and Qwen2 from local folders,
preference files in TRL's formats (JSON Lines and a datasets folder; text and chat messages; paired and KTO-style
unpaired), every catalog policy loss, reward-model training, RLOO, RewardBench-style scoring and the agentic task."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from conftest import ARCHITECTURES

from irl_bilevel.precision import default_dtype
from irl_bilevel.validation import ValidationError
from irlb.main import main
from llm.preference_data import read_preference_file, tokenize_preferences
from llm.training import policy_losses

POSITIVE = ["great", "wonderful", "excellent", "charming", "superb"]
NEGATIVE = ["awful", "boring", "terrible", "dull", "painful"]
SUBJECTS = ["the film", "the plot", "the acting", "the ending"]


def pair_rows(count: int = 20) -> list[dict[str, str]]:
    """``count`` pairs in TRL's standard format: the completion carries its leading space."""
    rows = []
    for i in range(count):
        subject = SUBJECTS[i % len(SUBJECTS)]
        rows.append({"prompt": f"{subject} was", "chosen": f" {POSITIVE[i % 5]} and {POSITIVE[(i + 2) % 5]} .",
                     "rejected": f" {NEGATIVE[i % 5]} and {NEGATIVE[(i + 1) % 5]} ."})
    return rows


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def device_args(dtype: str = "float32") -> list[str]:
    return ["--device", "cpu", "--dtype", dtype]


def plain_margins(model, tokenizer, rows) -> torch.Tensor:
    """Ground truth on each row alone: the implicit reward margin ``[log π(y_w|x) − log π_ref(y_w|x)] −
    [log π(y_l|x) − log π_ref(y_l|x)]`` with full logits (TRL's tokenization: ``prompt`` and
    ``prompt + completion + EOS``)."""

    def logp(prompt: str, completion: str) -> torch.Tensor:
        prompt_ids = tokenizer(prompt)["input_ids"]
        ids = torch.tensor([tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]])
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1).gather(1, ids[0, 1:, None])
        return logps[len(prompt_ids) - 1:].sum()

    margins = []
    with torch.no_grad():
        for row in rows:
            policy = logp(row["prompt"], row["chosen"]) - logp(row["prompt"], row["rejected"])
            with model.disable_adapter():
                reference = logp(row["prompt"], row["chosen"]) - logp(row["prompt"], row["rejected"])
            margins.append(policy - reference)
    return torch.stack(margins)


def test_acceptance_one_command_writes_an_adapter_that_prefers_the_chosen_answers(hf_model_paths, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = pair_rows(20)
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    out = tmp_path / "adapter"
    code = main(["train-preferences", "--model", str(hf_model_paths["llama"]), "--data", data, "--out", str(out),
                 "--loss", "sigmoid", "--beta", "0.1", "--steps", "40", "--batch-size", "10", "--learning-rate",
                 "1e-2", "--seed", "0", "--quiet", *device_args()])
    assert code == 0
    base = AutoModelForCausalLM.from_pretrained(hf_model_paths["llama"], dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(hf_model_paths["llama"])
    # peft builds the LoRA layers in the default dtype (the suite's is float64)
    with default_dtype(torch.float32), warnings.catch_warnings():
        # peft 0.21 reads transformers 5's deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = PeftModel.from_pretrained(base, str(out))
        margins = plain_margins(model, tokenizer, rows)
    assert bool((margins > 0).all()), margins
    info = json.loads((out / "irl_bilevel_adapter.json").read_text())
    assert info["metadata"]["summary"]["training_pairs"]["accuracy"] == 1.0
    assert info["metadata"]["run"]["provenance"]["seed"] == 0
    assert len(info["metadata"]["training"]["history"]) == 40


@pytest.mark.parametrize("loss", policy_losses())
def test_every_catalog_policy_loss_trains_through_the_command(hf_model_paths, tmp_path, loss):
    architecture = ARCHITECTURES[policy_losses().index(loss) % len(ARCHITECTURES)]
    rows = [{**row, "aspect_labels": [1.0, float(i % 2)], "other_chosen_rewards": [0.5],
             "other_rejected_rewards": [0.1 * i]} for i, row in enumerate(pair_rows(6))]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    extra = ["--set", "loss_params.weights=[1.0, 0.5]"] if loss == "modpo" else []
    code = main(["train-preferences", "--model", str(hf_model_paths[architecture]), "--data", data, "--out",
                 str(tmp_path / "adapter"), "--loss", loss, "--steps", "2", "--batch-size", "4", "--quiet",
                 *extra, *device_args()])
    assert code == 0
    history = json.loads((tmp_path / "adapter" / "irl_bilevel_adapter.json").read_text())["metadata"]["training"]
    assert len(history["history"]) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in history["history"])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_conversational_pairs_go_through_the_chat_template_in_bfloat16(hf_model_paths, tmp_path, architecture):
    from transformers import AutoTokenizer

    rows = [{"prompt": [{"role": "user", "content": f"was {row['prompt']} good ?"}],
             "chosen": [{"role": "assistant", "content": row["chosen"].strip()}],
             "rejected": [{"role": "assistant", "content": row["rejected"].strip()}]} for row in pair_rows(6)]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    tokenizer = AutoTokenizer.from_pretrained(hf_model_paths[architecture])
    dataset = tokenize_preferences(read_preference_file(data), tokenizer)
    assistant, end = tokenizer.convert_tokens_to_ids(["<|assistant|>", "<|end|>"])
    assert dataset.prompt_ids[0][0] == tokenizer.convert_tokens_to_ids("<|user|>")
    assert dataset.prompt_ids[0][-1] == assistant  # the generation prompt closes the prompt
    assert dataset.chosen_ids[0][-1] == end and assistant not in dataset.chosen_ids[0]
    assert tokenizer.decode(dataset.chosen_ids[0]).startswith(rows[0]["chosen"][0]["content"])
    code = main(["train-preferences", "--model", str(hf_model_paths[architecture]), "--data", data, "--out",
                 str(tmp_path / "adapter"), "--steps", "2", "--batch-size", "3", "--quiet", *device_args("bfloat16")])
    assert code == 0


def test_unpaired_labels_from_a_datasets_folder_train_kto(hf_model_paths, tmp_path):
    import datasets

    rows = [{"prompt": row["prompt"], "completion": row[side], "label": side == "chosen"}
            for row in pair_rows(4) for side in ("chosen", "rejected")]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "kto"))
    records = read_preference_file(tmp_path / "kto")
    assert records.kind == "unpaired" and len(records) == 8
    code = main(["train-preferences", "--model", str(hf_model_paths["qwen2"]), "--data", str(tmp_path / "kto"),
                 "--out", str(tmp_path / "adapter"), "--loss", "kto", "--steps", "2", "--batch-size", "4",
                 "--quiet", *device_args()])
    assert code == 0
    code = main(["train-preferences", "--model", str(hf_model_paths["qwen2"]), "--data", str(tmp_path / "kto"),
                 "--out", str(tmp_path / "adapter2"), "--loss", "sigmoid", "--quiet", *device_args()])
    assert code == 2  # a paired loss on unpaired labels


def test_a_datasets_dict_folder_reads_its_split(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(pair_rows(3)),
                          "test": datasets.Dataset.from_list(pair_rows(2))}).save_to_disk(str(tmp_path / "dd"))
    assert len(read_preference_file(tmp_path / "dd")) == 3
    assert len(read_preference_file(tmp_path / "dd", split="test")) == 2
    with pytest.raises(ValidationError, match="splits"):
        read_preference_file(tmp_path / "dd", split="validation")


@pytest.mark.parametrize(("row", "message"), [
    ({"prompt": "the film was", "chosen": " great ."}, "rejected: missing in .* line 2"),
    ({"prompt": "the film was", "chosen": " ", "rejected": " bad ."}, "chosen: in .* line 2 is empty"),
    ({"prompt": "the film was", "chosen": " great .", "rejected": " bad .", "score": 3}, "score: unknown column"),
    ({"prompt": "the film was", "chosen": [{"role": "assistant", "content": "hi"}], "rejected": " bad ."},
     "chosen: in .* line 2 is a list"),
])
def test_malformed_rows_are_errors_naming_the_column_and_the_line(tmp_path, row, message):
    data = write_jsonl(tmp_path / "bad.jsonl", [pair_rows(1)[0], row])
    with pytest.raises(ValidationError, match=message):
        read_preference_file(data)
    assert len(read_preference_file(data, ignore_columns=["score"])) == 2 if "score" in row else True


def test_malformed_messages_and_a_missing_chat_template_are_errors(tmp_path, hf_model_paths):
    from transformers import AutoTokenizer

    good = {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "yes"}],
            "rejected": [{"role": "assistant", "content": "no"}]}
    bad = {**good, "chosen": [{"role": "assistant", "content": ""}]}
    with pytest.raises(ValidationError, match=r"chosen: message 0 in .* line 2 has empty content"):
        read_preference_file(write_jsonl(tmp_path / "a.jsonl", [good, bad]))
    odd = {**good, "prompt": [{"role": "user", "content": "hi", "mood": "happy"}]}
    with pytest.raises(ValidationError, match="unknown key 'mood'"):
        read_preference_file(write_jsonl(tmp_path / "b.jsonl", [good, odd]))
    tokenizer = AutoTokenizer.from_pretrained(hf_model_paths["gpt2"])
    tokenizer.chat_template = None
    with pytest.raises(ValidationError, match="no chat template"):
        tokenize_preferences(read_preference_file(write_jsonl(tmp_path / "c.jsonl", [good])), tokenizer)
    code = main(["train-preferences", "--model", str(hf_model_paths["gpt2"]), "--data", str(tmp_path / "a.jsonl"),
                 "--out", str(tmp_path / "adapter"), "--quiet", *device_args()])
    assert code == 2


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_reward_model_rloo_and_rewardbench_commands_run_on_each_architecture(hf_model_paths, tmp_path, architecture,
                                                                          capsys):
    path = str(hf_model_paths[architecture])
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(8))
    bench = write_jsonl(tmp_path / "bench.jsonl", [{**row, "subset": "chat"} for row in pair_rows(8)])
    assert main(["train-reward-model", "--model", path, "--data", data, "--out", str(tmp_path / "rm"), "--steps",
                 "30", "--learning-rate", "3e-2", "--frozen-backbone", *device_args()]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["final_accuracy"] == 1.0  # the frozen backbone's features separate 8 pairs
    assert main(["rewardbench", "--model", str(tmp_path / "rm"), "--file", bench, *device_args()]) == 0
    assert json.loads(capsys.readouterr().out)["pair_accuracy"] == 1.0
    assert main(["rloo", "--model", path, "--prompts", data, "--reward-model", str(tmp_path / "rm"), "--out",
                 str(tmp_path / "rloo"), "--steps", "2", "--prompts-per-step", "2", "--samples-per-prompt", "2",
                 "--max-new-tokens", "4", "--quiet", *device_args()]) == 0
    assert (tmp_path / "rloo" / "adapter_config.json").is_file()
    capsys.readouterr()
    assert main(["train-preferences", "--model", path, "--data", data, "--out", str(tmp_path / "dpo"), "--steps",
                 "2", "--quiet", *device_args()]) == 0
    capsys.readouterr()
    assert main(["rewardbench", "--model", str(tmp_path / "dpo"), "--file", bench, *device_args()]) == 0
    assert json.loads(capsys.readouterr().out)["num_pairs"] == 8


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_agentic_task_runs_on_a_local_model(hf_model_paths, tmp_path, architecture):
    settings = ['envs=["steppath"]', "seeds=1", "with_preferences=false", "eval_episodes_per_start=1"]
    code = main(["agentic", "--model", str(hf_model_paths[architecture]), "--out", str(tmp_path), "--scale", "tiny",
                 "--quiet", *[arg for s in settings for arg in ("--set", s)], *device_args()])
    assert code == 0
    result = json.loads((tmp_path / "agentic_reward_learning.json").read_text())
    assert result["complete"] and result["model"]["path"] == str(hf_model_paths[architecture].resolve())
    assert result["config"]["device"] == "cpu" and "steppath" in result["envs"]


@pytest.mark.parametrize("command", ["train-preferences", "train-reward-model", "rloo"])
def test_a_folder_of_user_files_survives_every_llm_command(hf_model_paths, tmp_path, command):
    """The bug this guards against: `--out DIR` used to move DIR aside and delete it, whatever it held."""
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(4))
    user = tmp_path / "my_results"
    (user / "nested").mkdir(parents=True)
    (user / "notes.txt").write_text("years of work")
    (user / "nested" / "table.csv").write_text("a,b\n1,2\n")
    user_file = tmp_path / "report.pdf"
    user_file.write_bytes(b"%PDF")
    extra = {"train-preferences": ["--data", data], "train-reward-model": ["--data", data],
             "rloo": ["--prompts", data, "--reward-model", str(tmp_path / "no_reward_model")]}[command]
    for out in (user, user_file):
        before = sorted((p.relative_to(tmp_path), p.read_bytes() if p.is_file() else b"") for p in tmp_path.rglob("*"))
        code = main([command, "--model", str(hf_model_paths["llama"]), *extra, "--out", str(out), "--steps", "1",
                     "--overwrite", *device_args()])
        assert code == 2
        after = sorted((p.relative_to(tmp_path), p.read_bytes() if p.is_file() else b"") for p in tmp_path.rglob("*"))
        assert after == before


def test_overwrite_replaces_only_the_commands_own_files(hf_model_paths, tmp_path, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(4))
    out = tmp_path / "adapter"
    arguments = ["train-preferences", "--model", str(hf_model_paths["llama"]), "--data", data, "--out", str(out),
                 "--steps", "1", "--batch-size", "4", "--quiet", *device_args()]
    assert main(arguments) == 0
    (out / "my_notes.txt").write_text("kept")
    assert main(arguments) == 2  # an earlier output: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*arguments, "--overwrite"]) == 0
    assert (out / "my_notes.txt").read_text() == "kept" and (out / "adapter_model.safetensors").is_file()
