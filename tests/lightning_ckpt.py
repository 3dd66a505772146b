"""Writes Lightning/torch.save-format checkpoints from numpy arrays, without PyTorch.

Used to prove that checkpoints of other backbones, sizes and SDEs than the shipped fixture
load correctly: the opcodes are those torch.save (pickle protocol 2) emits for an sgmse
checkpoint: a dict with `state_dict`, `ema` and `hyper_parameters`.
"""
import struct
import zipfile

import numpy as np


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(value):
    return b"J" + struct.pack("<i", value)


def _value(v):
    if v is None:
        return b"N"
    if isinstance(v, bool):
        return b"\x88" if v else b"\x89"
    if isinstance(v, int):
        return _int(v)
    if isinstance(v, float):
        return b"G" + struct.pack(">d", v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, (list, tuple)):
        return b"]" + b"".join(_value(x) + b"a" for x in v)
    raise TypeError(type(v))


class _Writer:
    def __init__(self):
        self.storages = {}

    def tensor(self, array):
        array = np.ascontiguousarray(array, np.float32)
        key = str(len(self.storages))
        self.storages[key] = array.tobytes()
        stride, acc = [], 1
        for n in reversed(array.shape):
            stride.insert(0, acc)
            acc *= n
        storage = (
            b"(" + _str("storage") + _global("torch", "FloatStorage") + _str(key) + _str("cpu") + _int(array.size) + b"tQ"
        )
        args = (
            b"(" + storage + _int(0) + b"(" + b"".join(_int(n) for n in array.shape) + b"t"
            + b"(" + b"".join(_int(s) for s in stride) + b"t" + b"\x89" + _global("collections", "OrderedDict") + b")R" + b"t"
        )
        return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def write_torch_zip(path, pickle_bytes: bytes, writer: _Writer):
    """torch.save's zip layout: archive/data.pkl, byteorder, version and the writer's storages."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for key, raw in writer.storages.items():
            z.writestr(f"archive/data/{key}", raw)
    return path


def write_lightning_checkpoint(path, state_dict, ema_params, hyper_parameters):
    """state_dict: name -> array (names with the `dnn.` prefix); ema_params: list of arrays."""
    w = _Writer()
    sd = _global("collections", "OrderedDict") + b")R" + b"".join(
        _str(k) + w.tensor(v) + b"s" for k, v in state_dict.items()
    )
    ema = b"}" + _str("decay") + _value(0.999) + b"s" + _str("num_updates") + _int(10) + b"s"
    ema += _str("shadow_params") + b"]" + b"".join(w.tensor(v) + b"a" for v in ema_params) + b"s"
    hp = b"}" + b"".join(_str(k) + _value(v) + b"s" for k, v in hyper_parameters.items())
    hp += _str("data_module_cls") + _global("sgmse.data_module", "SpecsDataModule") + b"s"
    top = b"\x80\x02}" + _str("state_dict") + sd + b"s" + _str("ema") + ema + b"s"
    top += _str("hyper_parameters") + hp + b"s" + _str("epoch") + _int(3) + b"s."
    return write_torch_zip(path, top, w)
