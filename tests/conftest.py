"""Shared test helpers: where the PyTorch reference data lives."""
import os
import pathlib

import pytest

# The reference data sits beside the project (../shared/fixtures), never inside it.
# DIFFRESTORE_FIXTURES may point at another copy of the sgmse folder (older runs set it).
_SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
FIXTURES = pathlib.Path(os.environ.get("DIFFRESTORE_FIXTURES", _SHARED / "sgmse"))


def _fixture_dir(path: pathlib.Path) -> pathlib.Path:
    if not path.is_dir():
        pytest.fail(f"reference data not found at {path} (it sits in ../shared/fixtures beside the project)")
    return path


@pytest.fixture(scope="session")
def sgmse_fixtures() -> pathlib.Path:
    return _fixture_dir(FIXTURES)


@pytest.fixture(scope="session")
def cqtdiff_fixtures() -> pathlib.Path:
    """CQT-Diff / CQTdiff+ / BABE reference data (read its README first)."""
    return _fixture_dir(FIXTURES.parent / "cqtdiff")


@pytest.fixture(scope="session")
def storm_bbed_fixtures() -> pathlib.Path:
    """StoRM / BBED / CRP reference data (read its README first)."""
    return _fixture_dir(FIXTURES.parent / "storm_bbed")


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache_in_a_temporary_folder(tmp_path_factory):
    """Inference turns JAX's persistent compilation cache on (in ~/.cache by default); tests
    keep theirs in a folder of their own instead of the user's."""
    previous = os.environ.get("DIFFRESTORE_CACHE_DIR")
    os.environ["DIFFRESTORE_CACHE_DIR"] = str(tmp_path_factory.mktemp("xla_cache"))
    yield
    if previous is None:
        os.environ.pop("DIFFRESTORE_CACHE_DIR", None)
    else:
        os.environ["DIFFRESTORE_CACHE_DIR"] = previous
