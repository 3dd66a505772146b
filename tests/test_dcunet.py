"""SGMSE's DCUNet in Flax against the PyTorch reference (tests/fixtures/dcunet, written by
its make_fixture.py), and its strict weight import."""
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore.models import NETWORKS, build_network
from diffrestore.models import dcunet as D

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "dcunet"
CASES = ("net_dcunet", "net_dcunet_cbn_ds", "net_dcunet_train", "net_dcunet_notime")
# Largest float32-vs-float64 difference of the reference on these cases: 2.4e-5·max|out|
# (the complex DS embedding, phases up to 1e4 rad); ours differs from it by <= 1.2e-6.
RTOL = 1e-4
TINY = json.loads(json.dumps(
    ((1, 4, (7, 5), (2, 2), "auto", (1, 1)), (4, 8, (4, 4), (2, 1), "auto", (2, 1)), (8, 8, (5, 3), (2, 2), "auto", (1, 1)))
))


def _load(name):
    data = np.load(FIXTURES / f"{name}.npz")
    kwargs = json.loads(str(data["kwargs"]))
    state = {k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")}
    return data, kwargs, state


def _tiny_inputs(batch=2, freqs=33, frames=12, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    shape = (batch, 1, freqs, frames)
    x = jax.lax.complex(jax.random.normal(k[0], shape), jax.random.normal(k[1], shape))
    y = jax.lax.complex(jax.random.normal(k[2], shape), jax.random.normal(k[3], shape))
    return x, y, jax.random.uniform(k[4], (batch,), minval=0.05, maxval=1.0)


@pytest.mark.parametrize("name", CASES)
def test_output_matches_reference(name):
    data, kwargs, state = _load(name)
    assert float(data["float64_rel_err"]) < RTOL / 3  # the tolerance leaves room above the reference's own error
    variables = D.variables_from_torch(kwargs, state)
    module = D.build(**kwargs)
    x, y, t = (jnp.asarray(data[k]) for k in ("x", "y", "t"))
    if bool(data["train"]):
        out, updates = module.apply(variables, x, y, t, train=True, mutable=["batch_stats"])
        expected = {k[len("updated/"):]: data[k] for k in data.files if k.startswith("updated/")}
        new_stats = D.batch_stats_from_torch(kwargs, expected)
        for got, want in zip(jax.tree_util.tree_leaves(updates["batch_stats"]), jax.tree_util.tree_leaves(new_stats)):
            np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-5)
        # and the statistics did move, so the comparison above can fail
        old = jax.tree_util.tree_leaves(variables["batch_stats"])
        assert max(float(np.abs(a - np.asarray(b)).max()) for a, b in zip(old, jax.tree_util.tree_leaves(updates))) > 1e-3
    else:
        out = module.apply(variables, x, y, t)
    ref = data["out"]
    assert out.shape == ref.shape and out.dtype == jnp.complex64
    err = float(np.abs(np.asarray(out) - ref).max())
    assert err <= RTOL * np.abs(ref).max(), (name, err, np.abs(ref).max())


def test_tables_match_shipped_architectures():
    """Key order and shapes of every shipped architecture (parameters and buffers), as torch lists them."""
    records = json.loads((FIXTURES / "shapes_shipped.json").read_text())
    assert {r["kwargs"]["dcunet_architecture"] for r in records} == set(D.ARCHITECTURES)
    for record in records:
        kwargs = record["kwargs"]
        shapes = D.torch_param_shapes(kwargs)
        assert [[k, list(s)] for k, s in shapes.items()] == record["state_dict"], kwargs
        assert D.torch_param_names(kwargs) == record["parameters"], kwargs
        buffers = D.torch_buffer_names(kwargs)
        assert set(buffers) | set(record["parameters"]) == set(shapes) and not set(buffers) & set(record["parameters"])


def test_flax_tree_is_the_import_tree():
    """`init` builds exactly the tree the import fills (checked by shapes, no arrays built)."""
    options = (
        dict(dcunet_architecture="DCUNet-10"),
        dict(dcunet_architecture=TINY, dcunet_norm_type="CbN", dcunet_time_embedding="ds", dcunet_temb_layers_local=3),
    )
    for kwargs in options:
        module = D.build(**kwargs)
        x = jnp.zeros((1, 1, 257, 17), jnp.complex64)
        abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x, x, jnp.ones((1,))))
        assert jax.tree_util.tree_map(lambda a: a.shape, abstract) == D.variable_shapes(kwargs)


