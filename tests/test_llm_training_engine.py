"""The training engine under every LM loop (llm/accelerated.py, llm/checkpoints.py): the default settings reproduce
the plain loop the library had before it (fused AdamW, clipping, no schedule) bit for bit, gradient accumulation
and warm-up schedules, checkpoints that a rerun resumes from (also after `kill -9` of the command), and two
processes (DDP over gloo, `torchrun`) training the same adapter as one."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_llm_training import PROMPTS, synthetic_pairs

from irl_bilevel.losses import PREFERENCE_LOSSES, PreferenceBatch, UnpairedBatch
from irl_bilevel.precision import default_dtype
from irl_bilevel.validation import ValidationError
from irlb.main import main
from llm.accelerated import process_shares
from llm.completion_logprobs import completion_logprobs, fuse_activations
from llm.models import encode_texts, generate_completions, load_causal_lm, reference_mode, with_lora
from llm.reward_models import RewardModelTrainingConfig, TextPairs, backbone_reward_model, train_reward_model
from llm.training import (
    PreferenceDataset,
    PreferenceTrainingConfig,
    RLConfig,
    rloo_advantages,
    train_preferences,
    train_rl,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def float32():
    """The LM loops run in float32 (the suite's default dtype is float64)."""
    with default_dtype(torch.float32):
        yield


def fresh_policy(path):
    model, tokenizer = load_causal_lm(path)
    return with_lora(model, seed=0), tokenizer


def adapter(policy) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in policy.named_parameters() if p.requires_grad}


def length_reward(prompts: list[str], completions: list[str]) -> torch.Tensor:
    return torch.tensor([float(len(text.split())) - 3.0 for text in completions])


# ---------------------------------------------------------------------- the plain loop the engine replaced
def plain_batches(size: int, batch_size: int, steps: int, seed: int) -> list[torch.Tensor]:
    """The minibatches of the library's loop before the engine: slices of seeded permutations."""
    generator = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, size)
    order, position, rows = torch.randperm(size, generator=generator), 0, []
    for _ in range(steps):
        if position + batch_size > size:
            order, position = torch.randperm(size, generator=generator), 0
        rows.append(order[position:position + batch_size])
        position += batch_size
    return rows


def plain_step(loss: torch.Tensor, optimizer, parameters, max_grad_norm: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()


def plain_preference_loop(policy, data: PreferenceDataset, pad: int, loss: str, beta: float, steps: int,
                          batch_size: int, learning_rate: float) -> list[float]:
    """DPO-family and KTO training as llm.training did it at commit 36e821b (one process, fused AdamW, clipping at
    1, reference log-probs precomputed, KTO's z0 from each example's next mismatched completion)."""
    parameters = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0, fused=True)
    fuse_activations(policy)
    unpaired = PREFERENCE_LOSSES[loss].batch_type is UnpairedBatch
    if unpaired:
        examples = data.unpaired()
        partners = examples.kl_partners()
        prompts, completions = examples.prompt_ids, examples.completion_ids
        others = [completions[j] for j in partners]
        size = len(examples)
    else:
        prompts = [p for p in data.prompt_ids for _ in range(2)]
        completions = [c for pair in zip(data.chosen_ids, data.rejected_ids) for c in pair]
        size = len(data)
    with torch.no_grad(), reference_mode(policy):
        if unpaired:
            twice = [p for p in prompts for _ in range(2)]
            reference = completion_logprobs(policy, twice, [c for pair in zip(completions, others) for c in pair],
                                            pad, 64)[0].reshape(-1, 2)
        else:
            reference = completion_logprobs(policy, prompts, completions, pad, 64)[0].reshape(-1, 2)
    losses = []
    for rows in plain_batches(size, batch_size, steps, seed=0):
        index = rows.tolist()
        if unpaired:
            chosen_prompts = [prompts[i] for i in index]
            summed, _ = completion_logprobs(policy, chosen_prompts, [completions[i] for i in index], pad)
            with torch.no_grad():
                kl, _ = completion_logprobs(policy, chosen_prompts, [others[i] for i in index], pad)
            batch = UnpairedBatch(summed, reference[rows, 0], torch.tensor(examples.desirable)[rows],
                                  kl_policy_logps=kl, kl_reference_logps=reference[rows, 1])
        else:
            summed, counts = completion_logprobs(policy, [prompts[2 * i] for i in index for _ in range(2)],
                                                 [completions[2 * i + j] for i in index for j in range(2)], pad)
            summed, counts = summed.reshape(-1, 2), counts.reshape(-1, 2)
            batch = PreferenceBatch(summed[:, 0], summed[:, 1], reference[rows, 0], reference[rows, 1],
                                    counts[:, 0], counts[:, 1])
        output = PREFERENCE_LOSSES[loss](batch, beta)
        plain_step(output.loss, optimizer, parameters, 1.0)
        losses.append(float(output.loss.detach()))
    return losses


