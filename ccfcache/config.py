"""Read the configuration in one place: arguments, then CCFCACHE_* variables, then the cache's
config file, then the platform default. Everything else receives a `Settings` object."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CacheError, UsageError
from .presets import ESA_FULL, ESA_VALID

DEFAULT_SOURCES = (ESA_FULL, ESA_VALID)
CONFIG_NAME = "config.json"


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
    env = os.environ.get("CCFCACHE_DIR")
    if env:
        return Path(env).expanduser().absolute()
    return default_cache_dir()


def read_config_file(cache_dir: Path) -> dict:
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


def write_config_file(cache_dir: Path, data: dict) -> None:
    """Write config.json atomically (temporary file, then rename)."""
    path = cache_dir / CONFIG_NAME
    # unique across hosts sharing the folder (pids are not)
    tmp = path.with_name(f".{CONFIG_NAME}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CacheError(f"cannot write {path}: {exc.strerror or exc}") from exc


def resolve_site_dir(config: dict, root: Path) -> Path | None:
    """The site cache under this one: $CCFCACHE_SITE_DIR, else `site_dir` in config.json;
    None when unset or when it is this very cache."""
    value = os.environ.get("CCFCACHE_SITE_DIR") or config.get("site_dir")
    if not value:
        return None
    site = Path(str(value)).expanduser().absolute()
    return None if site == root else site


def _site_config(site: Path | None) -> dict:
    if site is None or not site.is_dir():
        return {}
    try:
        return read_config_file(site)
    except CacheError:
        return {}


# config.json keys, with a check of each value: (what it must be, test)
def _is_int_at_least(minimum: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


_CONFIG_KEYS = {
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


def validate_config(config: dict, path: Path) -> None:
    """A one-line CacheError naming the first key of config.json whose value is wrong.
    Keys this version does not know are left alone (a newer ccfcache may have written them)."""
    for key, (what, ok) in _CONFIG_KEYS.items():
        if key in config and not ok(config[key]):
            raise CacheError(f"{path}: {key!r} must be {what}, not {json.dumps(config[key])}; "
                             "fix or delete the key")


def offline() -> bool:
    """`--offline` / CCFCACHE_OFFLINE=1: contact no server."""
    return os.environ.get("CCFCACHE_OFFLINE", "").strip().lower() in {"1", "yes", "true", "on"}


def missing_offline(names: list[str]) -> str:
    """The message when --offline stops a download: exactly which files are missing."""
    shown = ", ".join(sorted(names)[:20]) + (", ..." if len(names) > 20 else "")
    return (f"offline: {len(names)} files are not in the cache ({shown}); run again without "
            "--offline / CCFCACHE_OFFLINE to download them")


def _env_int(name: str, default: int, *, minimum: int = 1) -> int:
    value = os.environ.get(name)
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
    presets = {**_string_map(site_config.get("presets")), **_string_map(config.get("presets"))}
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
