"""The public surface: ``ftpipe.__all__`` is ordered and complete, and every public name is documented."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import ftpipe

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"
PUBLIC_SUBPACKAGES = ("ftpipe.executors", "ftpipe.diagnose")


def _documented() -> set[str]:
    """Names an autodoc directive or the torch table of docs/api.md documents."""
    text = API_DOC.read_text()
    names = set(re.findall(r"^\.\. auto\w+:: (ftpipe\.[\w.]+)", text, re.MULTILINE))
    names |= set(re.findall(r"^\| `(ftpipe\.torch\.\w+)` \|", text, re.MULTILINE))
    return names


def _torch_all() -> list[str]:
    """``ftpipe.torch.__all__`` read from its source (importing it needs torch)."""
    tree = ast.parse((Path(ftpipe.__file__).parent / "torch" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("ftpipe.torch has no __all__")


def test_all_is_sorted_unique_and_importable() -> None:
    assert ftpipe.__all__ == sorted(ftpipe.__all__, key=lambda n: (n[0].islower(), n))
    assert len(set(ftpipe.__all__)) == len(ftpipe.__all__)
    for name in ftpipe.__all__:
        assert getattr(ftpipe, name) is not None, name


def test_every_public_name_of_the_subpackages_is_re_exported_once() -> None:
    for package in PUBLIC_SUBPACKAGES:
        missing = set(sys.modules[package].__all__) - set(ftpipe.__all__)
        assert not missing, f"{package} exports {sorted(missing)}, which ftpipe does not"
        for name in sys.modules[package].__all__:
            assert getattr(ftpipe, name) is getattr(sys.modules[package], name), name


def test_what_users_need_to_extend_it_is_public() -> None:
    for name in ("Configuration", "ExecutorKind", "register_executor_kind"):
        assert name in ftpipe.__all__


def test_every_public_name_is_documented_in_the_api_page() -> None:
    documented = _documented()
    wanted = {f"ftpipe.{n}" for n in ftpipe.__all__} | {f"ftpipe.torch.{n}" for n in _torch_all()}
    missing = sorted(wanted - documented)
    assert not missing, f"public but not in docs/api.md: {missing}"
    stale = sorted(n for n in documented if n.count(".") == 1 and n not in wanted)
    assert not stale, f"docs/api.md documents names that are not public: {stale}"
