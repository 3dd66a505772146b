"""Reads PyTorch checkpoints (`torch.save`, Lightning `.ckpt`) without PyTorch and without running them.

A `torch.save` file (PyTorch >= 1.6) is a zip archive:

    <archive>/data.pkl        the object graph, a pickle; tensors point at storages by key
    <archive>/data/<key>      the raw bytes of each storage
    <archive>/byteorder       "little" or "big" (absent in old files: little)
    <archive>/version, ...    format bookkeeping we do not need

Unpickling an untrusted file runs whatever callables it names, so we never let the pickle
reach real code. Two independent barriers:

1. Before anything is unpickled, `_scan_pickle` walks the opcodes with an abstract stack and
   resolves every GLOBAL / INST / STACK_GLOBAL reference (following memoized strings). Any
   global outside the allowlist, any STACK_GLOBAL whose names are not string constants, and
   any attempt to call or BUILD an inert stand-in refuses the whole file.
2. The unpickler's `find_class` maps each allowed name to *our own* implementation (tensor
   rebuilding is a numpy view of the storage bytes) and refuses everything else. Nothing is
   ever imported by name.

Class objects that Lightning stores as plain values (sgmse keeps
`hyper_parameters['data_module_cls']`) come back as `TorchGlobal` stand-ins that cannot be
called, instantiated or modified.

Hydra/omegaconf configs (BABE saves its whole `DictConfig` as `args`) are read as data: the
pickle may create `DictConfig`, `ListConfig`, `AnyNode` (and the other plain value nodes) and
their metadata, and hand each one its state once; what comes back is `OmegaDict` (a `dict`) and
`OmegaList` (a `list`) holding plain values. Type names in the metadata (`typing.Any`,
`builtins.dict`/`list`/`int`) are inert `TorchGlobal` names, and `collections.defaultdict`
(the resolver cache) builds an ordinary empty dict; nothing of omegaconf runs.
"""
from __future__ import annotations

import collections
import io
import math
import pathlib
import pickle
import pickletools
import re
import sys
import tarfile
import types
import zipfile
from typing import Any, Callable

import ml_dtypes
import numpy as np

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "TorchGlobal",
    "Namespace",
    "OmegaDict",
    "OmegaList",
    "ALLOWED_GLOBALS",
    "load_torch_checkpoint",
]


class CheckpointError(ValueError):
    """A file that is not a readable PyTorch checkpoint (wrong format, damaged, unsupported)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle asks for code outside the allowlist; nothing was executed."""


class _Sealed:
    """Base of the objects we hand to the pickle: a BUILD opcode must not modify them.

    The unpickler's BUILD calls `__setstate__` when present, otherwise it writes into the
    object's attributes; defining it (and `__slots__`) closes both doors.
    """

    __slots__ = ()

    def __setstate__(self, state):
        raise UnsafeCheckpointError(f"the pickle tries to modify {self!r} (BUILD)")


class TorchGlobal(_Sealed):
    """Inert stand-in for a class or function that the checkpoint stores as a value.

    Example: sgmse saves `data_module_cls=sgmse.data_module.SpecsDataModule` in its
    hyper-parameters. We keep the name for the user to read, never the code.
    """

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "name", name)

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    def __setattr__(self, key, value):
        raise AttributeError("TorchGlobal is immutable")

    def __call__(self, *args, **kwargs):
        raise UnsafeCheckpointError(f"the pickle tries to call or instantiate {self.qualname}, which is only a name")

    def __repr__(self) -> str:
        return f"TorchGlobal({self.module!r}, {self.name!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, TorchGlobal) and (self.module, self.name) == (other.module, other.name)

    def __hash__(self) -> int:
        return hash((TorchGlobal, self.module, self.name))


class Namespace(types.SimpleNamespace):
    """What an `argparse.Namespace` (older Lightning hyper-parameters) becomes: plain attributes."""

    def __setstate__(self, state):
        # Called as `Namespace.__setstate__(state)` on the class itself this fails for lack of
        # `self`, so a pickle cannot use it to rewrite our class.
        if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
            raise CheckpointError(f"argparse.Namespace state must be a dict of str keys, got {type(state).__name__}")
        self.__dict__.update(state)