def test_import_is_strict():
    _, kwargs, state = _load("net_dcunet")
    params_only = {k: state[k] for k in D.torch_param_names(kwargs)}
    # EMA weights (parameters only) and a full state_dict both give the same params
    a, b = D.params_from_torch(kwargs, params_only), D.params_from_torch(kwargs, state)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, a, b))
    with pytest.raises(ValueError, match=r"missing keys \['encoders.1.norm.re_module.running_var'\]"):
        D.variables_from_torch(kwargs, {k: v for k, v in state.items() if k != "encoders.1.norm.re_module.running_var"})
    with pytest.raises(ValueError, match=r"missing keys \['encoders.0.norm.re_module.running_mean'"):
        D.batch_stats_from_torch(kwargs, params_only)
    with pytest.raises(ValueError, match=r"missing keys \['embed.0.W'\]"):
        D.params_from_torch(kwargs, {k: v for k, v in state.items() if k != "embed.0.W"})
    with pytest.raises(ValueError, match=r"unexpected keys \['decoders.9.deconv.re_module.weight'\]"):
        D.params_from_torch(kwargs, dict(state, **{"decoders.9.deconv.re_module.weight": np.zeros(1)}))
    with pytest.raises(ValueError, match="strip the 'dnn.' prefix"):
        D.params_from_torch(kwargs, {f"dnn.{k}": v for k, v in state.items()})
    bad = dict(state, **{"output_layer.im_module.weight": np.zeros((8, 2, 7, 5), np.float32)})
    with pytest.raises(ValueError, match=r"output_layer.im_module.weight: shape \(8, 2, 7, 5\), expected \(8, 1, 7, 5\)"):
        D.params_from_torch(kwargs, bad)
    # the same weights under other options do not fit
    with pytest.raises(ValueError, match="missing keys .*norm.Wrr"):
        D.params_from_torch(dict(kwargs, dcunet_norm_type="CbN"), state)


def test_option_and_shape_errors():
    with pytest.raises(TypeError, match="dcunet takes no option"):
        D.make_config(nf=128)
    with pytest.raises(ValueError, match="unknown dcunet_architecture"):
        D.make_config(dcunet_architecture="DCUNet-12")
    with pytest.raises(ValueError, match="NotImplementedError"):
        D.make_config(dcunet_mask_bound="tanh")
    with pytest.raises(ValueError, match="dcunet_time_embedding must be one of"):
        D.make_config(dcunet_time_embedding="mlp")
    with pytest.raises(ValueError, match="even embed_dim"):
        D.make_config(embed_dim=15)
    with pytest.raises(ValueError, match="do not chain"):
        D.make_config(dcunet_architecture=(TINY[0], TINY[2]))
    with pytest.raises(ValueError, match="rematerialisation"):
        D.build(remat="full")

    module = D.build(dcunet_architecture=TINY, dcunet_fix_length="none", embed_dim=8)
    x, y, t = _tiny_inputs(frames=13)
    # The checks are on static shapes, so tracing (eval_shape) is enough to reach them.
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x, y, t)
    apply = lambda *args, **kw: jax.eval_shape(lambda v: module.apply(v, *args, **kw), variables)  # noqa: E731
    assert apply(x, y, t).shape == x.shape
    with pytest.raises(ValueError, match="F − 1 divisible by 8"):
        apply(x[:, :, :32], y[:, :, :32], t)
    with pytest.raises(ValueError, match="T − 1 divisible by 4"):
        apply(x[..., :12], y[..., :12], t)
    with pytest.raises(ValueError, match=r"x and y complex \(B, 1, F, T\)"):
        apply(x, y[:1], t)
    with pytest.raises(ValueError, match="complex spectrograms"):
        apply(jnp.real(x), y, t)
    with pytest.raises(ValueError, match=r"t must be \(B,\)"):
        apply(x, y, t[:1])
    with pytest.raises(ValueError, match="mutable=\\['batch_stats'\\]"):
        apply(x, y, t, train=True)