def plain_rloo_loop(policy, tokenizer, config: RLConfig) -> list[float]:
    """RLOO as llm.training.train_rl did it at commit 36e821b."""
    parameters = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0, fused=True)
    fuse_activations(policy)
    pad, k, losses = tokenizer.pad_token_id, config.samples_per_prompt, []
    for step, rows in enumerate(plain_batches(len(PROMPTS), config.prompts_per_step, config.steps, config.seed), 1):
        samples = generate_completions(policy, tokenizer, [PROMPTS[i] for i in rows.tolist()], config.max_new_tokens,
                                       num_samples=k, seed=config.seed * 1_000_003 + step)
        rewards = length_reward(samples.prompts, samples.texts)
        summed, _ = completion_logprobs(policy, samples.prompt_ids, samples.completion_ids, pad)
        with torch.no_grad(), reference_mode(policy):
            reference, _ = completion_logprobs(policy, samples.prompt_ids, samples.completion_ids, pad)
        penalized = rewards.double() - config.kl_coef * (summed.detach() - reference).double()
        loss = -(rloo_advantages(penalized, k).float() * summed).mean()
        plain_step(loss, optimizer, parameters, 1.0)
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize(("loss", "beta"), [("sigmoid", 0.1), ("kto", 0.1), ("ipo", 0.5)])
def test_default_settings_reproduce_the_plain_preference_loop_bit_for_bit(tiny_lm_path, loss, beta):
    policy, tokenizer = fresh_policy(tiny_lm_path)
    expected = plain_preference_loop(policy, synthetic_pairs(tokenizer), tokenizer.pad_token_id, loss, beta, 5, 3,
                                     2e-2)
    trained, _ = fresh_policy(tiny_lm_path)
    config = PreferenceTrainingConfig(loss=loss, beta=beta, steps=5, batch_size=3, learning_rate=2e-2, progress=False)
    result = train_preferences(trained, synthetic_pairs(tokenizer), tokenizer.pad_token_id, config)
    assert [row["loss"] for row in result.history] == expected
    for name, value in adapter(policy).items():
        assert torch.equal(adapter(trained)[name], value), name


def test_default_settings_reproduce_the_plain_rloo_loop_bit_for_bit(tiny_lm_path):
    config = RLConfig(steps=3, prompts_per_step=3, samples_per_prompt=2, kl_coef=0.1, max_new_tokens=6,
                      learning_rate=2e-2, progress=False)
    policy, tokenizer = fresh_policy(tiny_lm_path)
    expected = plain_rloo_loop(policy, tokenizer, config)
    trained, _ = fresh_policy(tiny_lm_path)
    result = train_rl(trained, tokenizer, PROMPTS, length_reward, config)
    assert [row["loss"] for row in result.history] == expected
    for name, value in adapter(policy).items():
        assert torch.equal(adapter(trained)[name], value), name


