"""benchmarks/profile_ops.py: op time from a real profiler trace, classified by kind and layer."""
import pathlib
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import profile_ops  # noqa: E402


def test_layer_names_from_op_metadata():
    assert profile_ops.layer_of("jit(model_fn)/NCSNpp/down_1_res_0/GroupNorm_0/reduce_sum") == "GroupNorm"
    assert profile_ops.layer_of("jit(model_fn)/NCSNpp/mid_attn/vmap()/dot_general") == "mid_attn"
    assert profile_ops.layer_of("jit(step)/transpose(jvp(NCSNpp))/up_0_res_1/Conv_2/conv_general_dilated") == \
        "Conv (backward)"
    assert profile_ops.layer_of("") == "(no layer in the metadata)"


def test_profile_finds_the_convolution_that_dominates():
    import flax.linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(64, (3, 3), name="Conv_0")(x)  # ~1.2 GFLOP: nearly all the work
            return nn.GroupNorm(num_groups=8, name="GroupNorm_0")(x)

    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 128, 128, 64)), jnp.float32)
    params = Block().init(jax.random.key(0), x)
    compiled = jax.jit(Block().apply).lower(params, x).compile()
    instructions, computations = profile_ops.parse_hlo(compiled.as_text())
    jax.block_until_ready(compiled(params, x))
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(2):
                jax.block_until_ready(compiled(params, x))
        times = profile_ops.trace_op_times(trace_dir, profile_ops.hlo_module_name(compiled.as_text()))
    summary = profile_ops.summarize(times, instructions, computations, repeats=2)
    kinds = {row["name"]: row["share"] for row in summary["by_kind"]}
    layers = {row["name"] for row in summary["by_layer"]}
    assert summary["by_kind"][0]["name"] == "convolution" and kinds["convolution"] > 0.5, kinds
    assert {"Conv", "GroupNorm"} <= layers, layers
    assert abs(sum(kinds.values()) - 1) < 1e-9 and summary["op_ms_per_call"] > 0