class _OmegaConfObject:
    """Common part of the omegaconf stand-ins: created empty (NEWOBJ with no arguments), then
    given their state by exactly one BUILD, a dict with string keys."""

    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        if args or kwargs:
            raise CheckpointError(f"{cls.__name__} takes no constructor arguments in a checkpoint")
        return super().__new__(cls)

    def _take_state(self, state) -> dict:
        if self._is_built():
            raise UnsafeCheckpointError(f"the pickle gives a {type(self).__name__} its state twice (BUILD)")
        if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
            raise CheckpointError(f"{type(self).__name__} state must be a dict with str keys, got {type(state).__name__}")
        return state

    def _is_built(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError


def _config_value(node):
    """A child of a DictConfig/ListConfig as plain data; it must have been built already
    (children are complete before their parent's BUILD in every pickle omegaconf writes)."""
    if isinstance(node, (OmegaDict, OmegaList, _ConfigValueNode)):
        if not node._is_built():
            raise CheckpointError("an omegaconf node is used before it is built (cyclic or reordered config)")
        return node._value if isinstance(node, _ConfigValueNode) else node._plain()
    if isinstance(node, _ConfigMetadata):
        raise CheckpointError("omegaconf metadata where a config value belongs")
    return node


class OmegaDict(_OmegaConfObject, dict):
    """What an omegaconf `DictConfig` becomes: a plain dict of its (plain) content.

    Interpolations (`${...}`) stay as their strings. A nested config whose content is None or
    "???" (missing) becomes that value in its parent.
    """

    __slots__ = ("_built", "_raw")

    def _is_built(self) -> bool:
        return getattr(self, "_built", False)

    def __setstate__(self, state):
        content = self._take_state(state).get("_content")
        if isinstance(content, dict):
            for key, value in content.items():
                dict.__setitem__(self, key, _config_value(value))
        elif content is not None and not isinstance(content, str):
            raise CheckpointError(f"DictConfig content must be a dict, None or a string, got {type(content).__name__}")
        object.__setattr__(self, "_raw", None if isinstance(content, dict) else (content,))
        object.__setattr__(self, "_built", True)

    def _plain(self):
        return self if self._raw is None else self._raw[0]


class OmegaList(_OmegaConfObject, list):
    """What an omegaconf `ListConfig` becomes: a plain list of its (plain) items."""

    __slots__ = ("_built", "_raw")

    def _is_built(self) -> bool:
        return getattr(self, "_built", False)

    def __setstate__(self, state):
        content = self._take_state(state).get("_content")
        if isinstance(content, list):
            list.extend(self, [_config_value(value) for value in content])
        elif content is not None and not isinstance(content, str):
            raise CheckpointError(f"ListConfig content must be a list, None or a string, got {type(content).__name__}")
        object.__setattr__(self, "_raw", None if isinstance(content, list) else (content,))
        object.__setattr__(self, "_built", True)

    def _plain(self):
        return self if self._raw is None else self._raw[0]


class _ConfigValueNode(_OmegaConfObject):
    """An omegaconf value node (`AnyNode`, `StringNode`, ...): only its `_val` is kept."""

    __slots__ = ("_built", "_value")

    def _is_built(self) -> bool:
        return getattr(self, "_built", False)

    def __setstate__(self, state):
        value = self._take_state(state).get("_val")
        object.__setattr__(self, "_built", True)
        object.__setattr__(self, "_value", _config_value(value))

    def __repr__(self) -> str:
        return f"<omegaconf value {getattr(self, '_value', '?')!r}>"


class _ConfigMetadata(_OmegaConfObject):
    """omegaconf `Metadata` / `ContainerMetadata` (types, flags, key): read and dropped."""

    __slots__ = ("_built",)

    def _is_built(self) -> bool:
        return getattr(self, "_built", False)

    def __setstate__(self, state):
        self._take_state(state)
        object.__setattr__(self, "_built", True)


def _empty_defaultdict(default_factory=None):
    # omegaconf's resolver cache is `defaultdict(dict)`. A real defaultdict would call its
    # factory (here an inert name) on a missing key, so it becomes an ordinary dict.
    if default_factory is not None and not (
        isinstance(default_factory, TorchGlobal) and (default_factory.module, default_factory.name) in _INERT_NAMES
    ):
        raise CheckpointError(f"collections.defaultdict is only allowed with a plain type name, got {default_factory!r:.60}")
    return {}


class _AllowedCallable(_Sealed):
    """An allowlisted global the pickle may call (REDUCE): our implementation behind its torch name."""

    __slots__ = ("qualname", "_fn")

    def __init__(self, qualname: str, fn: Callable):
        object.__setattr__(self, "qualname", qualname)
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, key, value):
        raise AttributeError(f"{self.qualname} is immutable")

    def __call__(self, *args):
        return self._fn(*args)

    def __repr__(self) -> str:
        return f"<allowed global {self.qualname}>"