# ---------------------------------------------------------------------- engine settings
def test_process_shares_split_every_micro_batch_between_the_processes():
    rows = torch.arange(10, 20)
    shares = [process_shares(rows, 2, process, 2) for process in range(2)]
    assert [s.tolist() for s in shares[0]] == [[10, 11, 12], [15, 16, 17]]
    assert [s.tolist() for s in shares[1]] == [[13, 14], [18, 19]]
    assert sorted(torch.cat([*shares[0], *shares[1]]).tolist()) == rows.tolist()  # each row once


def test_gradient_accumulation_takes_the_same_steps_and_the_schedule_warms_up(tiny_lm_path, tmp_path):
    """Two micro-batches of 4 pairs give the step of one batch of 8 (the mean loss, to float32 round-off); a
    linear schedule with 2 warm-up steps sets the logged learning rates."""
    adapters, histories = [], []
    for accumulation in (1, 2):
        policy, tokenizer = fresh_policy(tiny_lm_path)
        config = PreferenceTrainingConfig(loss="sigmoid", beta=0.1, steps=6, batch_size=8, learning_rate=2e-2,
                                          gradient_accumulation_steps=accumulation, lr_scheduler="linear",
                                          warmup_steps=2, output_dir=str(tmp_path / f"g{accumulation}"),
                                          progress=False)
        histories.append(train_preferences(policy, synthetic_pairs(tokenizer), tokenizer.pad_token_id,
                                           config).history)
        adapters.append(adapter(policy))
    for name, value in adapters[0].items():
        assert torch.allclose(adapters[1][name], value, atol=1e-6, rtol=0), name
    assert [h["loss"] for h in histories[1]] == pytest.approx([h["loss"] for h in histories[0]], abs=1e-6)
    rows = [json.loads(line) for line in (tmp_path / "g2" / "metrics.jsonl").read_text().splitlines()]
    # the rate each step used: warm-up 0, 1/2, then linear decay over the 4 remaining steps
    assert [r["learning_rate"] for r in rows] == pytest.approx([0.0, 1e-2, 2e-2, 1.5e-2, 1e-2, 5e-3])
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert any((tmp_path / "g2" / "tensorboard").iterdir())
    with pytest.raises(ValidationError, match="warmup_steps"):
        PreferenceTrainingConfig(warmup_steps=2)  # the constant schedule has no warm-up
    with pytest.raises(ValidationError, match="batch_size"):  # 3 pairs cannot feed 4 micro-batches
        train_preferences(fresh_policy(tiny_lm_path)[0], synthetic_pairs(tokenizer), tokenizer.pad_token_id,
                          PreferenceTrainingConfig(batch_size=3, gradient_accumulation_steps=4, progress=False))


def test_bf16_autocast_trains_close_to_float32(tiny_lm_path, tmp_path):
    """accelerate fixes one mixed precision per process, so the bf16 run is a process of its own."""
    script = f"""
import json, torch
from llm.models import encode_texts, load_causal_lm, with_lora
from llm.training import PreferenceDataset, PreferenceTrainingConfig, train_preferences
torch.set_num_threads(1)
model, tokenizer = load_causal_lm({str(tiny_lm_path)!r})
policy = with_lora(model, seed=0)
p, c = encode_texts(tokenizer, {PROMPTS!r}, ["the film was great ."] * 8)
_, r = encode_texts(tokenizer, {PROMPTS!r}, ["the film was awful ."] * 8)
config = PreferenceTrainingConfig(steps=3, batch_size=8, beta=0.1, learning_rate=1e-2, mixed_precision="bf16",
                                  progress=False)
print(json.dumps([h["loss"] for h in train_preferences(policy, PreferenceDataset(p, c, r), tokenizer.pad_token_id,
                                                        config).history]))
"""
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    bf16 = json.loads(process.stdout.strip().splitlines()[-1])
    policy, tokenizer = fresh_policy(tiny_lm_path)
    pairs = PreferenceDataset(*encode_texts(tokenizer, PROMPTS, ["the film was great ."] * 8),
                              encode_texts(tokenizer, PROMPTS, ["the film was awful ."] * 8)[1])
    exact = train_preferences(policy, pairs, tokenizer.pad_token_id, PreferenceTrainingConfig(
        steps=3, batch_size=8, beta=0.1, learning_rate=1e-2, progress=False)).history
    assert bf16 != [h["loss"] for h in exact]  # autocast did change the arithmetic
    assert bf16 == pytest.approx([h["loss"] for h in exact], abs=2e-2)


