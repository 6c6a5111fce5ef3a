"""trainlab.lab._paths.safe_path: every way out of the lab root is refused, every way in is allowed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trainlab.errors import TrainlabError
from trainlab.lab._paths import PathMissing, PathRefused, safe_path


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """root/ with runs/a/metrics.jsonl, and a secret file beside root (outside it)."""
    root = tmp_path / "root"
    (root / "runs" / "a").mkdir(parents=True)
    (root / "runs" / "a" / "metrics.jsonl").write_text("{}\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the lab")
    return root, secret


def test_paths_under_root_resolve(tree):
    root, _ = tree
    assert safe_path(root, "runs/a/metrics.jsonl") == (root / "runs/a/metrics.jsonl").resolve()
    assert safe_path(root, "runs//a/./metrics.jsonl") == (root / "runs/a/metrics.jsonl").resolve()
    assert safe_path(root, "") == root.resolve()
    assert safe_path(root, ".") == root.resolve()
    # a missing path under the root is fine unless it must exist
    assert safe_path(root, "runs/new") == (root / "runs/new").resolve()
    with pytest.raises(PathMissing, match="does not exist") as e:
        safe_path(root, "runs/new", must_exist=True)
    assert e.value.status == 404


@pytest.mark.parametrize("bad, reason", [
    ("..", "'..'"),
    ("../secret.txt", "'..'"),
    ("runs/../../secret.txt", "'..'"),
    ("runs/a/../b", "'..'"),            # even one that would stay inside: never needed, always refused
    ("/etc/passwd", "absolute"),
    ("//etc/passwd", "absolute"),
    ("C:/Windows", "absolute"),
    ("runs\\..\\..\\secret.txt", "backslash"),
    ("runs/a\x00.txt", "NUL"),
])
def test_escapes_are_refused(tree, bad, reason):
    root, _ = tree
    with pytest.raises(PathRefused, match=reason) as e:
        safe_path(root, bad)
    assert e.value.status == 403
    assert isinstance(e.value, TrainlabError) and isinstance(e.value, ValueError)


def test_non_text_is_refused(tree):
    root, _ = tree
    with pytest.raises(PathRefused, match="must be text"):
        safe_path(root, b"runs")  # type: ignore[arg-type]


def test_symlink_out_of_root_is_refused(tree):
    root, secret = tree
    os.symlink(secret, root / "runs" / "leak.txt")              # a file link out
    os.symlink(secret.parent, root / "runs" / "a" / "up")      # a directory link out, one level down
    for rel in ("runs/leak.txt", "runs/a/up", "runs/a/up/secret.txt"):
        with pytest.raises(PathRefused, match="outside the lab root"):
            safe_path(root, rel)


def test_symlink_chain_out_of_root_is_refused(tree):
    root, secret = tree
    os.symlink(secret, root / "hop2")
    os.symlink(root / "hop2", root / "hop1")  # hop1 -> hop2 (inside) -> secret (outside)
    with pytest.raises(PathRefused, match="outside the lab root"):
        safe_path(root, "hop1")


def test_symlink_inside_root_is_followed(tree):
    root, _ = tree
    os.symlink(root / "runs" / "a", root / "latest")
    assert safe_path(root, "latest/metrics.jsonl") == (root / "runs/a/metrics.jsonl").resolve()


def test_root_that_is_itself_a_symlink(tree, tmp_path):
    root, _ = tree
    alias = tmp_path / "alias"
    os.symlink(root, alias)
    assert safe_path(alias, "runs/a") == (root / "runs/a").resolve()
    with pytest.raises(PathRefused):
        safe_path(alias, "../secret.txt")


def test_link_that_leaves_and_comes_back_is_judged_by_where_it_ends(tree):
    root, secret = tree
    os.symlink(secret.parent, root / "up")   # up -> the parent of root
    # up/root/runs ends inside the root again: what is opened is under the root, so it is allowed
    assert safe_path(root, "up/root/runs") == (root / "runs").resolve()
    with pytest.raises(PathRefused):
        safe_path(root, "up/secret.txt")
