"""Configuration is read in one module: every CCFCACHE_* variable through `config.env`, all of
them listed in `config.ENVIRONMENT` and in the table of docs/quickstart.md; the SQLite VFS
comes from the cache's own config.json."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import ccfcache
from ccfcache import config
from ccfcache.config import ENVIRONMENT, env, load_settings, sqlite_vfs
from ccfcache.index import Index

PACKAGE = Path(ccfcache.__file__).parent
DOCS = PACKAGE.parent / "docs" / "quickstart.md"


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PACKAGE)): p.read_text(encoding="utf-8")
            for p in PACKAGE.rglob("*.py")}


def test_only_config_reads_the_environment_for_ccfcache_variables() -> None:
    direct = re.compile(r"(environ(\.get)?|getenv)\s*[\(\[]\s*[\"']CCFCACHE_")
    offenders = [name for name, text in _sources().items()
                 if name != "config.py" and direct.search(text)]
    assert offenders == [], f"read CCFCACHE_* through config.env() in {offenders}"


def test_every_variable_read_is_listed() -> None:
    used = set()
    for text in _sources().values():
        used |= set(re.findall(r"\benv\(\s*[\"'](CCFCACHE_[A-Z0-9_]+)[\"']", text))
        used |= set(re.findall(r"_env_int\(\s*[\"'](CCFCACHE_[A-Z0-9_]+)[\"']", text))
    assert used, "the scan found no variable: it is broken"
    assert used <= set(ENVIRONMENT), f"not in config.ENVIRONMENT: {used - set(ENVIRONMENT)}"


def test_the_docs_table_lists_exactly_the_variables() -> None:
    documented = set(re.findall(r"^\| `(CCFCACHE_[A-Z0-9_<>]+)` \|", DOCS.read_text(),
                                re.MULTILINE))
    assert documented == set(ENVIRONMENT)


def test_env_refuses_an_unknown_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCFCACHE_WORKERS", "3")
    assert env("CCFCACHE_WORKERS") == "3"
    monkeypatch.setenv("CCFCACHE_WORKERS", "")
    assert env("CCFCACHE_WORKERS") is None
    with pytest.raises(KeyError):
        env("CCFCACHE_WORKER")


def test_the_autouse_fixture_clears_the_environment() -> None:
    assert not [name for name in os.environ if name.startswith("CCFCACHE_")]


def test_preset_variables_reach_the_settings(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCFCACHE_PRESET_MY_MIRROR", "https://mirror.example/ccf/")
    settings = load_settings(tmp_path)
    assert settings.presets["my-mirror"] == "https://mirror.example/ccf/"


def test_the_vfs_comes_from_the_caches_config(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert sqlite_vfs(tmp_path) is None
    monkeypatch.setenv("CCFCACHE_SQLITE_VFS", "unix-none")
    assert sqlite_vfs(tmp_path) == "unix-none"  # a cache that names none: the environment
    (tmp_path / config.CONFIG_NAME).write_text(json.dumps({"sqlite_vfs": "unix-dotfile"}))
    assert sqlite_vfs(tmp_path) == "unix-dotfile"  # the cache's own wins
    monkeypatch.delenv("CCFCACHE_SQLITE_VFS")
    index = Index(tmp_path / "index.sqlite")
    with index.write() as db:
        db.execute("INSERT INTO sources (url, added_at) VALUES ('u', 1)")
        assert (tmp_path / "index.sqlite.lock").exists()  # the dot-file lock while writing
    index.close()