# ---------------------------------------------------------------------- checkpoints and resuming
class Interrupted(Exception):
    pass


def interrupt_at(step: int):
    def evaluate(policy, at: int) -> dict[str, float]:
        if at == step:
            raise Interrupted
        return {"evaluated": float(at)}
    return evaluate


def run_preferences(path, out, evaluate=None):
    policy, tokenizer = fresh_policy(path)
    config = PreferenceTrainingConfig(loss="kto", beta=0.1, steps=6, batch_size=3, learning_rate=2e-2,
                                      eval_every=1, output_dir=str(out), checkpoint_every=2, progress=False)
    return policy, train_preferences(policy, synthetic_pairs(tokenizer), tokenizer.pad_token_id, config, evaluate)


def run_rl(path, out, evaluate=None):
    policy, tokenizer = fresh_policy(path)
    config = RLConfig(algorithm="reinforce", steps=5, prompts_per_step=3, samples_per_prompt=2, max_new_tokens=5,
                      learning_rate=2e-2, eval_every=1, output_dir=str(out), checkpoint_every=2, progress=False)
    return policy, train_rl(policy, tokenizer, PROMPTS, length_reward, config, evaluate)


def run_reward_model(path, out):
    from llm.models import LoraSettings

    model = backbone_reward_model(path, lora=LoraSettings(r=2), seed=0)
    pairs = TextPairs(PROMPTS, ["the film was great ."] * 8, ["the film was awful ."] * 8)
    return model, train_reward_model(model, pairs, RewardModelTrainingConfig(
        steps=6, batch_size=3, learning_rate=5e-2, output_dir=str(out), checkpoint_every=2))


@pytest.mark.parametrize("loop", ["preferences", "rl"])
def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_result(tiny_lm_path, tmp_path, loop):
    run = {"preferences": run_preferences, "rl": run_rl}[loop]
    policy, result = run(tiny_lm_path, tmp_path / "straight", interrupt_at(-1))
    with pytest.raises(Interrupted):
        run(tiny_lm_path, tmp_path / "resumed", interrupt_at(3))  # after the checkpoint of step 2
    assert (tmp_path / "resumed" / "checkpoints" / "step-00000002").is_dir()
    resumed_policy, resumed = run(tiny_lm_path, tmp_path / "resumed", interrupt_at(-1))
    assert resumed.resumed_from == 2 and result.resumed_from == 0
    for name, value in adapter(policy).items():
        assert torch.equal(adapter(resumed_policy)[name], value), name
    assert resumed.history == result.history and resumed.evaluations == result.evaluations
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [h["step"] for h in result.history]  # steps 3.. logged once


def test_a_reward_model_run_resumes_to_the_same_heads_and_adapter(tiny_lm_path, tmp_path, monkeypatch):
    from llm.checkpoints import RunFolder

    model, result = run_reward_model(tiny_lm_path, tmp_path / "straight")
    save = RunFolder.save

    def save_then_fail(self, step, *args, **kwargs):  # the run dies right after its checkpoint of step 4
        folder = save(self, step, *args, **kwargs)
        if step == 4:
            raise Interrupted
        return folder

    with monkeypatch.context() as patch:
        patch.setattr(RunFolder, "save", save_then_fail)
        with pytest.raises(Interrupted):
            run_reward_model(tiny_lm_path, tmp_path / "resumed")
    resumed_model, resumed = run_reward_model(tiny_lm_path, tmp_path / "resumed")
    assert resumed.losses == result.losses and resumed.final_loss == result.final_loss
    for (name, value), (_, other) in zip(model.named_parameters(), resumed_model.named_parameters()):
        assert torch.equal(value, other), name