def test_gradient_under_jit():
    """One jitted training-mode gradient through every parameter kind; the Fourier weights stay fixed."""
    assert "dcunet" in NETWORKS
    kwargs = dict(dcunet_architecture=TINY, embed_dim=8, dcunet_temb_layers_local=2)
    module = build_network("dcunet", **kwargs)
    x, y, t = _tiny_inputs()
    # Random variables from the import tree's shapes: compiling `init` (one threefry draw per
    # tensor) costs more CPU time here than the whole gradient step.
    rng = np.random.default_rng(1)
    variables = jax.tree_util.tree_map(
        lambda shape: jnp.asarray(0.3 * rng.standard_normal(shape), jnp.float32),
        D.variable_shapes(kwargs), is_leaf=lambda v: isinstance(v, tuple),
    )
    variables["batch_stats"] = jax.tree_util.tree_map(jnp.abs, variables["batch_stats"])

    @jax.jit
    def loss_and_grad(params, stats):
        def loss(p):
            out, updates = module.apply({"params": p, "batch_stats": stats}, x, y, t, train=True, mutable=["batch_stats"])
            return jnp.mean(jnp.abs(out - x) ** 2), updates

        return jax.value_and_grad(loss, has_aux=True)(params)

    (value, updates), grads = loss_and_grad(variables["params"], variables["batch_stats"])
    assert np.isfinite(float(value))
    flat = {"/".join(k.key for k in path): g for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]}
    assert float(jnp.abs(flat["embed_0/W"]).max()) == 0.0
    moving = [k for k, g in flat.items() if float(jnp.abs(g).max()) > 0]
    assert len(moving) == len(flat) - 1, sorted(set(flat) - set(moving))
    assert jax.tree_util.tree_structure(updates["batch_stats"]) == jax.tree_util.tree_structure(variables["batch_stats"])


def test_bfloat16_convolutions_stay_close():
    data, kwargs, state = _load("net_dcunet")
    module = build_network("dcunet", dtype=jnp.bfloat16, **kwargs)
    out = jax.jit(module.apply)(D.variables_from_torch(kwargs, state), *(jnp.asarray(data[k]) for k in ("x", "y", "t")))
    assert out.dtype == jnp.complex64
    err = float(np.abs(np.asarray(out) - data["out"]).max() / np.abs(data["out"]).max())
    assert 1e-4 < err < 0.05  # bfloat16 did run (not float32), and within its precision


def test_sgmse_dcunet_checkpoint_through_enhancer(tmp_path):
    """An sgmse `ScoreModel` checkpoint with backbone dcunet (its BatchNorm statistics in the
    state_dict, the EMA over parameters only) loads through Enhancer and gives the score
    −dnn(cat[x, y], t) with the EMA weights; converting and reloading gives the same."""
    import json

    from diffrestore.enhancer import Enhancer
    from diffrestore.models import dcunet
    from lightning_ckpt import write_lightning_checkpoint

    ref = np.load(FIXTURES / "net_dcunet.npz")
    kwargs = json.loads(str(ref["kwargs"]))
    weights = {k[len("param/"):]: ref[k] for k in ref.files if k.startswith("param/") and "num_batches" not in k}
    names = dcunet.torch_param_names(kwargs)
    rng = np.random.default_rng(0)
    raw = {k: (v + 0.1 * rng.standard_normal(v.shape).astype(np.float32) if k in names else v) for k, v in weights.items()}
    hparams = dict(kwargs, backbone="dcunet", sde="ouve", n_fft=128, hop_length=32, num_frames=32)
    path = tmp_path / "dcunet.ckpt"
    write_lightning_checkpoint(path, {"dnn." + k: v for k, v in raw.items()}, [weights[k] for k in names], hparams)
    enhancer = Enhancer.from_checkpoint(path, compilation_cache=False, compile_ahead=False)
    score = enhancer.forward(ref["x"], ref["y"], ref["t"])
    np.testing.assert_allclose(score, -ref["out"], atol=1e-4 * np.max(np.abs(ref["out"])))