class _Storage(_Sealed):
    """One typed storage of the archive: a 1-D numpy array over the storage's bytes."""

    __slots__ = ("key", "array")

    def __init__(self, key: str, array: np.ndarray):
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "array", array)

    def __setattr__(self, key, value):
        raise AttributeError("storages are immutable")

    def __repr__(self) -> str:
        return f"<storage {self.key!r}: {self.array.size} x {self.array.dtype}>"


# --------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------

# torch.save names a storage by its legacy typed-storage class (torch >= 2 still does).
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
    "UntypedStorage": np.dtype(np.uint8),
}


def _as_index(value, what: str) -> int:
    # bool is an int subclass; a bool where torch writes a size means a corrupt pickle.
    if type(value) is not int or value < 0:
        raise CheckpointError(f"tensor {what} must be a non-negative int, got {value!r}")
    return value


def _as_dims(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise CheckpointError(f"tensor {what} must be a tuple of ints, got {type(value).__name__}")
    return tuple(_as_index(v, what) for v in value)


def _is_c_contiguous(size: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    expected = 1
    for n, s in zip(reversed(size), reversed(stride)):
        # The stride of a length-1 axis is never used, so torch leaves it arbitrary.
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _tensor_from_storage(storage, storage_offset, size, stride) -> np.ndarray:
    """The array a torch tensor (storage, offset, size, stride) denotes, C-contiguous.

    Contiguous tensors (nearly all weights) are views of the storage buffer, so a large
    checkpoint is held in memory once; tensors that share a storage share memory, as in torch.
    Strided tensors are copied into a fresh contiguous array.
    """
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"a tensor must be rebuilt from a storage, got {type(storage).__name__}")
    offset = _as_index(storage_offset, "storage offset")
    size = _as_dims(size, "size")
    stride = _as_dims(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError(f"tensor size {size} and stride {stride} differ in length")
    flat = storage.array
    if 0 in size:
        return np.zeros(size, flat.dtype)
    end = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if end > flat.size:
        raise CheckpointError(
            f"tensor (offset {offset}, size {size}, stride {stride}) reaches element {end} "
            f"of storage {storage.key!r}, which holds {flat.size}"
        )
    if _is_c_contiguous(size, stride):
        return flat[offset : offset + math.prod(size)].reshape(size)
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride), writeable=False
    )
    return view.copy(order="C")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    # metadata carries tensor flags (e.g. conjugate/negative views) we cannot honour; reading
    # such a tensor as plain numbers would silently give wrong values.
    if metadata:
        raise CheckpointError(f"tensor metadata {metadata!r} is not supported")
    return _tensor_from_storage(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, np.ndarray):
        raise CheckpointError(f"a Parameter must wrap a tensor, got {type(data).__name__}")
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    # `state` holds Python attributes set on the Parameter; a numpy array has nowhere to keep them.
    return _rebuild_parameter(data, requires_grad, backward_hooks)


# --------------------------------------------------------------------------------------
# Plain values
# --------------------------------------------------------------------------------------


def _torch_size(dims=()) -> tuple[int, ...]:
    return _as_dims(dims, "torch.Size")


def _latin1_bytes(text, encoding="latin1") -> bytes:
    # Protocol 2 pickles `bytes` as _codecs.encode(text, 'latin1'); nothing else is allowed.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError(f"_codecs.encode is only allowed as encode(str, 'latin1'), got ({text!r:.40}, {encoding!r})")
    return text.encode("latin-1")


def _path_builder(pure_type: type) -> Callable:
    # A concrete PosixPath/WindowsPath becomes its pure counterpart: same parts, no file access.
    def build(*parts):
        if not all(isinstance(part, str) for part in parts):
            raise CheckpointError(f"path parts must be strings, got {parts!r:.80}")
        return pure_type(*parts)

    return build


def _empty_bytes(*args) -> bytes:
    # Protocol 2 pickles b"" as bytes(); bytes(n) would let a file allocate n bytes at will.
    if args:
        raise CheckpointError("builtins.bytes is only allowed without arguments (b'')")
    return b""


