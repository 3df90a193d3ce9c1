"""The shared storage contract (tests/trace/test_storage_contract.py) run against ``SqliteStorage``.

Every ``test_*`` function of the contract module is collected here too, with this module's ``storage``
fixture, so a new contract test covers the SQLite backend without an edit here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import test_storage_contract as _contract

from cra.trace.storage import SqliteStorage, TraceStorage

for _name in dir(_contract):
    if _name.startswith("test_"):
        globals()[_name] = getattr(_contract, _name)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[TraceStorage]:
    store = SqliteStorage(f"sqlite:///{tmp_path / 'trace.db'}")
    yield store
    store.close()


def test_the_whole_contract_is_collected() -> None:
    names = [name for name in dir(_contract) if name.startswith("test_")]
    assert len(names) >= 20
    assert all(globals()[name] is getattr(_contract, name) for name in names)
