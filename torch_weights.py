"""Read a PyTorch `pytorch_model.bin` state dict as numpy arrays, without torch and without running its pickle.

A `.bin` is a Python pickle, and a pickle is a small program: `pickle.load` (or `torch.load` with its
old default) calls whatever functions it names, so a downloaded weights file can run any command.
This reader unpickles through an allow-list, like torch's own `weights_only` loader: only what a
state dict is made of gets through (an OrderedDict of tensors rebuilt from typed storages); any
other global is refused before anything is called. The tensors are then rebuilt as numpy arrays
from the raw storage bytes, honouring each tensor's offset, size and stride.

Both of torch's formats are read:
- zip (torch >= 1.6): `<archive>/data.pkl`, the storages as `<archive>/data/<key>`, and
  `<archive>/byteorder` in newer files;
- legacy (older uploads): a stream of pickles (magic number, protocol version, sys_info, the
  state dict, the list of storage keys), then each storage as an 8-byte little-endian element
  count followed by its bytes.
"""
import collections
import pickle
import zipfile
from typing import NamedTuple

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
ZIP_MAGIC = b"PK\x03\x04"

# bfloat16 has no numpy dtype: its storage is read as uint16 bit patterns and widened to float32.
BFLOAT16 = "bfloat16"
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": BFLOAT16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(ValueError):
    """The file is not a plain PyTorch state dict; the message names the file and why."""


class StorageType(NamedTuple):
    """Stands in for `torch.FloatStorage` and its kin: a name and a dtype, nothing callable."""

    name: str
    dtype: object

    def numpy_dtype(self, byteorder):
        dtype = np.uint16 if self.dtype == BFLOAT16 else self.dtype
        return np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")


class StorageRef(NamedTuple):
    """What the pickle's persistent id says of one storage; its bytes are read after unpickling."""

    key: str
    storage_type: StorageType
    numel: int


class TensorRef(NamedTuple):
    """A tensor as the pickle describes it; a tuple, so the pickle's BUILD opcode cannot alter it."""

    storage: object
    offset: object
    size: object
    stride: object


class TensorRebuilder:
    """Stands in for torch._utils._rebuild_tensor(_v2): records the layout, reads nothing yet."""

    __slots__ = ()  # no attributes: the pickle's BUILD opcode finds nothing to alter, as it would on a function

    def __call__(self, storage, storage_offset, size, stride, *_requires_grad_hooks_and_metadata):
        return TensorRef(storage, storage_offset, size, stride)


