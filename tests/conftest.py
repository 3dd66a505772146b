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


@pytest.fixture(scope="session")
def tiny_prior_dir(tmp_path_factory):
    """A run directory of configs/tiny_prior.py with random weights (3 sampler steps): for the
    machinery of restoration and sampling, not for quality."""
    import importlib.util

    import jax

    from diffrestore import checkpoint
    from diffrestore import config as config_lib

    spec = importlib.util.spec_from_file_location(
        "tiny_prior_config", pathlib.Path(__file__).resolve().parents[1] / "configs" / "tiny_prior.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.sampling.num_steps = 3
    network = config_lib.build_backbone(config)
    inputs = config_lib.example_inputs(config)
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    init = jax.jit(lambda k: network.init(k, *inputs)["params"]).lower(jax.random.key(0)).compile(options)
    path = tmp_path_factory.mktemp("tiny_prior_run")
    params = init(jax.random.key(0))
    checkpoint.save_parameters(path, config, params, params)
    return path
