"""The PyTorch checkpoint reader: reads the real sgmse .ckpt, and runs nothing a file asks for."""
import argparse
import collections
import os
import pathlib
import pickle
import pickletools
import struct
import zipfile

import ml_dtypes
import numpy as np
import pytest

from diffrestore.convert import torch_pickle
from diffrestore.convert.torch_pickle import (
    CheckpointError,
    Namespace,
    TorchGlobal,
    UnsafeCheckpointError,
    load_torch_checkpoint,
)


# --------------------------------------------------------------------------------------
# Writing torch.save-style archives by hand (no PyTorch here)
# --------------------------------------------------------------------------------------

def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _tensor(storage_type: str, key: str, numel: int, offset: int, size, stride) -> bytes:
    """The opcodes torch writes for `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`."""
    storage = _tuple([_str("storage"), _global("torch", storage_type), _str(key), _str("cpu"), _int(numel)]) + b"Q"
    args = [
        storage,
        _int(offset),
        _tuple([_int(n) for n in size]),
        _tuple([_int(s) for s in stride]),
        b"\x89",  # NEWFALSE: requires_grad
        _global("collections", "OrderedDict") + b")R",
    ]
    return _global("torch._utils", "_rebuild_tensor_v2") + _tuple(args) + b"R"


def _dict_pickle(entries: dict[str, bytes]) -> bytes:
    body = b"".join(_str(k) + v + b"s" for k, v in entries.items())
    return b"\x80\x02}" + body + b"."


def _write_ckpt(path: pathlib.Path, data_pkl: bytes, storages=None, byteorder="little") -> pathlib.Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", byteorder)
        z.writestr("archive/version", "3\n")
        for key, raw in (storages or {}).items():
            z.writestr(f"archive/data/{key}", raw)
    return path


