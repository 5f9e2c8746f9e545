"""Read the configuration in one place: arguments, then CCFCACHE_* variables, then the cache's
config file, then the platform default. Everything else receives a `Settings` object, or asks
here: every CCFCACHE_* variable is read by `env()` below (and listed in ENVIRONMENT, which
docs/quickstart.md shows as a table; a test keeps the two and the code in step).

Settings every process of a shared cache must agree on (the SQLite VFS) are kept in the
cache's own config.json, not in each process's environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CacheError, UsageError
from .presets import ESA_FULL, ESA_VALID

DEFAULT_SOURCES = (ESA_FULL, ESA_VALID)
CONFIG_NAME = "config.json"

# Every environment variable ccfcache reads: name -> what it sets (docs/quickstart.md)
ENVIRONMENT: dict[str, str] = {
    "CCFCACHE_DIR": "the cache folder",
    "CCFCACHE_SITE_DIR": "a read-only site cache read before this one",
    "CCFCACHE_WORKERS": "parallel downloads, and header reads to start with",
    "CCFCACHE_HOST_CONNECTIONS": "at most this many requests in flight to one host",
    "CCFCACHE_RETRIES": "retries of a failed request",
    "CCFCACHE_TIMEOUT": "network timeout in seconds",
    "CCFCACHE_MIN_RATE": "the slowest transfer (bytes/s over the window) before it is retried",
    "CCFCACHE_RATE_WINDOW": "the window (seconds) of the minimum rate",
    "CCFCACHE_LOCK_TTL": "seconds after which another host's silent download lock is stale",
    "CCFCACHE_HOSTNAME": "the host name written in locks (tests)",
    "CCFCACHE_SQLITE_VFS": "the SQLite VFS, for a cache whose config.json names none",
    "CCFCACHE_PRESET_<NAME>": "the URL of source preset NAME, for this process",
    "CCFCACHE_S3_ANONYMOUS": "1: unsigned S3 requests even with AWS credentials set",
    "CCFCACHE_MOUNT_DEBUG": "1: `mount` logs every read",
    "CCFCACHE_OFFLINE": "1: contact no server (as --offline)",
}
PRESET_PREFIX = "CCFCACHE_PRESET_"


def env(name: str) -> str | None:
    """The value of a CCFCACHE_* variable, None when unset or empty. Only the variables in
    ENVIRONMENT can be read: a misspelt name is a bug, not a silent None."""
    if name not in ENVIRONMENT and not name.startswith(PRESET_PREFIX):
        raise KeyError(f"{name} is not in config.ENVIRONMENT")
    return os.environ.get(name) or None


def env_presets() -> dict[str, str]:
    """Source presets set for this process ($CCFCACHE_PRESET_<NAME>), by lower-case name with
    '_' written '-'."""
    return {name[len(PRESET_PREFIX):].lower().replace("_", "-"): value
            for name, value in os.environ.items()
            if name.startswith(PRESET_PREFIX) and value}


def sqlite_vfs(root: str | os.PathLike[str]) -> str | None:
    """The SQLite VFS of the cache at `root`: `sqlite_vfs` in its config.json (the same for
    every process), else $CCFCACHE_SQLITE_VFS; standard library only (the warm path)."""
    try:
        with open(os.path.join(root, CONFIG_NAME), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("sqlite_vfs"), str) and data["sqlite_vfs"]:
        return str(data["sqlite_vfs"])
    return env("CCFCACHE_SQLITE_VFS")


@dataclass
class Settings:
    """Everything a cache needs to know, resolved once."""

    cache_dir: Path
    sources: list[str] = field(default_factory=lambda: list(DEFAULT_SOURCES))
    workers: int = 8
    host_connections: int = 32  # the cap on requests in flight to one host (header reads)
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5
    shared: bool = False  # `init --shared`: group-writable folders, umask 0o002 when writing
    group: str | None = None
    site_dir: Path | None = None  # a read-only site cache read before this one
    presets: dict[str, str] = field(default_factory=dict)  # site names for sources (presets.py)
    s3_endpoint: str | None = None  # an S3 service other than AWS (path-style addressing)


def default_cache_dir() -> Path:
    """The platform's per-user cache folder for ccfcache."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ccfcache", appauthor=False))


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """`cache_dir`, else $CCFCACHE_DIR, else the platform user cache folder."""
    if cache_dir:
        return Path(cache_dir).expanduser().absolute()
    value = env("CCFCACHE_DIR")
    if value:
        return Path(value).expanduser().absolute()
    return default_cache_dir()


def read_config_file(cache_dir: Path) -> dict[str, Any]:
    """The cache's config.json as a dict ({} when absent); a broken file is a CacheError."""
    path = cache_dir / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CacheError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CacheError(f"{path} is not valid JSON ({exc.msg}); fix or delete it") from exc
    if not isinstance(data, dict):
        raise CacheError(f"{path} must hold a JSON object")
    return data