class ParameterRebuilder:
    """Stands in for torch._utils._rebuild_parameter(_with_state): a Parameter is its tensor."""

    __slots__ = ()

    def __call__(self, data, *_requires_grad_hooks_and_state):
        return data


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): TensorRebuilder(),
    ("torch._utils", "_rebuild_tensor_v2"): TensorRebuilder(),
    ("torch._utils", "_rebuild_parameter"): ParameterRebuilder(),
    ("torch._utils", "_rebuild_parameter_with_state"): ParameterRebuilder(),
    **{("torch", name): StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict through ALLOWED_GLOBALS, collecting the storages it refers to."""

    def __init__(self, file, path):
        super().__init__(file, encoding="utf-8")  # as torch.load: Python 2 strings decode as UTF-8
        self.path = path
        self.storages = {}

    def find_class(self, module, name):
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise UnsafeCheckpointError(
                f"{self.path}: refusing to load: its pickle asks for {module}.{name}, "
                f"which a weights file never needs")
        return allowed

    def persistent_load(self, pid):
        # zip: ('storage', type, key, location, numel); legacy adds a view that torch >= 1.0 leaves None
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage" and pid[5:] in ((), (None,))
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str) and is_index(pid[4])):
            raise UnsafeCheckpointError(f"{self.path}: not a state dict: its pickle refers to {pid!r}")
        storage = StorageRef(pid[2], pid[1], pid[4])
        if self.storages.setdefault(storage.key, storage) != storage:
            raise UnsafeCheckpointError(f"{self.path}: storage {storage.key} is declared twice, differently")
        return storage


def read_torch_state_dict(path):
    """The tensors of a torch-saved state dict, {name: numpy array} in the file's order.

    bfloat16 tensors come back as float32. Tensors that shared a storage in torch may share memory
    here too, as after torch.load; non-contiguous ones come back as contiguous copies.
    Raises UnsafeCheckpointError, naming the file, for anything but a plain state dict of tensors.
    """
    with open(path, "rb") as file:
        if file.read(len(ZIP_MAGIC)) == ZIP_MAGIC:
            return read_zip_format(path)
        file.seek(0)
        if has_legacy_magic_number(file, path):
            return read_legacy_format(file, path)
    raise UnsafeCheckpointError(
        f"{path}: not a PyTorch checkpoint (neither torch's zip format nor its legacy pickle format)")


def read_zip_format(path):
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = archive_prefix(archive, path)
            with archive.open(prefix + "data.pkl") as pickled:
                unpickler = StateDictUnpickler(pickled, path)
                state_dict = unpickle(unpickler)
            names = set(archive.namelist())
            # Files from older torch have no byteorder record; torch.load then assumes little-endian too.
            byteorder = archive.read(prefix + "byteorder").decode() if prefix + "byteorder" in names else "little"
            if byteorder not in ("little", "big"):
                raise UnsafeCheckpointError(f"{path}: unknown byteorder {byteorder!r}")
            storages = {}
            for key, storage in unpickler.storages.items():
                if prefix + "data/" + key not in names:
                    raise UnsafeCheckpointError(f"{path}: storage {key} is missing from the archive")
                with archive.open(prefix + "data/" + key) as data:
                    storages[key] = read_storage(data, storage, byteorder, path)
    except (zipfile.BadZipFile, EOFError) as error:  # EOFError: a local entry cut short
        raise UnsafeCheckpointError(f"{path}: damaged or truncated zip archive ({error})") from None
    return arrays_from_state_dict(state_dict, storages, path)


def archive_prefix(archive, path):
    """The one top folder holding data.pkl (torch names it after the file it saved to)."""
    prefixes = [name[: -len("data.pkl")] for name in archive.namelist()
                if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(prefixes) != 1:
        raise UnsafeCheckpointError(f"{path}: a zip, but not torch's: no single <archive>/data.pkl in it")
    return prefixes[0]


def has_legacy_magic_number(file, path):
    try:
        return StateDictUnpickler(file, path).load() == LEGACY_MAGIC_NUMBER
    except UnsafeCheckpointError:
        raise
    except Exception:  # whatever else the first bytes are, the file is not torch's legacy format
        return False


def read_legacy_format(file, path):
    if unpickle(StateDictUnpickler(file, path)) != LEGACY_PROTOCOL_VERSION:
        raise UnsafeCheckpointError(f"{path}: legacy torch format of an unknown protocol version")
    unpickle(StateDictUnpickler(file, path))  # sys_info: the storages are little-endian whatever it says
    unpickler = StateDictUnpickler(file, path)
    state_dict = unpickle(unpickler)
    storage_keys = unpickle(StateDictUnpickler(file, path))
    if not (isinstance(storage_keys, list) and set(storage_keys) == set(unpickler.storages)):
        raise UnsafeCheckpointError(f"{path}: its list of storages does not match the tensors' storages")
    storages = {}
    for key in storage_keys:
        count = int.from_bytes(file.read(8), "little")
        if count != unpickler.storages[key].numel:
            raise UnsafeCheckpointError(f"{path}: storage {key} is damaged or truncated")
        storages[key] = read_storage(file, unpickler.storages[key], "little", path)
    return arrays_from_state_dict(state_dict, storages, path)


def unpickle(unpickler):
    """One pickle through the allow-list; a malformed one is refused like a forbidden one."""
    try:
        return unpickler.load()
    except UnsafeCheckpointError:
        raise
    except Exception as error:  # allowed globals called with nonsense, cut-off data, bad opcodes
        raise UnsafeCheckpointError(f"{unpickler.path}: not a readable state dict pickle ({error!r})") from None


def read_storage(file, storage, byteorder, path):
    """A storage's elements as a flat writable native-order array, refusing a short read."""
    dtype = storage.storage_type.numpy_dtype(byteorder)
    buffer = bytearray(storage.numel * dtype.itemsize)
    if file.readinto(buffer) != len(buffer):
        raise UnsafeCheckpointError(
            f"{path}: storage {storage.key} is truncated (its tensors need {len(buffer)} bytes)")
    return np.frombuffer(buffer, dtype).astype(dtype.newbyteorder("="), copy=False)


def arrays_from_state_dict(state_dict, storages, path):
    if not isinstance(state_dict, dict):
        raise UnsafeCheckpointError(f"{path}: holds a {type(state_dict).__name__}, not a state dict")
    arrays = {}
    for name, tensor in state_dict.items():
        if not (isinstance(name, str) and isinstance(tensor, TensorRef)):
            raise UnsafeCheckpointError(
                f"{path}: not a state dict of tensors: {name!r} holds a {type(tensor).__name__}")
        arrays[name] = array_from_tensor(tensor, storages, path, name)
    return arrays


def array_from_tensor(tensor, storages, path, name):
    storage, offset, size, stride = tensor
    if not (isinstance(storage, StorageRef) and is_index(offset) and is_index_tuple(size)
            and is_index_tuple(stride) and len(size) == len(stride)):
        raise UnsafeCheckpointError(f"{path}: tensor {name!r} is not a plain view of a storage")
    flat = storages[storage.key]
    # as_strided trusts its arguments: an index past the storage would read foreign memory.
    last = offset + sum((length - 1) * step for length, step in zip(size, stride))
    if all(size) and last >= flat.size:
        raise UnsafeCheckpointError(f"{path}: tensor {name!r} reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=[step * flat.itemsize for step in stride])
    if storage.storage_type.dtype == BFLOAT16:
        return (view.astype(np.uint32) << 16).view(np.float32)
    return view if view.flags.c_contiguous else view.copy()


def is_index(value):
    return type(value) is int and value >= 0  # not bool, not a subclass the pickle could make


def is_index_tuple(value):
    return isinstance(value, tuple) and all(is_index(item) for item in value)
