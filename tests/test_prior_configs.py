"""The priors' recipe configs load, validate as priors, and build the references' networks.

Shapes only (`abstract_params`: jax.eval_shape, nothing compiled or allocated). The parameter
counts are the PyTorch references' `sum(p.numel() for p in net.parameters())` with their shipped
settings (CQT-Diff e8b6715 `Unet_CQT`, BABE 777b624 `Unet_CQT_oct_with_attention` with
cqtdiff+.yaml), counted with torch 2.13: the fixed random Fourier features included, as
diffrestore stores them (trainable only: 15,458,368 and 44,498,496).
"""
import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from diffrestore import config as config_lib
from diffrestore.data.defaults import crop_length

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("name, backbone, n_params, segment, sigma_data, churn, convention", [
    ("cqtdiff_maestro", "cqtdiff", 15_487_232, 65536, 0.057, 5.0, "cqtdiff"),
    ("cqtdiffplus_maestro", "cqtdiffplus", 44_498_528, 184184, 0.063, 20.0, "babe"),
])
def test_prior_recipe_builds_the_reference_network(name, backbone, n_params, segment, sigma_data, churn, convention):
    config = _load(name)
    assert config_lib.is_prior(config) and config.model.backbone == backbone
    assert (config.data.dataset, config.data.normalize, config.data.sample_rate) == ("tfds", "none", 22050)
    assert config.data.tfds_name.startswith("maestro_v3/22k_mono")
    assert crop_length(config.data) == segment
    assert config.sde.sigma_data == sigma_data and config.sampling.S_churn == churn
    assert config.sampling.convention == convention and config.sampling.num_steps == 35
    assert (config.training.batch_size, config.optim.lr, config.optim.grad_clip_norm) == (4, 2e-4, 1.0)
    # The training step, the sampler and the benchmarks build from these.
    config_lib.build_sde(config)
    config_lib.build_model_fn(config)
    abstract = config_lib.abstract_params(config)
    assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(abstract)) == n_params
    assert {a.dtype for a in jax.tree.leaves(abstract)} == {np.dtype("float32")}