def write_config_file(cache_dir: Path, data: dict[str, Any]) -> None:
    """Write config.json atomically (temporary file, then rename)."""
    from .atomic import write_atomic

    path = cache_dir / CONFIG_NAME
    try:
        write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    except OSError as exc:
        raise CacheError(f"cannot write {path}: {exc.strerror or exc}") from exc


def resolve_site_dir(config: dict[str, Any], root: Path) -> Path | None:
    """The site cache under this one: $CCFCACHE_SITE_DIR, else `site_dir` in config.json;
    None when unset or when it is this very cache."""
    value = env("CCFCACHE_SITE_DIR") or config.get("site_dir")
    if not value:
        return None
    site = Path(str(value)).expanduser().absolute()
    return None if site == root else site


def _site_config(site: Path | None) -> dict[str, Any]:
    if site is None or not site.is_dir():
        return {}
    try:
        return read_config_file(site)
    except CacheError:
        return {}


# config.json keys, with a check of each value: (what it must be, test)
def _is_int_at_least(minimum: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


_CONFIG_KEYS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "sources": ("a list of URLs or folders",
                lambda v: isinstance(v, list) and all(isinstance(s, str) and s for s in v)),
    "workers": ("a whole number >= 1", _is_int_at_least(1)),
    "timeout": ("a number of seconds > 0",
                lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v > 0),
    "retries": ("a whole number >= 0", _is_int_at_least(0)),
    "shared": ("true or false", lambda v: isinstance(v, bool)),
    "group": ("a group name", lambda v: v is None or isinstance(v, str)),
    "site_dir": ("a folder path", lambda v: v is None or isinstance(v, str)),
}


def validate_config(config: dict[str, Any], path: Path) -> None:
    """A one-line CacheError naming the first key of config.json whose value is wrong.
    Keys this version does not know are left alone (a newer ccfcache may have written them)."""
    for key, (what, ok) in _CONFIG_KEYS.items():
        if key in config and not ok(config[key]):
            raise CacheError(f"{path}: {key!r} must be {what}, not {json.dumps(config[key])}; "
                             "fix or delete the key")


def offline() -> bool:
    """`--offline` / CCFCACHE_OFFLINE=1: contact no server."""
    return (env("CCFCACHE_OFFLINE") or "").strip().lower() in {"1", "yes", "true", "on"}


def set_offline() -> None:
    """`--offline`: this process and the processes it starts contact no server."""
    os.environ["CCFCACHE_OFFLINE"] = "1"


def missing_offline(names: list[str]) -> str:
    """The message when --offline stops a download: exactly which files are missing."""
    shown = ", ".join(sorted(names)[:20]) + (", ..." if len(names) > 20 else "")
    return (f"offline: {len(names)} files are not in the cache ({shown}); run again without "
            "--offline / CCFCACHE_OFFLINE to download them")


def _env_int(name: str, default: int, *, minimum: int = 1) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"${name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise UsageError(f"${name} must be at least {minimum}")
    return number


def load_settings(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    sources: list[str] | None = None,
    workers: int | None = None,
) -> Settings:
    """Resolve the settings for one cache from arguments, environment and config file."""
    root = resolve_cache_dir(cache_dir)
    config = read_config_file(root) if root.is_dir() else {}
    validate_config(config, root / CONFIG_NAME)
    site = resolve_site_dir(config, root)
    # a personal overlay without its own sources fetches from where the site cache does
    site_config = _site_config(site)
    chosen_sources = (sources or config.get("sources") or site_config.get("sources")
                      or list(DEFAULT_SOURCES))
    presets = {**_string_map(site_config.get("presets")), **_string_map(config.get("presets")),
               **env_presets()}  # this process's own first
    endpoint = (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
                or config.get("s3_endpoint") or site_config.get("s3_endpoint") or None)
    return Settings(
        cache_dir=root,
        sources=[str(s) for s in chosen_sources],
        workers=workers or _env_int("CCFCACHE_WORKERS", int(config.get("workers", 8))),
        host_connections=_env_int("CCFCACHE_HOST_CONNECTIONS",
                                  int(config.get("host_connections", 32))),
        timeout=float(_env_int("CCFCACHE_TIMEOUT", int(config.get("timeout", 30)))),
        retries=_env_int("CCFCACHE_RETRIES", int(config.get("retries", 4)), minimum=0),
        shared=bool(config.get("shared", False)),
        group=config.get("group") or None,
        site_dir=site,
        presets=presets,
        s3_endpoint=str(endpoint) if endpoint else None,
    )


def _string_map(value: object) -> dict[str, str]:
    """A config.json object of names to strings (anything else ignored), keys lower-case."""
    if not isinstance(value, dict):
        return {}
    return {str(k).lower(): v for k, v in value.items() if isinstance(v, str)}