class _Reduce:
    """Pickles as `fn(*args)`, the shape of every pickle exploit."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _write_marker(path):
    pathlib.Path(path).write_text("pwned")


# --------------------------------------------------------------------------------------
# The real sgmse checkpoint
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sgmse_ckpt(sgmse_fixtures):
    return load_torch_checkpoint(sgmse_fixtures / "sgmse_small.ckpt")


def test_sgmse_checkpoint_layout(sgmse_ckpt):
    assert {"state_dict", "ema", "hyper_parameters", "optimizer_states", "loops"} <= set(sgmse_ckpt)
    state = sgmse_ckpt["state_dict"]
    assert len(state) > 100 and all(k.startswith("dnn.") for k in state)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in state.values())
    assert state["dnn.output_layer.weight"].shape == (2, 4, 1, 1)
    assert state["dnn.all_modules.0.W"].shape == (16,)  # Gaussian Fourier features, embedding nf 16
    assert sum(v.ndim == 4 for v in state.values()) > 50
    # The OrderedDict's BUILD (module versions) went through, as torch's load_state_dict reads it.
    assert state._metadata["dnn"] == {"version": 1}


def test_sgmse_hyper_parameters(sgmse_ckpt):
    hp = sgmse_ckpt["hyper_parameters"]
    assert hp["backbone"] == "ncsnpp" and hp["sde"] == "ouve"
    assert hp["nf"] == 16 and hp["num_res_blocks"] == 1 and hp["ch_mult"] == [1, 1, 2, 2, 2, 2, 2]
    assert (hp["theta"], hp["sigma_min"], hp["sigma_max"], hp["N"]) == (1.5, 0.05, 0.5, 30)
    assert (hp["n_fft"], hp["hop_length"], hp["transform_type"]) == (510, 128, "exponent")
    cls = hp["data_module_cls"]
    assert cls == TorchGlobal("sgmse.data_module", "SpecsDataModule")
    assert "SpecsDataModule" in repr(cls)
    with pytest.raises(UnsafeCheckpointError):
        cls(base_dir="/tmp")


def test_sgmse_ema_follows_state_dict_order(sgmse_ckpt):
    state, ema = sgmse_ckpt["state_dict"], sgmse_ckpt["ema"]
    assert ema["decay"] == pytest.approx(0.999) and ema["num_updates"] >= 1
    shadow = ema["shadow_params"]
    names = [k for k in state if k.startswith("dnn.")]
    assert len(shadow) == len(names)
    assert [s.shape for s in shadow] == [state[k].shape for k in names]
    # Same shapes could hide a shuffled order; EMA weights stay close to their own parameter only.
    weights = [(state[k], s) for k, s in zip(names, shadow) if s.ndim > 1]
    assert weights and not any(np.array_equal(w, s) for w, s in weights)
    assert min(np.corrcoef(w.ravel(), s.ravel())[0, 1] for w, s in weights) > 0.9


def _storage_key_of(data_pkl: bytes, tensor_name: str) -> tuple[str, int]:
    """(storage key, numel) of a state_dict entry, read from the opcodes (an independent route)."""
    memo, strings, after_name = {}, [], False
    last = None
    for op, arg, _ in pickletools.genops(data_pkl):
        if op.name in ("BINUNICODE", "SHORT_BINUNICODE"):
            last = arg
        elif op.name in ("BINPUT", "LONG_BINPUT"):
            memo[arg] = last
            continue
        elif op.name in ("BINGET", "LONG_BINGET"):
            last = memo.get(arg)
        elif op.name.startswith("BININT"):
            last = arg
        else:
            last = None
        if last == tensor_name:
            after_name = True
        elif after_name and last is not None:
            strings.append(last)
        if after_name and op.name == "BINPERSID":
            storage_tag, key, _location, numel = strings[:4]
            assert storage_tag == "storage"
            return key, numel
    raise AssertionError(f"{tensor_name} not found")


def test_sgmse_tensor_matches_raw_storage_bytes(sgmse_ckpt, sgmse_fixtures):
    name = "dnn.all_modules.61.weight"  # the last conv, (4, 16, 3, 3)
    with zipfile.ZipFile(sgmse_fixtures / "sgmse_small.ckpt") as z:
        key, numel = _storage_key_of(z.read("archive/data.pkl"), name)
        raw = np.frombuffer(z.read(f"archive/data/{key}"), dtype="<f4")
    value = sgmse_ckpt["state_dict"][name]
    assert value.shape == (4, 16, 3, 3) and numel == value.size == raw.size
    np.testing.assert_array_equal(value.ravel(), raw)
    assert np.abs(raw).max() > 0


# --------------------------------------------------------------------------------------
# Tensor rebuilding on hand-made archives
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "storage_type, dtype",
    [("FloatStorage", np.float32), ("DoubleStorage", np.float64), ("HalfStorage", np.float16),
     ("BFloat16Storage", ml_dtypes.bfloat16), ("LongStorage", np.int64), ("IntStorage", np.int32),
     ("ShortStorage", np.int16), ("CharStorage", np.int8), ("ByteStorage", np.uint8),
     ("BoolStorage", np.bool_), ("ComplexFloatStorage", np.complex64)],
)
@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_dtypes_and_byteorder(tmp_path, storage_type, dtype, byteorder):
    values = (np.arange(12) % 5 - 2).astype(dtype)
    if np.dtype(dtype).kind == "c":
        values = values + 1j * np.arange(12).astype(dtype)
    raw = values.astype(np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")).tobytes()
    if dtype is ml_dtypes.bfloat16 and byteorder == "big":
        raw = values.view(np.uint16).byteswap().tobytes()
    pkl = _dict_pickle({"t": _tensor(storage_type, "0", 12, 0, (3, 4), (4, 1))})
    out = load_torch_checkpoint(_write_ckpt(tmp_path / "t.ckpt", pkl, {"0": raw}, byteorder))["t"]
    assert out.dtype == np.dtype(dtype) and out.shape == (3, 4)
    np.testing.assert_array_equal(out, values.reshape(3, 4))


def test_views_share_one_storage_read(tmp_path, monkeypatch):
    base = np.arange(24, dtype=np.float32)
    pkl = _dict_pickle({
        "full": _tensor("FloatStorage", "0", 24, 0, (4, 6), (6, 1)),
        "transposed": _tensor("FloatStorage", "0", 24, 0, (6, 4), (1, 6)),
        "slice": _tensor("FloatStorage", "0", 24, 6, (2, 3), (6, 1)),
        "scalar": _tensor("FloatStorage", "0", 24, 5, (), ()),
        "empty": _tensor("FloatStorage", "0", 24, 0, (0, 3), (3, 1)),
        "as_int": _tensor("IntStorage", "0", 24, 0, (24,), (1,)),  # tensor.view(torch.int32)
    })
    path = _write_ckpt(tmp_path / "views.ckpt", pkl, {"0": base.tobytes()})
    opened = []
    real_open = zipfile.ZipFile.open

    def counting_open(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    out = load_torch_checkpoint(path)
    assert opened.count("archive/data/0") == 1
    full = base.reshape(4, 6)
    np.testing.assert_array_equal(out["full"], full)
    np.testing.assert_array_equal(out["transposed"], full.T)
    assert out["transposed"].flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out["slice"], full[1:3, :3])
    assert out["scalar"].shape == () and out["scalar"] == 5
    assert out["empty"].shape == (0, 3)
    np.testing.assert_array_equal(out["as_int"], base.view(np.int32))
    assert np.shares_memory(out["full"], out["scalar"])  # contiguous tensors are views, not copies


def test_parameters_and_sizes(tmp_path):
    tensor = _tensor("FloatStorage", "0", 6, 0, (2, 3), (3, 1))
    hooks = _global("collections", "OrderedDict") + b")R"
    pkl = _dict_pickle({
        "param": _global("torch._utils", "_rebuild_parameter") + _tuple([tensor, b"\x88", hooks]) + b"R",
        "param_state": _global("torch._utils", "_rebuild_parameter_with_state") + _tuple([tensor, b"\x88", hooks, b"}"]) + b"R",
        "shape": _global("torch", "Size") + _tuple([_tuple([_int(2), _int(3)])]) + b"R",
    })
    values = np.arange(6, dtype=np.float32)
    out = load_torch_checkpoint(_write_ckpt(tmp_path / "param.ckpt", pkl, {"0": values.tobytes()}))
    np.testing.assert_array_equal(out["param"], values.reshape(2, 3))
    np.testing.assert_array_equal(out["param_state"], values.reshape(2, 3))
    assert out["shape"] == (2, 3)


def test_plain_values_round_trip(tmp_path):
    value = {"ns": argparse.Namespace(lr=1e-4, name="x"), "path": pathlib.PurePosixPath("/data/wsj0"),
             "set": {1, 2}, "frozen": frozenset(["a"]), "bytes": b"\x00\xff", "empty": b"", "complex": 1 + 2j, "none": None}
    out = load_torch_checkpoint(_write_ckpt(tmp_path / "plain.ckpt", pickle.dumps(value, protocol=2)))
    assert isinstance(out["ns"], Namespace) and (out["ns"].lr, out["ns"].name) == (1e-4, "x")
    assert out["path"] == pathlib.PurePosixPath("/data/wsj0")
    assert {k: out[k] for k in ("set", "frozen", "bytes", "empty", "complex", "none")} == {
        k: value[k] for k in ("set", "frozen", "bytes", "empty", "complex", "none")}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_scan_accepts_ordinary_pickles(tmp_path, protocol):
    # The abstract stack must follow the real unpickler on every opcode a plain pickle uses
    # (batched SETITEMS/APPENDS, FRAME, MEMOIZE, shared and self-referencing objects).
    shared = ["q"]
    value = {"nested": [[[()]], (1, 2.5, None, True)], "big": {i: str(i) for i in range(1500)},
             "list": list(range(1200)), "bytes": b"x" * 300, "set": {1, 2}, "od": collections.OrderedDict(a=1),
             "shared": [shared, shared], "text": "é" * 3}
    value["self"] = value
    out = load_torch_checkpoint(_write_ckpt(tmp_path / "plain.ckpt", pickle.dumps(value, protocol=protocol)))
    assert out["self"] is out and out["shared"][0] is out["shared"][1]
    assert {k: v for k, v in out.items() if k != "self"} == {k: v for k, v in value.items() if k != "self"}


# --------------------------------------------------------------------------------------
# Malicious files: refused by name, nothing runs
# --------------------------------------------------------------------------------------

def _refuse(tmp_path, data_pkl: bytes, needle: str):
    path = _write_ckpt(tmp_path / "evil.ckpt", data_pkl)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_torch_checkpoint(path)
    message = str(info.value)
    assert "evil.ckpt" in message and needle in message, message
    return message


def test_payloads_are_live_without_the_guard(tmp_path):
    # Proves the payloads below would really run: plain pickle executes them.
    marker = tmp_path / "MARKER"
    pickle.loads(pickle.dumps(_Reduce(_write_marker, str(marker)), protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_os_system_refused(tmp_path, protocol):
    marker = tmp_path / "MARKER"
    payload = pickle.dumps({"state_dict": _Reduce(os.system, f"touch {marker}")}, protocol=protocol)
    _refuse(tmp_path, payload, f"{os.system.__module__}.system")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_marker_writing_function_refused(tmp_path, protocol):
    marker = tmp_path / "MARKER"
    payload = pickle.dumps(_Reduce(_write_marker, str(marker)), protocol=protocol)
    _refuse(tmp_path, payload, "_write_marker")
    assert not marker.exists()


@pytest.mark.parametrize("fn, args, needle", [
    (eval, ("__import__('os').system('touch MARKER')",), "builtins.eval"),
    (exec, ("open('MARKER', 'w')",), "builtins.exec"),
    (getattr, (os, "system"), "builtins.getattr"),
])
def test_builtins_refused(tmp_path, fn, args, needle):
    if fn is getattr:
        # A module cannot be pickled; hand-write getattr(collections.OrderedDict, 'fromkeys').
        payload = b"\x80\x03" + _global("builtins", "getattr") + _global("collections", "OrderedDict") + _str("fromkeys") + b"\x86R."
    else:
        payload = pickle.dumps(_Reduce(fn, *args), protocol=3)
    _refuse(tmp_path, payload, needle)


def test_stack_global_from_memoized_strings(tmp_path):
    # 'posix', 'system' are memoized, decoys pushed and popped, then the memo is read back:
    # a scanner that trusted the last two strings would see collections.OrderedDict.
    payload = (
        b"\x80\x04" + b"\x8c\x05posix\x94" + b"\x8c\x06system\x94" + b"00"
        + b"\x8c\x0bcollections" + b"\x8c\x0bOrderedDict" + b"00"
        + b"h\x00h\x01\x93" + b"\x8c\x04true\x85R."
    )
    _refuse(tmp_path, payload, "posix.system")


def test_scan_resolves_memoized_strings():
    # The static scan on its own (the unpickler's find_class would also catch this file).
    payload = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94" + b"00" + b"h\x00h\x01\x93)R."
    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system"):
        torch_pickle._scan_pickle(payload)


def test_scan_lists_the_fixture_globals(sgmse_fixtures):
    with zipfile.ZipFile(sgmse_fixtures / "sgmse_small.ckpt") as z:
        seen = torch_pickle._scan_pickle(z.read("archive/data.pkl"))
    assert seen == {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage",
                    "sgmse.data_module.SpecsDataModule"}


def test_refused_before_unpickling_starts(tmp_path, monkeypatch):
    def no_unpickler(*args, **kwargs):
        raise AssertionError("the unpickler must not run on a refused file")

    monkeypatch.setattr(torch_pickle, "_RestrictedUnpickler", no_unpickler)
    _refuse(tmp_path, pickle.dumps(_Reduce(eval, "1"), protocol=4), "builtins.eval")
    stand_in = b"\x80\x02" + _global("sgmse.data_module", "SpecsDataModule")
    _refuse(tmp_path, stand_in + b")R.", "REDUCE")
    _refuse(tmp_path, stand_in + b")\x81.", "NEWOBJ")
    _refuse(tmp_path, stand_in + b"}b.", "BUILD")
    _refuse(tmp_path, b"\x80\x02" + _global("torch._utils", "_rebuild_tensor_v2") + b"}b.", "BUILD")


@pytest.mark.parametrize("value", [os.system, eval, pickle.loads])
def test_merely_naming_a_forbidden_global_is_refused(tmp_path, value):
    # Not called, only stored: still refused by name, not turned into a stand-in.
    message = _refuse(tmp_path, pickle.dumps({"hparam": value}, protocol=2), value.__name__)
    assert "allowlist" in message


def test_stack_global_with_computed_name_refused(tmp_path):
    # The module name is the result of a call, which no static scan can know.
    payload = (b"\x80\x04" + _global("collections", "OrderedDict") + b")R" + b"\x8c\x06system\x93" + b")R.")
    _refuse(tmp_path, payload, "STACK_GLOBAL")


def test_inst_opcode_refused(tmp_path):
    marker = tmp_path / "MARKER"
    payload = b"(S'touch " + str(marker).encode() + b"'\nios\nsystem\n."
    _refuse(tmp_path, payload, "os.system")
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [
    ("_collections", "OrderedDict"),                     # the same class under another path
    ("collections", "OrderedDict.__init__.__globals__"),  # dotted walk out of an allowed name
    ("torch._utils", "_rebuild_tensor_v2.__globals__"),
    ("torch", "load"),
])
def test_allowed_looking_paths_refused(tmp_path, module, name):
    payload = b"\x80\x04" + b"\x8c" + bytes([len(module)]) + module.encode() + b"\x8c" + bytes([len(name)]) + name.encode() + b"\x93)R."
    _refuse(tmp_path, payload, f"{module}.{name}")


def test_extension_registry_refused(tmp_path):
    _refuse(tmp_path, b"\x80\x02\x82\x01)R.", "EXT1")


@pytest.mark.parametrize("tail, needle", [
    (b")R.", "REDUCE"),            # SpecsDataModule()
    (b")\x81.", "NEWOBJ"),         # SpecsDataModule.__new__(SpecsDataModule)
    (b"}b.", "BUILD"),             # setting attributes on the stand-in
])
def test_stand_in_cannot_be_called(tmp_path, tail, needle):
    payload = b"\x80\x02" + _global("sgmse.data_module", "SpecsDataModule") + tail
    _refuse(tmp_path, payload, needle)


def test_build_on_allowed_function_refused(tmp_path):
    # Rewriting our own rebuild function's defaults would poison every later load.
    payload = b"\x80\x02" + _global("torch._utils", "_rebuild_tensor_v2") + b"N}" + _str("__defaults__") + b"Ns\x86b."
    _refuse(tmp_path, payload, "BUILD")


def test_find_class_is_a_second_barrier(tmp_path, monkeypatch):
    monkeypatch.setattr(torch_pickle, "_scan_pickle", lambda data: set())
    marker = tmp_path / "MARKER"
    _refuse(tmp_path, pickle.dumps(_Reduce(os.system, f"touch {marker}"), protocol=4), f"{os.system.__module__}.system")
    _refuse(tmp_path, b"\x80\x02" + _global("sgmse.data_module", "SpecsDataModule") + b")R.", "SpecsDataModule")
    _refuse(tmp_path, b"\x80\x02" + _global("torch._utils", "_rebuild_tensor_v2") + b"N}" + _str("x") + b"Ns\x86b.", "modify")
    assert not marker.exists()


# --------------------------------------------------------------------------------------
# Broken files: clear CheckpointError naming the file
# --------------------------------------------------------------------------------------

def _fails(path, needle: str):
    with pytest.raises(CheckpointError) as info:
        load_torch_checkpoint(path)
    assert path.name in str(info.value) and needle in str(info.value), str(info.value)
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_legacy_format(tmp_path):
    path = tmp_path / "old.pt"
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2))
    _fails(path, "legacy")


def test_not_a_zip(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("hello")
    _fails(path, "not a zip")


def test_truncated_archive(tmp_path, sgmse_fixtures):
    path = tmp_path / "cut.ckpt"
    path.write_bytes((sgmse_fixtures / "sgmse_small.ckpt").read_bytes()[:100_000])
    _fails(path, "truncated")


def test_missing_data_pkl(tmp_path):
    path = tmp_path / "empty.ckpt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/version", "3\n")
    _fails(path, "data.pkl")


def test_truncated_storage(tmp_path):
    pkl = _dict_pickle({"w": _tensor("FloatStorage", "0", 6, 0, (2, 3), (3, 1))})
    _fails(_write_ckpt(tmp_path / "short.ckpt", pkl, {"0": np.zeros(4, np.float32).tobytes()}), "truncated")


def test_missing_storage(tmp_path):
    pkl = _dict_pickle({"w": _tensor("FloatStorage", "7", 6, 0, (2, 3), (3, 1))})
    _fails(_write_ckpt(tmp_path / "nostorage.ckpt", pkl, {}), "archive/data/7")


def test_tensor_outside_its_storage(tmp_path):
    pkl = _dict_pickle({"w": _tensor("FloatStorage", "0", 6, 4, (2, 3), (3, 1))})
    _fails(_write_ckpt(tmp_path / "oob.ckpt", pkl, {"0": np.zeros(6, np.float32).tobytes()}), "reaches element")


def test_unsupported_storage_type(tmp_path):
    pkl = _dict_pickle({"w": _tensor("QInt8Storage", "0", 6, 0, (6,), (1,))})
    _fails(_write_ckpt(tmp_path / "quant.ckpt", pkl, {"0": bytes(6)}), "QInt8Storage")


# --------------------------------------------------------------------------------------
# omegaconf configs (BABE saves its Hydra DictConfig as `args`): data only
# --------------------------------------------------------------------------------------

_OMEGACONF_CLASSES = [("omegaconf.dictconfig", "DictConfig"), ("omegaconf.listconfig", "ListConfig"),
                      ("omegaconf.nodes", "AnyNode"), ("omegaconf.base", "ContainerMetadata"),
                      ("omegaconf.base", "Metadata")]


@pytest.fixture
def fake_omegaconf(monkeypatch):
    """Classes under omegaconf's module names, so that plain `pickle` writes what omegaconf
    writes (NEWOBJ, then BUILD with the instance __dict__); omegaconf itself is not needed."""
    import sys
    import types

    classes = {}
    for module, name in _OMEGACONF_CLASSES:
        for parent in ("omegaconf", module):
            if parent not in sys.modules or not isinstance(sys.modules[parent], types.ModuleType):
                monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
        cls = type(name, (), {"__module__": module})
        monkeypatch.setattr(sys.modules[module], name, cls, raising=False)
        classes[name] = cls
    return classes


def _omega(cls, **state):
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def _omega_config(c, content: dict, parent=None):
    """A DictConfig as omegaconf pickles it: metadata with type names and a resolver cache,
    children pointing back at their parent."""
    import typing

    meta = _omega(c["ContainerMetadata"], ref_type=typing.Any, object_type=dict, optional=True, key=None,
                  flags={"struct": True}, flags_root=False, resolver_cache=collections.defaultdict(dict),
                  key_type=typing.Any, element_type=typing.Any)
    node = _omega(c["DictConfig"], _metadata=meta, _parent=parent, _content=None)
    children = {}
    for key, value in content.items():
        if isinstance(value, dict):
            children[key] = _omega_config(c, value, node)
        elif isinstance(value, list):
            lst = _omega(c["ListConfig"], _metadata=_omega(c["ContainerMetadata"], key_type=int), _parent=node, _content=None)
            lst._content = [_omega(c["AnyNode"], _metadata=_omega(c["Metadata"], key=i), _parent=lst, _val=v)
                            for i, v in enumerate(value)]
            children[key] = lst
        else:
            children[key] = _omega(c["AnyNode"], _metadata=_omega(c["Metadata"], key=key), _parent=node, _val=value)
    node._content = children
    return node


def test_babe_checkpoint_reads_args_as_plain_data(cqtdiff_fixtures):
    path = cqtdiff_fixtures / "small_cqtdiffplus.pt"
    with zipfile.ZipFile(path) as z:
        seen = torch_pickle._scan_pickle(z.read("small_cqtdiffplus/data.pkl"))
    # Exactly the globals the fixture README lists for this file.
    assert seen == {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage",
                    "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig", "omegaconf.nodes.AnyNode",
                    "omegaconf.base.ContainerMetadata", "omegaconf.base.Metadata", "typing.Any",
                    "collections.defaultdict", "__builtin__.dict", "__builtin__.list", "__builtin__.long"}
    ckpt = load_torch_checkpoint(path)
    args = ckpt["args"]
    assert isinstance(args, torch_pickle.OmegaDict) and isinstance(args, dict)
    assert set(args) == {"dset", "network", "diff_params", "tester", "exp", "logging", "model_dir", "dry_run"}
    assert args["network"]["Ns"] == [8] * 7 and isinstance(args["network"]["Ns"], list)
    assert args["network"]["attention_dict"]["num_heads"] == 2 and args["diff_params"]["sigma_data"] == 0.063
    assert args["exp"]["audio_len"] == 65536

    def walk(value):  # nothing of omegaconf's machinery is left, only plain values
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            assert value is None or isinstance(value, (str, int, float, bool)), repr(value)

    walk(args)
    assert len(ckpt["ema"]) == len(ckpt["network"]) == 618
    assert ckpt["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)


def test_omegaconf_shaped_pickle_round_trip(tmp_path, fake_omegaconf):
    content = {"name": "cqtdiff+", "Ns": [64, 96], "cqt": {"beta": 1, "window": "kaiser"}, "none": None}
    payload = pickle.dumps({"args": _omega_config(fake_omegaconf, content)}, protocol=2)
    out = load_torch_checkpoint(_write_ckpt(tmp_path / "cfg.ckpt", payload))
    assert out["args"] == content and isinstance(out["args"]["cqt"], torch_pickle.OmegaDict)


def test_code_inside_an_omegaconf_config_is_refused(tmp_path, fake_omegaconf, monkeypatch):
    # A BABE-shaped file whose config value is os.system(...): refused by name before the
    # unpickler exists, and nothing ran.
    def no_unpickler(*args, **kwargs):
        raise AssertionError("the unpickler must not run on a refused file")

    monkeypatch.setattr(torch_pickle, "_RestrictedUnpickler", no_unpickler)
    marker = tmp_path / "MARKER"
    config = _omega_config(fake_omegaconf, {"name": "x", "Ns": [1]})
    config._content["name"]._val = _Reduce(os.system, f"touch {marker}")
    _refuse(tmp_path, pickle.dumps({"args": config}, protocol=2), f"{os.system.__module__}.system")
    assert not marker.exists()
    # The resolver cache's factory must be a plain type name, not an arbitrary callable.
    _refuse(tmp_path, pickle.dumps(collections.defaultdict(eval), protocol=2), "__builtin__.eval")
    # Type names are values only: calling or instantiating one is refused.
    _refuse(tmp_path, b"\x80\x02" + _global("__builtin__", "dict") + b")R.", "REDUCE")
    _refuse(tmp_path, b"\x80\x02" + _global("typing", "Any") + b")\x81.", "NEWOBJ")
    # BUILD on the stand-in class itself (rewriting our class) is refused.
    _refuse(tmp_path, b"\x80\x02" + _global("omegaconf.dictconfig", "DictConfig") + b"}b.", "BUILD")
    # Other omegaconf code is not on the list.
    _refuse(tmp_path, b"\x80\x02" + _global("omegaconf.omegaconf", "OmegaConf") + b").", "omegaconf.omegaconf.OmegaConf")


def test_omegaconf_stand_ins_take_one_plain_state(tmp_path):
    dictconfig = _global("omegaconf.dictconfig", "DictConfig")
    content = b"}" + _str("_content") + b"}" + _str("a") + _int(1) + b"ss"  # {'_content': {'a': 1}}
    ok = load_torch_checkpoint(_write_ckpt(tmp_path / "one.ckpt", b"\x80\x02" + dictconfig + b")\x81" + content + b"b."))
    assert ok == {"a": 1}
    # A second BUILD would rewrite a config already handed to its parent.
    _refuse(tmp_path, b"\x80\x02" + dictconfig + b")\x81" + content + b"b" + content + b"b.", "twice")
    # NEWOBJ with constructor arguments, a non-dict state, a defaultdict of a non-name.
    _fails(_write_ckpt(tmp_path / "args.ckpt", b"\x80\x02" + dictconfig + _int(1) + b"\x85\x81."), "no constructor arguments")
    _fails(_write_ckpt(tmp_path / "state.ckpt", b"\x80\x02" + dictconfig + b")\x81" + _int(1) + b"b."), "state must be a dict")
    odict = _global("collections", "OrderedDict") + b")R"
    _fails(_write_ckpt(tmp_path / "dd.ckpt", b"\x80\x02" + _global("collections", "defaultdict") + odict + b"\x85R."),
           "defaultdict is only allowed")
