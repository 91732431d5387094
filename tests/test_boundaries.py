"""The core imports neither the RL nor the language-model stack (the layout of the developers' guide)."""

import subprocess
import sys

SCRIPT = """
import importlib, pkgutil, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError('the core imported ' + name)
        return None

sys.meta_path.insert(0, Block())
import irl_bilevel
for module in pkgutil.walk_packages(irl_bilevel.__path__, 'irl_bilevel.'):
    importlib.import_module(module.name)
"""


def test_every_core_module_imports_without_gymnasium_sb3_transformers_or_classic_rl():
    blocked = {"gymnasium", "stable_baselines3", "transformers", "peft", "trl", "imitation", "matplotlib",
               "classic_rl", "llm", "irlb", "figures"}
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(blocked=blocked)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
