"""The docs that are generated are current."""

import importlib.util
import re

from tests.conftest import ROOT


def docs_script(name: str):
    """The module of ``docs/NAME.py``, the script that generates a page."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_md_is_what_the_declarations_generate():
    expected = docs_script("make_settings").settings_markdown()
    assert (ROOT / "docs" / "settings.md").read_text(encoding="utf-8") == expected, (
        "docs/settings.md is stale: run python docs/make_settings.py"
    )


def test_results_md_is_what_the_benchmark_records_generate():
    expected = docs_script("make_results").results_markdown()
    assert (ROOT / "docs" / "results.md").read_text(encoding="utf-8") == expected, (
        "docs/results.md is stale: run python docs/make_results.py"
    )


def test_a_benchmark_record_is_shown_with_its_command_machine_and_every_field():
    record = {
        "command": "python benchmarks/x.py --seconds 2",
        "machine": {"cpu": "Some CPU, AVX2", "cores": 2, "torch": "2.13.0+cpu", "python": "3.11.7"},
        "date": "2026-12-07",
        "seconds": 12.3,
        "result": {"train_tokens_per_s": 10400, "ratio": 0.52412, "ratio_range": [0.415, 0.614], "shape": {"a|b": 3}},
    }
    lines = docs_script("make_results").section("x", record)
    assert lines[:6] == [
        "## x",
        "",
        "`python benchmarks/x.py --seconds 2`",
        "",
        "Some CPU, AVX2; 2 cores; torch 2.13.0+cpu; Python 3.11.7; 2026-12-07; the run took 12 s",
        "",
    ]
    assert lines[8:12] == [
        "| train_tokens_per_s | 10,400 |",
        "| ratio | 0.5241 |",
        "| ratio_range | 0.415–0.614 |",
        "| shape.a\\|b | 3 |",
    ]


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lowercase, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_docs_reaches_a_file_and_heading():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, fragment = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif fragment and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), flags=re.MULTILINE)
                if fragment not in {github_anchor(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