# --------------------------------------------------------------------------------------
# The allowlist
# --------------------------------------------------------------------------------------

_TORCH_UTILS = ("torch._utils", "torch._tensor")
_CALLABLES: dict[tuple[str, str], Callable] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch", "Size"): _torch_size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): _empty_defaultdict,
    ("_codecs", "encode"): _latin1_bytes,
}
for _module in ("builtins", "__builtin__"):  # protocol 2 writes the Python 2 module name
    _CALLABLES.update({(_module, "set"): set, (_module, "frozenset"): frozenset, (_module, "complex"): complex,
                       (_module, "bytes"): _empty_bytes})
for _module in ("pathlib", "pathlib._local"):  # Python >= 3.13 moved the classes
    for _name, _pure in (("PosixPath", pathlib.PurePosixPath), ("PurePosixPath", pathlib.PurePosixPath),
                         ("WindowsPath", pathlib.PureWindowsPath), ("PureWindowsPath", pathlib.PureWindowsPath)):
        _CALLABLES[(_module, _name)] = _path_builder(_pure)

# Types the pickle may instantiate with NEWOBJ (which insists on a real class).
_TYPES: dict[tuple[str, str], type] = {
    ("argparse", "Namespace"): Namespace,
    ("omegaconf.dictconfig", "DictConfig"): OmegaDict,
    ("omegaconf.listconfig", "ListConfig"): OmegaList,
    ("omegaconf.base", "Metadata"): _ConfigMetadata,
    ("omegaconf.base", "ContainerMetadata"): _ConfigMetadata,
    # Configs composed from YAML hold AnyNode; the other plain value nodes have the same state.
    **{("omegaconf.nodes", n): _ConfigValueNode
       for n in ("AnyNode", "StringNode", "IntegerNode", "FloatNode", "BooleanNode")},
}

# Packages whose classes a checkpoint may *name* as values: returned as TorchGlobal.
_INERT_PACKAGES = ("sgmse",)
# Single names allowed as values only (omegaconf metadata: ref/key/element/object types).
_INERT_NAMES = frozenset(
    [("typing", "Any")]
    + [(m, n) for m in ("builtins", "__builtin__") for n in ("dict", "list", "int", "float", "str", "bool")]
    + [("__builtin__", "long")]  # protocol 2 writes Python 3's int as __builtin__.long
)

ALLOWED_GLOBALS: frozenset[str] = frozenset(
    [f"{m}.{n}" for m, n in _CALLABLES]
    + [f"{m}.{n}" for m, n in _TYPES]
    + [f"torch.{n}" for n in _STORAGE_DTYPES]
    + [f"{p}.* (inert)" for p in _INERT_PACKAGES]
    + [f"{m}.{n} (inert)" for m, n in sorted(_INERT_NAMES)]
)


def _is_inert(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in _INERT_PACKAGES)


def _resolve(module: str, name: str):
    """What an allowed global becomes; raises for anything else.

    Returns an `_AllowedCallable`, a `type` from `_TYPES`, or a `TorchGlobal` (storage
    types and application classes, which the pickle may only pass around).
    """
    if not isinstance(module, str) or not isinstance(name, str):
        raise UnsafeCheckpointError(f"global with non-string name {module!r}.{name!r}")
    key = (module, name)
    if key in _CALLABLES:
        return _AllowedCallable(f"{module}.{name}", _CALLABLES[key])
    if key in _TYPES:
        return _TYPES[key]
    if (module == "torch" and name in _STORAGE_DTYPES) or _is_inert(module) or key in _INERT_NAMES:
        return TorchGlobal(module, name)
    # Unsupported torch features get a precise message instead of "unsafe". A dotted name is an
    # attribute walk (e.g. `_rebuild_tensor_v2.__globals__`), never a torch feature.
    if name.isidentifier():
        if module == "torch" and name.endswith("Storage"):
            raise CheckpointError(f"unsupported storage type torch.{name} (supported: {', '.join(_STORAGE_DTYPES)})")
        if module in _TORCH_UTILS and name.startswith("_rebuild_"):
            raise CheckpointError(f"unsupported tensor kind {module}.{name} (only dense tensors and Parameters)")
    raise UnsafeCheckpointError(f"refusing global {module}.{name}: not in the allowlist of checkpoint globals")


