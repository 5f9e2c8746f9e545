"""The public API: `ccfcache.__all__` is pinned, every name in it resolves, every exception
and every type a `Cache` method returns is exported, and `import ccfcache` stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import ccfcache
from ccfcache import errors
from ccfcache.cache import Cache
from ccfcache.layout import FORMAT_VERSION, LOCK_PROTOCOL

PUBLIC = [
    "Cache", "CacheError", "CacheStats", "CcfCacheError", "ChangedOnServerError",
    "CifEntry", "CifPlan", "CifRecord",
    "CifResult", "ConstituentStatus", "DoctorReport", "ExactFetch", "FetchError", "InitSummary",
    "InvalidCif", "InvalidDate", "InvalidHeader", "InvalidName", "ListingError", "MifSeeded",
    "MifWritten", "OdfError", "OfflineError", "Problem", "Progress", "PrunePlan", "Removal",
    "Selected", "SelectionError", "Settings", "SyncReport", "TransferError",
    "UnknownConstituent", "Unserved", "UsageError", "VerifyReport", "Version",
    "__version__",
]  # fmt: skip


def test_all_is_pinned_and_sorted() -> None:
    assert ccfcache.__all__ == PUBLIC
    assert ccfcache.__all__ == sorted(ccfcache.__all__)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(ccfcache, name)
    if name != "__version__":
        assert value.__name__ == name


def test_every_exception_is_exported() -> None:
    defined = {name for name, value in vars(errors).items()
               if inspect.isclass(value) and issubclass(value, BaseException)
               and value.__module__ == errors.__name__}
    assert defined == {n for n in PUBLIC if n.endswith(("Error", "Constituent"))
                       or n.startswith("Invalid")}


def _classes(hint: object) -> set[type]:
    found = {hint} if inspect.isclass(hint) else set()
    for arg in typing.get_args(hint):
        found |= _classes(arg)
    return found


def test_every_type_a_cache_method_returns_is_exported() -> None:
    namespace = {name: getattr(ccfcache, name) for name in PUBLIC if name != "__version__"}
    plumbing = {"fetcher", "sources"}  # the parts Cache wires (Fetcher, Source), not results
    methods = [m for name, m in inspect.getmembers(Cache, inspect.isfunction)
               if not name.startswith("_") and name not in plumbing]
    assert {"prune", "verify", "doctor", "pin", "unpin", "init", "cif"} <= {
        m.__name__ for m in methods}
    from astropy.io.fits import HDUList

    scope = {**vars(sys.modules[Cache.__module__]), **namespace, "HDUList": HDUList}
    returned: set[type] = set()
    for method in methods:
        annotation = inspect.signature(method).return_annotation
        assert annotation is not inspect.Signature.empty, f"Cache.{method.__name__} is untyped"
        returned |= _classes(eval(annotation, scope) if isinstance(annotation, str)
                             else annotation)
    ours = {c for c in returned if c.__module__.startswith("ccfcache")}
    assert ours, "no Cache method returns a ccfcache type: the check sees nothing"
    missing = sorted(c.__name__ for c in ours if getattr(ccfcache, c.__name__, None) is not c)
    assert not missing, f"returned by Cache but not exported from ccfcache: {missing}"


def test_cif_options_are_keyword_only() -> None:
    params = inspect.signature(Cache.cif).parameters
    for name in ("category", "ignore_category", "historical", "fullpath", "pin"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_importing_the_package_imports_no_cache_machinery() -> None:
    code = ("import sys, ccfcache; heavy = [m for m in ('ccfcache.cache', 'ccfcache.index', "
            "'sqlite_utils', 'httpx', 'astropy', 'numpy') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_a_new_index_is_created_without_sqlite_utils(tmp_path: Path) -> None:
    """A new cache's first command creates its index in plain SQL: importing sqlite-utils (and
    numpy with it) cost a cold `ccfcache cif` ~0.3 CPU-s (fails without the fix). The tables
    are those sqlite-utils wrote (its own reading of them agrees)."""
    path = tmp_path / "index.sqlite"
    code = ("import sys; from ccfcache.index import Index; Index(sys.argv[1]).close(); "
            "print([m for m in ('sqlite_utils', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "[]"
    import sqlite_utils

    db = sqlite_utils.Database(path)
    assert db["listings"].pks == ["source", "name"]
    assert db["versions"].pks == ["id"] and db["meta"].pks == ["key"]
    types = db["versions"].columns_dict
    assert (types["id"], types["name"], types["first_seen"]) == (int, str, float)
    assert {r["key"]: r["value"] for r in db["meta"].rows} == {
        "format_version": str(FORMAT_VERSION), "lock_protocol": str(LOCK_PROTOCOL)}


def test_the_version_module_is_the_installed_packages() -> None:
    """A CIF's CREATOR names `ccfcache.version.__version__` (read without importlib.metadata,
    which a warm `ccfcache cif` does not import): it must be the installed version."""
    from importlib.metadata import version

    from ccfcache.cif import default_creator

    assert ccfcache.__version__ == version("ccfcache")
    assert default_creator() == f"ccfcache (ccfcache-{version('ccfcache')})"
