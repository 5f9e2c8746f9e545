"""The typed rows (`ccfcache.rows`): each is a frozen dataclass read by attribute, and also a
read-only mapping of exactly its fields (what the pure rule modules take)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ccfcache import rows as rows_module
from ccfcache.rows import (
    BlobRecord,
    ConstituentRow,
    ConstituentStatus,
    MountVersion,
    Row,
    SeedVersion,
    StoredContent,
    Version,
    VersionState,
)

ROW_CLASSES = sorted((cls for cls in vars(rows_module).values()
                      if isinstance(cls, type) and issubclass(cls, Row) and cls is not Row),
                     key=lambda cls: cls.__name__)


def _sample(cls: type[Row]) -> Row:
    """An instance with a distinct value in every field."""
    values = {f.name: f"{f.name}-{i}" for i, f in enumerate(dataclasses.fields(cls))}
    return cls(**values)


@pytest.mark.parametrize("cls", ROW_CLASSES, ids=lambda cls: cls.__name__)
def test_every_row_is_a_frozen_slotted_mapping_of_exactly_its_fields(cls: type[Row]) -> None:
    row = _sample(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    assert list(row) == names and len(row) == len(names)
    assert {k: row[k] for k in row} == row.as_dict() == {n: getattr(row, n) for n in names}
    assert dict(row) == row.as_dict()
    with pytest.raises(KeyError):
        row["not_a_field"]
    assert row.get("not_a_field") is None and "not_a_field" not in row
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(row, names[0], "changed")
    assert not hasattr(row, "__dict__")  # slotted: no per-row dict
    assert cls.from_mapping({**row.as_dict(), "extra column": 1}) == row


@pytest.mark.parametrize("child, parent", [
    (MountVersion, Version), (StoredContent, Version), (VersionState, Version),
    (ConstituentStatus, ConstituentRow)])
def test_a_row_that_extends_another_has_its_fields_first(child: type[Row],
                                                         parent: type[Row]) -> None:
    parent_names = [f.name for f in dataclasses.fields(parent)]
    child_names = [f.name for f in dataclasses.fields(child)]
    assert child_names[: len(parent_names)] == parent_names
    assert len(child_names) > len(parent_names)


def test_from_mapping_needs_the_fields_without_defaults() -> None:
    with pytest.raises(TypeError):
        Version.from_mapping({"id": 1, "name": "X"})
    version = Version.from_mapping({"id": 1, "name": "X", "size": 2, "header_digest": "d"})
    assert (version.id, version.xxh3, version.sources) == (1, None, None)


def test_rows_serialise_to_json_through_as_dict() -> None:
    record = BlobRecord("0" * 32, 2880)
    assert json.loads(json.dumps(record.as_dict())) == {"xxh3": "0" * 32, "size": 2880}


def test_every_row_class_is_exported() -> None:
    assert {cls.__name__ for cls in ROW_CLASSES} <= set(rows_module.__all__)
    assert SeedVersion.__name__ in rows_module.__all__
