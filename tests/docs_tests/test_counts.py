"""The counts the README and docs/experiments.md state equal the registry's (issue 18, defect 5).

The number of experiments and of checks is read from the code
(:mod:`trainlab.experiments._counts`: one ``Check(...)`` per check, held equal to what a run
returns by ``tests/experiments_tests/test_exp_smoke.py``), never written here, so adding a
check or an experiment fails this test until the sentences are updated.

Statements checked (in README.md and docs/experiments.md):

* "``N`` experiments with ``M`` checks" -- ``N`` experiments, ``M`` checks;
* "``K`` of the ``M`` checks" / "``K`` of ``M`` checks" -- ``M`` is the total;
* the README's "``K`` of the ``M`` checks hold" and the bullets under "Claims that did not
  hold" in docs/experiments.md (one per check that does not hold) add up to ``M``, and the
  sentence above the bullets names their number.
"""

from __future__ import annotations

from pathlib import Path
import re

from trainlab.experiments._counts import check_counts, experiment_count, total_checks

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
EXPERIMENTS = (ROOT / "docs" / "experiments.md").read_text()
WORDS = {w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                                     "ten", "eleven", "twelve"])}
NUM = r"(\d[\d,]*|" + "|".join(WORDS) + r")"


def number(text: str) -> int:
    t = text.lower().replace(",", "")
    return WORDS[t] if t in WORDS else int(t)


def statements(pattern: str, text: str) -> list[tuple[int, ...]]:
    text = re.sub(r"\s+", " ", text)  # a sentence may break across lines
    return [tuple(number(g) for g in m.groups()) for m in re.finditer(r"\b" + pattern, text, re.I)]


def test_counts_are_read_from_the_code() -> None:
    counts = check_counts()
    assert len(counts) == experiment_count() and all(n >= 1 for n in counts.values()), counts
    assert total_checks() == sum(counts.values())


def test_every_stated_total_of_checks_is_the_registrys() -> None:
    total = total_checks()
    for where, text in (("README.md", README), ("docs/experiments.md", EXPERIMENTS)):
        for k, m in statements(NUM + r" of (?:the )?" + NUM + r" checks", text):
            assert m == total, f"{where} says '{k} of {m} checks'; the registry has {total} checks"
            assert k <= m


def test_docs_state_the_number_of_experiments_and_checks() -> None:
    found = statements(NUM + r" experiments with " + NUM + r" checks", EXPERIMENTS)
    assert found, "docs/experiments.md must say 'runs N experiments with M checks'"
    for n, m in found:
        assert (n, m) == (experiment_count(), total_checks()), \
            f"docs/experiments.md says {n} experiments with {m} checks; the registry has " \
            f"{experiment_count()} experiments with {total_checks()} checks"


def test_held_and_not_held_add_up() -> None:
    total = total_checks()
    held = statements(NUM + r" of the " + NUM + r" checks hold", README)
    assert len(held) == 1, "README.md must say 'K of the M checks hold' once"
    section = re.search(r"## Claims that did not hold \(quick preset, embedded data\)\n(.*?)(?=\n## |\Z)",
                        EXPERIMENTS, re.S)
    assert section, "docs/experiments.md lost its section 'Claims that did not hold (quick preset, embedded data)'"
    bullets = re.findall(r"^- \*\*", section.group(1), re.M)
    assert held[0][0] + len(bullets) == total, \
        f"README: {held[0][0]} of {total} hold, but docs/experiments.md lists {len(bullets)} that do not"
    said = statements(NUM + r" of the " + NUM + r" checks do not hold", section.group(1))
    assert said and said[0] == (len(bullets), total), (said, len(bullets), total)


def test_no_machine_paths_in_the_docs() -> None:
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        assert "/work/" not in text and "shared/course" not in text, f"{path.name} cites a path of this machine"
