"""Write docs/settings.md from the config declarations (``setting(default, help, range)`` in seqnlp/).

python docs/make_settings.py          # rewrites docs/settings.md; tests/test_docs.py checks it is current
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def settings_markdown() -> str:
    from seqnlp.config import RunConfig, describe_range, spec
    from seqnlp.serving.server import ServeConfig
    from seqnlp.tasks import task_names
    from seqnlp.tasks.base import get_task
    from seqnlp.training.diagnose import DiagnosisConfig

    tasks = task_names()
    classes = {name: get_task(name).config_class for name in tasks}
    lines = [
        "# Settings",
        "",
        "Every setting of `python recipes/<task>.py` and `seqnlp train TASK`, as a flag (`--hidden 256`,",
        "`--no-bidirectional` for a switch) or in a `--config` YAML file (`hidden: 256`). Flags win over the file,",
        "the file over a base model's settings (`--init-from`), those over the defaults. This page is generated",
        "from the declarations in `seqnlp/` by `python docs/make_settings.py`.",
        "",
        "## Shared by every task",
        "",
        "| setting | meaning | default | valid | per task |",
        "| --- | --- | --- | --- | --- |",
    ]

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    def default_of(cls, name):
        value = next(f for f in dataclasses.fields(cls) if f.name == name).default
        return "—" if value is None or value == "" else cell(f"`{value}`")

    for field in dataclasses.fields(RunConfig):
        meta = spec(RunConfig, field.name)
        own = default_of(RunConfig, field.name)
        differing = [
            f"{t}: {default_of(classes[t], field.name)}" for t in tasks if default_of(classes[t], field.name) != own
        ]
        lines.append(
            f"| `{field.name}` | {cell(meta.get('help', ''))} | {own} | {describe_range(meta) or '—'} | "
            f"{'; '.join(differing) or '—'} |"
        )
    for task in tasks:
        cls = classes[task]
        shared = {f.name for f in dataclasses.fields(RunConfig)}
        own_fields = [f for f in dataclasses.fields(cls) if f.name not in shared]
        lines += ["", f"## {task}", "", "| setting | meaning | default | valid |", "| --- | --- | --- | --- |"]
        for field in own_fields:
            meta = spec(cls, field.name)
            lines.append(
                f"| `{field.name}` | {cell(meta.get('help', ''))} | {default_of(cls, field.name)} | "
                f"{describe_range(meta) or '—'} |"
            )
    for title, cls in (("seqnlp serve", ServeConfig), ("seqnlp diagnose gradients", DiagnosisConfig)):
        lines += ["", f"## {title}", "", "| setting | meaning | default | valid |", "| --- | --- | --- | --- |"]
        for field in dataclasses.fields(cls):
            meta = spec(cls, field.name)
            lines.append(
                f"| `{field.name}` | {cell(meta.get('help', ''))} | {default_of(cls, field.name)} | "
                f"{describe_range(meta) or '—'} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    (ROOT / "docs" / "settings.md").write_text(settings_markdown(), encoding="utf-8")