# --------------------------------------------------------------------------------------
# Static scan: refuse before anything runs
# --------------------------------------------------------------------------------------

_ANY = object()  # a value the scan does not track
_STRING_OPS = frozenset(
    ["STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"]
)
_PUT_OPS = frozenset(["PUT", "BINPUT", "LONG_BINPUT"])
_GET_OPS = frozenset(["GET", "BINGET", "LONG_BINGET"])
_CALL_OPS = frozenset(["REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"])


class _AbstractStack:
    """The unpickler's stack and memo, with strings and globals tracked and all else `_ANY`.

    Like the real unpickler, MARKs are kept apart (`marks` holds where each frame starts)
    and an opcode can only pop within the current frame.
    """

    def __init__(self):
        self.items: list = []
        self.marks: list[int] = []
        self.memo: dict = {}

    def _check_frame(self):
        if len(self.items) <= (self.marks[-1] if self.marks else 0):
            raise CheckpointError("data.pkl is malformed (stack underflow)")

    def push(self, value):
        self.items.append(value)

    def pop(self):
        self._check_frame()
        return self.items.pop()

    def top(self):
        self._check_frame()
        return self.items[-1]

    def push_mark(self):
        self.marks.append(len(self.items))

    def pop_to_mark(self) -> list:
        if not self.marks:
            raise CheckpointError("data.pkl is malformed (no MARK on the stack)")
        cut = self.marks.pop()
        sliced = self.items[cut:]
        del self.items[cut:]
        return sliced


def _check_call(target, opcode: str) -> None:
    if isinstance(target, TorchGlobal):
        raise UnsafeCheckpointError(f"the pickle tries to call or instantiate {target.qualname} ({opcode}), which is only a name")


def _apply_generic(op, stack: _AbstractStack) -> list:
    """Pops what `op` consumes (per pickletools' stack effects); returns the popped values in order."""
    before = op.stack_before
    if pickletools.markobject in before:
        sliced = stack.pop_to_mark()
        popped = [stack.pop() for _ in range(before.index(pickletools.markobject))][::-1] + sliced
    elif op.name == "POP" and stack.marks and len(stack.items) == stack.marks[-1]:
        stack.marks.pop()  # POP on an empty frame discards the MARK, as the unpickler does
        popped = []
    else:
        popped = [stack.pop() for _ in before][::-1]
    for produced in op.stack_after:
        if produced is pickletools.markobject:
            stack.push_mark()
        else:
            stack.push(_ANY)
    return popped


def _scan_global(stack: _AbstractStack, name: str, arg, pos: int) -> str:
    """GLOBAL, INST, STACK_GLOBAL: resolves the reference (raising if forbidden); returns it."""
    if name == "STACK_GLOBAL":
        qual, module = stack.pop(), stack.pop()
        if not (isinstance(module, str) and isinstance(qual, str)):
            raise UnsafeCheckpointError(
                f"STACK_GLOBAL at byte {pos} takes its module/name from a computed value; refusing what cannot be checked"
            )
    else:
        module, _, qual = arg.partition(" ")  # pickletools joins the two lines with a space
    target = _resolve(module, qual)
    if name == "INST":  # INST is GLOBAL and a call in one opcode
        _check_call(target, name)
        stack.pop_to_mark()
        stack.push(_ANY)
    else:
        stack.push(target)
    return f"{module}.{qual}"


def _scan_op(stack: _AbstractStack, op, arg, pos: int) -> None:
    """Applies one opcode to the abstract stack, refusing what a checkpoint never needs."""
    name = op.name
    if name in ("EXT1", "EXT2", "EXT4"):
        raise UnsafeCheckpointError(f"{name} at byte {pos} names a global through the copyreg extension registry")
    if name in _STRING_OPS:
        stack.push(arg)
    elif name in _PUT_OPS:
        stack.memo[arg] = stack.top()
    elif name == "MEMOIZE":
        stack.memo[len(stack.memo)] = stack.top()
    elif name in _GET_OPS:
        if arg not in stack.memo:
            raise CheckpointError(f"data.pkl is malformed (memo key {arg} read before written)")
        stack.push(stack.memo[arg])
    elif name == "DUP":
        stack.push(stack.top())
    elif name == "BUILD":
        stack.pop()
        target = stack.top()
        # Only objects the pickle built may receive state, never a global (ours or a stand-in).
        if isinstance(target, (TorchGlobal, _AllowedCallable, type)):
            raise UnsafeCheckpointError(f"the pickle tries to modify {target!r} (BUILD at byte {pos})")
    else:
        popped = _apply_generic(op, stack)
        if name in _CALL_OPS:
            # REDUCE/NEWOBJ/NEWOBJ_EX take the callable first; OBJ takes it right after the MARK.
            _check_call(popped[0] if popped else _ANY, name)


