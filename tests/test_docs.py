"""The docs that are generated are current."""

import importlib.util

from tests.conftest import ROOT


def test_settings_md_is_what_the_declarations_generate():
    spec = importlib.util.spec_from_file_location("make_settings", ROOT / "docs" / "make_settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "settings.md").read_text(encoding="utf-8") == module.settings_markdown(), (
        "docs/settings.md is stale: run python docs/make_settings.py"
    )