def test_a_run_folder_with_other_settings_is_refused_and_left_as_it_was(tiny_lm_path, tmp_path):
    with pytest.raises(Interrupted):
        run_preferences(tiny_lm_path, tmp_path / "run", interrupt_at(3))
    before = sorted((p, p.read_bytes() if p.is_file() else b"") for p in (tmp_path / "run").rglob("*"))
    policy, tokenizer = fresh_policy(tiny_lm_path)
    other = PreferenceTrainingConfig(loss="kto", beta=0.2, steps=6, batch_size=3, learning_rate=2e-2,
                                     output_dir=str(tmp_path / "run"), checkpoint_every=2, progress=False)
    with pytest.raises(ValidationError, match="unfinished run with other settings"):
        train_preferences(policy, synthetic_pairs(tokenizer), tokenizer.pad_token_id, other)
    assert sorted((p, p.read_bytes() if p.is_file() else b"") for p in (tmp_path / "run").rglob("*")) == before


KILLER = """
import os, signal, sys
import llm.checkpoints
save = llm.checkpoints.RunFolder.save
def save_then_die(self, step, *args, **kwargs):
    folder = save(self, step, *args, **kwargs)
    if step == int(os.environ["KILL_AFTER_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return folder
llm.checkpoints.RunFolder.save = save_then_die
from irlb.main import main
sys.exit(main(sys.argv[1:]))
"""


def cli_pairs(tmp_path) -> str:
    from test_llm_commands import pair_rows, write_jsonl

    return write_jsonl(tmp_path / "pairs.jsonl", pair_rows(16))


def test_rerunning_a_command_after_kill_9_resumes_and_ends_with_the_same_adapter(hf_model_paths, tmp_path):
    data = cli_pairs(tmp_path)
    arguments = ["train-preferences", "--model", str(hf_model_paths["llama"]), "--data", data, "--steps", "8",
                 "--batch-size", "4", "--learning-rate", "1e-2", "--checkpoint-every", "2", "--device", "cpu",
                 "--quiet", "--threads", "1"]
    killed = subprocess.run([sys.executable, "-c", KILLER, *arguments, "--out", str(tmp_path / "killed")],
                            env={**os.environ, "KILL_AFTER_STEP": "4"}, capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    out = tmp_path / "killed"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["run.json", "step-00000004"]
    assert not (out / "irl_bilevel_adapter.json").exists()
    assert main([*arguments, "--out", str(out)]) == 0  # the same command: resumes, no --overwrite needed
    assert main([*arguments, "--out", str(tmp_path / "straight")]) == 0
    resumed, straight = (load_file(str(tmp_path / name / "adapter_model.safetensors")) for name in ("killed",
                                                                                                   "straight"))
    assert max(float((resumed[k] - straight[k]).abs().max()) for k in straight) <= 1e-6
    info = json.loads((out / "irl_bilevel_adapter.json").read_text())["metadata"]["training"]
    assert info["resumed_from"] == 4 and [h["step"] for h in info["history"]] == list(range(1, 9))
    assert not (out / "checkpoints").exists()  # a finished run keeps its output, metrics and events only
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == list(range(1, 9))
    assert main([*arguments, "--out", str(out)]) == 2  # now a finished output: --overwrite needed


def test_two_processes_train_the_same_adapter_as_one(hf_model_paths, tmp_path):
    """`torchrun --nproc_per_node 2 -m irlb train-preferences` (DDP over gloo on the CPU) against one process with
    the same global batch: each process trains on half of every batch, the main process alone writes."""
    data = cli_pairs(tmp_path)
    arguments = ["train-preferences", "--model", str(hf_model_paths["llama"]), "--data", data, "--steps", "6",
                 "--batch-size", "8", "--learning-rate", "1e-2", "--device", "cpu", "--quiet", "--threads", "1"]
    torchrun = Path(sys.executable).parent / "torchrun"
    process = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "irlb", *arguments,
                              "--out", str(tmp_path / "two")],
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, cwd=ROOT,
                             timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert main([*arguments, "--out", str(tmp_path / "one")]) == 0
    two, one = (load_file(str(tmp_path / name / "adapter_model.safetensors")) for name in ("two", "one"))
    assert max(float((two[k] - one[k]).abs().max()) for k in one) <= 1e-5
    assert max(float(one[k].abs().max()) for k in one) > 1e-2  # the adapter did train
    info = json.loads((tmp_path / "two" / "irl_bilevel_adapter.json").read_text())["metadata"]["training"]
    assert info["processes"] == 2 and all(h["process_examples"] == [4, 4] for h in info["history"])
    single = json.loads((tmp_path / "one" / "irl_bilevel_adapter.json").read_text())["metadata"]["training"]
    assert [h["loss"] for h in info["history"]] == pytest.approx([h["loss"] for h in single["history"]], abs=1e-5)
    assert not math.isnan(info["history"][-1]["grad_norm"])