def _scan_pickle(data: bytes) -> set[str]:
    """Checks every global `data` references before it is unpickled.

    Returns:
      The referenced globals as "module.name".
    Raises:
      UnsafeCheckpointError: a global outside the allowlist, an unresolvable STACK_GLOBAL,
        an extension-registry reference, or a call/BUILD on a name-only stand-in.
      CheckpointError: the pickle is malformed.
    """
    stack = _AbstractStack()
    seen: set[str] = set()
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST", "STACK_GLOBAL"):
                seen.add(_scan_global(stack, op.name, arg, pos))
            else:
                _scan_op(stack, op, arg, pos)
    except CheckpointError:
        raise
    except ValueError as err:  # pickletools: unknown opcode, truncated data
        raise CheckpointError(f"data.pkl is not a valid pickle: {err}") from err
    return seen


# --------------------------------------------------------------------------------------
# The archive
# --------------------------------------------------------------------------------------

# torch < 1.6 wrote a bare sequence of pickles starting with this magic number.
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[2:-1]


def _open_archive(path: pathlib.Path) -> zipfile.ZipFile:
    """Opens the torch zip archive, or explains what else the file is."""
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        with open(path, "rb") as f:
            head = f.read(64)
        if _LEGACY_MAGIC in head:
            raise CheckpointError(
                "legacy (pre-1.6) torch.save format, not a zip archive; re-save it with a recent "
                "PyTorch: torch.save(torch.load(old), new)"
            ) from err
        if tarfile.is_tarfile(path):
            raise CheckpointError("legacy tar torch.save format (PyTorch < 0.4); not supported") from err
        if head.startswith(b"PK"):
            raise CheckpointError(f"damaged or truncated zip archive ({err})") from err
        if head[:1] == b"\x80":
            raise CheckpointError("a bare pickle, not a torch.save zip archive") from err
        raise CheckpointError("not a PyTorch checkpoint (not a zip archive)") from err


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    """The top-level folder that holds data.pkl (torch names it after the file)."""
    names = archive.namelist()
    found = [n[: -len("/data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise CheckpointError(f"several data.pkl records ({', '.join(found)}); cannot tell which is the checkpoint")
    if any(n.endswith("/constants.pkl") for n in names):
        raise CheckpointError("a TorchScript archive (torch.jit.save), not a torch.save checkpoint")
    raise CheckpointError(f"zip archive without <archive>/data.pkl (entries: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")


def _byteorder(archive: zipfile.ZipFile, prefix: str) -> str:
    member = f"{prefix}/byteorder"
    try:
        archive.getinfo(member)
    except KeyError:
        return "little"  # files from before the record existed were all little-endian
    order = _read_member(archive, member).decode("ascii", "replace").strip()
    if order not in ("little", "big"):
        raise CheckpointError(f"unknown byteorder {order!r}")
    return order


def _read_member(archive: zipfile.ZipFile, member: str, buffer: bytearray | None = None):
    """The bytes of one archive member (into `buffer` when given); damage becomes CheckpointError."""
    try:
        with archive.open(member) as f:
            if buffer is None:
                return f.read()
            got = f.readinto(buffer)
    except KeyError:
        raise CheckpointError(f"{member} is missing from the archive") from None
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CheckpointError(f"cannot read {member}, the archive is damaged: {err}") from err
    if got != len(buffer):
        raise CheckpointError(f"{member} is truncated: read {got} of {len(buffer)} bytes")
    return buffer


class _StorageReader:
    """Serves persistent ids: reads each storage's bytes from the archive once."""

    _KEY = re.compile(r"[0-9A-Za-z_.\-]+")

    def __init__(self, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        self._archive = archive
        self._prefix = prefix
        self._swap = byteorder != sys.byteorder
        self._raw: dict[str, bytearray] = {}
        self._typed: dict[tuple[str, np.dtype], _Storage] = {}

    def load(self, pid) -> _Storage:
        """Resolves ('storage', storage_type, key, location, numel) to a `_Storage`."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {pid!r:.100}")
        _, storage_type, key, _location, numel = pid
        if not (isinstance(storage_type, TorchGlobal) and storage_type.module == "torch" and storage_type.name in _STORAGE_DTYPES):
            raise CheckpointError(f"unknown storage type {storage_type!r}")
        if not (isinstance(key, str) and self._KEY.fullmatch(key)):
            raise CheckpointError(f"invalid storage key {key!r:.60}")
        dtype = _STORAGE_DTYPES[storage_type.name]
        cached = self._typed.get((key, dtype))
        if cached is None:
            nbytes = _as_index(numel, "storage size") * dtype.itemsize
            cached = _Storage(key, self._typed_array(self._read(key, nbytes, storage_type.qualname), dtype))
            self._typed[(key, dtype)] = cached
        return cached

    def _read(self, key: str, nbytes: int, type_name: str) -> bytearray:
        raw = self._raw.get(key)
        member = f"{self._prefix}/data/{key}"
        try:
            size = len(raw) if raw is not None else self._archive.getinfo(member).file_size
        except KeyError:
            raise CheckpointError(f"storage {key!r} is missing from the archive (no {member})") from None
        # Checked before reading, so a lying header cannot make us allocate or read garbage.
        if size != nbytes:
            raise CheckpointError(
                f"storage {member} ({type_name}) has {size} bytes but the pickle declares {nbytes}; "
                "the file is truncated or corrupt"
            )
        if raw is None:
            raw = self._raw[key] = _read_member(self._archive, member, bytearray(size))
        return raw

    def _typed_array(self, raw: bytearray, dtype: np.dtype) -> np.ndarray:
        if not self._swap or dtype.itemsize == 1:
            return np.frombuffer(raw, dtype=dtype)
        # A complex number is two floats, each swapped on its own. Copy, because the same
        # bytes may also be read under another dtype.
        unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
        return np.frombuffer(raw, dtype=f"u{unit}").byteswap().view(dtype)


class _RestrictedUnpickler(pickle.Unpickler):
    """Second barrier: every global goes through `_resolve`; storages come from the archive."""

    def __init__(self, data: bytes, storages: _StorageReader):
        # fix_imports=False: we see the names exactly as written (e.g. protocol 2's __builtin__).
        super().__init__(io.BytesIO(data), fix_imports=False, encoding="utf-8")
        self._storages = storages

    def find_class(self, module, name):
        return _resolve(module, name)

    def persistent_load(self, pid):
        return self._storages.load(pid)


def _load(path: pathlib.Path) -> Any:
    with _open_archive(path) as archive:
        prefix = _archive_prefix(archive)
        data = _read_member(archive, f"{prefix}/data.pkl")
        _scan_pickle(data)
        storages = _StorageReader(archive, prefix, _byteorder(archive, prefix))
        try:
            return _RestrictedUnpickler(data, storages).load()
        except CheckpointError:
            raise
        except Exception as err:  # the pickle is malformed in a way the scan does not model
            raise CheckpointError(f"cannot unpickle data.pkl: {type(err).__name__}: {err}") from err


def load_torch_checkpoint(path) -> Any:
    """Reads a `torch.save` file (e.g. a Lightning `.ckpt`) without PyTorch or its code.

    Tensors become numpy arrays (float32/64/16, bfloat16 via ml_dtypes, int8-64, uint8, bool,
    complex64/128) in their original shape; contiguous ones are views of the storage bytes
    read from the archive, so tensors sharing a storage share memory. Class objects stored
    as values come back as `TorchGlobal` names; `argparse.Namespace` as `Namespace`; paths
    as pure paths.

    Args:
      path: the checkpoint file.
    Returns:
      The unpickled object graph (for Lightning: a dict with state_dict, hyper_parameters, ...).
    Raises:
      UnsafeCheckpointError: the pickle references a global outside the allowlist (named in
        the message) or tries to call a name-only stand-in; nothing was executed.
      CheckpointError: not a torch zip archive (legacy format, TorchScript, other file),
        missing data.pkl or storage, truncated storage, unsupported dtype or tensor kind.
      OSError: the file cannot be opened.
    """
    path = pathlib.Path(path)
    try:
        return _load(path)
    except CheckpointError as err:
        raise type(err)(f"{path}: {err}") from err.__cause__
