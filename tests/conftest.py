"""Shared test helpers: where the PyTorch reference data lives."""
import os
import pathlib

import pytest

# The reference data sits beside the project (../shared), never inside it.
FIXTURES = pathlib.Path(
    os.environ.get(
        "DIFFRESTORE_FIXTURES",
        pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "sgmse",
    )
)


@pytest.fixture(scope="session")
def sgmse_fixtures() -> pathlib.Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"reference data not found at {FIXTURES} (set DIFFRESTORE_FIXTURES)")
    return FIXTURES