def _tree(root: Path) -> list[tuple[str, bytes]]:
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"<dir>") for p in root.rglob("*"))


@pytest.mark.parametrize("earlier", ["finished", "unfinished"])
def test_overwrite_with_a_bad_input_leaves_the_earlier_run_as_it_was(hf_model_paths, tmp_path, earlier, capsys):
    """--overwrite removes the earlier run's files only once the inputs are read: a failed start changes nothing."""
    data = cli_pairs(tmp_path)
    out = tmp_path / "run"
    arguments = ["train-preferences", "--model", str(hf_model_paths["llama"]), "--steps", "4", "--batch-size", "4",
                 "--checkpoint-every", "2", "--device", "cpu", "--quiet", "--threads", "1", "--out", str(out)]
    if earlier == "finished":
        assert main([*arguments, "--data", data]) == 0
    else:
        killed = subprocess.run([sys.executable, "-c", KILLER, *arguments, "--data", data],
                                env={**os.environ, "KILL_AFTER_STEP": "2"}, capture_output=True, text=True, cwd=ROOT,
                                timeout=300)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert (out / "checkpoints" / "step-00000002").is_dir()
    assert (out / "metrics.jsonl").is_file()
    before = _tree(out)
    capsys.readouterr()
    assert main([*arguments, "--data", str(tmp_path / "missing.jsonl"), "--overwrite"]) == 2
    assert capsys.readouterr().err.startswith("irlb: error: ")
    assert _tree(out) == before


def test_the_engine_settings_are_generated_flags_with_the_configs_defaults(capsys):
    """The engine's settings (LoopSettings, a typed Config) are flags of the three training commands, their help
    the fields' docs and defaults, checked by the same validator as --set and --config."""
    from irl_bilevel.config_cli import flag_name
    from llm.accelerated import LoopSettings

    docs = LoopSettings.field_docs()
    for command in ("train-preferences", "train-reward-model", "rloo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for setting in LoopSettings.settings():
            if setting.cli:
                assert flag_name(setting.key) in text, (command, setting.key)
                assert " ".join(docs[setting.key].split()[:4]) in text, (command, setting.key)
            else:
                assert flag_name(setting.key) not in text  # output_dir is --out
    assert main(["train-preferences", "--model", "m", "--data", "d", "--out", "o", "--warmup-steps", "2"]) == 2
    assert "train-preferences.warmup_steps: the 'constant' schedule has no warm-up" in capsys.readouterr().err
    assert main(["rloo", "--model", "m", "--prompts", "p", "--reward-model", "r", "--out", "o",
                 "--set", "gradient_accumulation_steps=0"]) == 2
    assert "rloo.gradient_accumulation_steps: expected a positive integer, got 0" in capsys.readouterr().err
