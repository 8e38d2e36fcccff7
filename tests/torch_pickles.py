"""Write PyTorch state dicts (`pytorch_model.bin`) without torch, byte for byte as `torch.save` does.

The tests need .bin files where torch is not installed (as in CI): these helpers emit the pickle
opcodes torch.save writes (protocol 2, less the memo opcodes, which change nothing) and lay them
out in torch's zip format or in its legacy one. Where torch is installed, `save_state_dict` uses it.
"""
import pickle
import struct
import zipfile

import numpy as np

STORAGE_TYPES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float16): "HalfStorage",
                 np.dtype(np.int64): "LongStorage"}


def pickle_global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def pickle_str(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def pickle_int(value):
    return b"J" + struct.pack("<i", value)


def pickle_int_tuple(values):
    return b"(" + b"".join(pickle_int(value) for value in values) + b"t"


EMPTY_ORDERED_DICT = pickle_global("collections", "OrderedDict") + b")R"


def pickle_state_dict(items):
    """An OrderedDict of the given pickled (name, value) pairs, as torch.save writes a state dict."""
    pairs = b"".join(pickle_str(name) + value for name, value in items)
    return b"\x80\x02" + EMPTY_ORDERED_DICT + b"(" + pairs + b"u."


def pickle_tensor(storage_type, key, numel, offset, size, stride, legacy, backward_hooks=EMPTY_ORDERED_DICT):
    """torch._utils._rebuild_tensor_v2 over the storage `key` (a persistent id, as torch writes it)."""
    persistent_id = (b"(" + pickle_str("storage") + pickle_global("torch", storage_type) + pickle_str(key)
                     + pickle_str("cpu") + pickle_int(numel) + (b"N" if legacy else b"") + b"t")
    return (pickle_global("torch._utils", "_rebuild_tensor_v2") + b"(" + persistent_id + b"Q"
            + pickle_int(offset) + pickle_int_tuple(size) + pickle_int_tuple(stride)
            + b"\x89" + backward_hooks + b"tR")


def write_zip(path, pickled, storages, byteorder="little"):
    """torch's zip format: {key: storage bytes} beside the pickle; stored, not compressed, as torch writes it."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/byteorder", byteorder)
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return path


def write_legacy(path, pickled, storages, numels):
    """torch's legacy format: magic number, protocol, sys_info, the state dict, the storage keys, the storages."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    header = b"".join(pickle.dumps(item, protocol=2) for item in (0x1950A86A20F9469CFC6C, 1001, sys_info))
    data = b"".join(struct.pack("<q", numels[key]) + storages[key] for key in sorted(storages))
    with open(path, "wb") as writer:
        writer.write(header + pickled + pickle.dumps(sorted(storages), protocol=2) + data)
    return path


def save_state_dict(arrays, path, zip_format=True):
    """{name: numpy array} as torch.save(state_dict) writes it: by torch where installed, else by hand."""
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        state_dict = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in arrays.items()}
        torch.save(state_dict, path, _use_new_zipfile_serialization=zip_format)
        return path
    items, storages, numels = [], {}, {}
    for index, (name, value) in enumerate(arrays.items()):
        value = np.ascontiguousarray(value)
        key = str(index)
        stride = tuple(step // value.itemsize for step in value.strides)
        items.append((name, pickle_tensor(STORAGE_TYPES[value.dtype], key, value.size, 0, value.shape, stride,
                                          legacy=not zip_format)))
        storages[key], numels[key] = value.astype(value.dtype.newbyteorder("<")).tobytes(), value.size
    pickled = pickle_state_dict(items)
    return write_zip(path, pickled, storages) if zip_format else write_legacy(path, pickled, storages, numels)
