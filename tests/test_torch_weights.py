"""torch_weights reads both torch formats exactly and refuses any .bin whose pickle asks for more than tensors.

The files are written by torch.save where torch is importable, and always by the small writer
below, which emits the pickle opcodes torch.save writes (protocol 2) by hand, so that the reader
is tested where torch is not installed, as in CI.
"""
import collections
import pickle
import shlex
import zipfile

import numpy as np
import pytest

from torch_pickles import (
    EMPTY_ORDERED_DICT, pickle_global, pickle_state_dict, pickle_str, write_legacy, write_zip)
from torch_pickles import pickle_tensor as pickle_storage_tensor
from torch_weights import UnsafeCheckpointError, read_torch_state_dict

# Each storage: its torch type and its elements (the bfloat16 ones are exact in bfloat16).
STORAGES = {
    "0": ("FloatStorage", np.arange(6, dtype=np.float32) - 2.5),
    "1": ("FloatStorage", np.linspace(-1, 1, 10, dtype=np.float32)),
    "2": ("HalfStorage", np.array([0.5, -1.25, 3.0, 1e-3], dtype=np.float16)),
    "3": ("BFloat16Storage", np.array([1.0, -0.5, 256.0, 0.09375], dtype=np.float32)),
    "4": ("LongStorage", np.arange(8, dtype=np.int64)),
}
TORCH_DTYPES = {"FloatStorage": "float32", "HalfStorage": "float16",
                "BFloat16Storage": "bfloat16", "LongStorage": "int64"}
# Each tensor: (storage key, offset, size, stride); the names are deliberately not in sorted order.
TENSORS = {
    "encoder.weight": ("0", 0, (2, 3), (3, 1)),
    "encoder.weight_t": ("0", 0, (3, 2), (1, 3)),
    "encoder.bias": ("1", 4, (3,), (1,)),
    "decoder.every_other": ("1", 1, (3,), (2,)),
    "attention.half": ("2", 0, (2, 2), (2, 1)),
    "attention.bfloat16": ("3", 1, (3,), (1,)),
    "embeddings.position_ids": ("4", 0, (1, 8), (8, 1)),
    "batches_tracked": ("4", 7, (), ()),
}


def expected_arrays():
    """What torch holds for TENSORS, by numpy slicing rather than by offset and strides."""
    storage = {key: values for key, (_, values) in STORAGES.items()}
    return {
        "encoder.weight": storage["0"].reshape(2, 3),
        "encoder.weight_t": storage["0"].reshape(2, 3).T,
        "encoder.bias": storage["1"][4:7],
        "decoder.every_other": storage["1"][1:7:2],
        "attention.half": storage["2"].reshape(2, 2),
        "attention.bfloat16": storage["3"][1:4],
        "embeddings.position_ids": storage["4"].reshape(1, 8),
        "batches_tracked": storage["4"][7:].reshape(()),
    }


def pickle_tensor(key, offset, size, stride, legacy, backward_hooks=EMPTY_ORDERED_DICT):
    storage_type, values = STORAGES[key]
    return pickle_storage_tensor(storage_type, key, len(values), offset, size, stride, legacy, backward_hooks)


def storage_bytes(key, byteorder="little"):
    storage_type, values = STORAGES[key]
    if storage_type == "BFloat16Storage":
        values = (values.view(np.uint32) >> 16).astype(np.uint16)  # bfloat16 is float32's top half
    return values.astype(values.dtype.newbyteorder("<" if byteorder == "little" else ">")).tobytes()


def write_by_hand(path, layout, tensors=TENSORS, byteorder="little"):
    pickled = pickle_state_dict((name, pickle_tensor(*tensor, legacy=layout == "legacy"))
                                for name, tensor in tensors.items())
    storages = {key: storage_bytes(key, byteorder) for key in sorted({tensor[0] for tensor in tensors.values()})}
    if layout == "zip":
        return write_zip(path, pickled, storages, byteorder)
    return write_legacy(path, pickled, storages, {key: len(STORAGES[key][1]) for key in storages})


def write_with_torch(path, layout):
    torch = pytest.importorskip("torch")
    storages = {key: torch.from_numpy(values.copy()).to(getattr(torch, TORCH_DTYPES[storage_type]))
                for key, (storage_type, values) in STORAGES.items()}
    state_dict = collections.OrderedDict(
        (name, torch.as_strided(storages[key], size, stride, offset))
        for name, (key, offset, size, stride) in TENSORS.items())
    torch.save(state_dict, path, _use_new_zipfile_serialization=layout == "zip")
    return path


@pytest.fixture(params=[("by hand", "zip"), ("by hand", "legacy"), ("torch.save", "zip"), ("torch.save", "legacy")],
                ids=lambda param: " ".join(param))
def saved_state_dict(request, tmp_path):
    writer, layout = request.param
    write = write_by_hand if writer == "by hand" else write_with_torch
    return write(tmp_path / "pytorch_model.bin", layout)


def test_values_honour_offset_stride_and_shared_storages(saved_state_dict):
    arrays = read_torch_state_dict(saved_state_dict)
    for name, expected in expected_arrays().items():
        assert arrays[name].shape == expected.shape, name
        np.testing.assert_array_equal(arrays[name], expected, err_msg=name)


def test_dtypes_are_torchs_with_bfloat16_as_float32(saved_state_dict):
    dtypes = {name: array.dtype for name, array in read_torch_state_dict(saved_state_dict).items()}
    assert dtypes == {
        "encoder.weight": np.float32, "encoder.weight_t": np.float32, "encoder.bias": np.float32,
        "decoder.every_other": np.float32, "attention.half": np.float16, "attention.bfloat16": np.float32,
        "embeddings.position_ids": np.int64, "batches_tracked": np.int64,
    }


def test_keys_keep_the_state_dicts_order(saved_state_dict):
    assert list(read_torch_state_dict(saved_state_dict)) == list(TENSORS)


def test_big_endian_zip_storages_are_read_by_their_byteorder_record(tmp_path):
    arrays = read_torch_state_dict(write_by_hand(tmp_path / "pytorch_model.bin", "zip", byteorder="big"))
    for name, expected in expected_arrays().items():
        np.testing.assert_array_equal(arrays[name], expected, err_msg=name)


@pytest.mark.parametrize("model_class", ["BertModel", "BertForPreTraining"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_a_transformers_bert_reads_exactly_as_torch_loads_it(tmp_path, layout, dtype, model_class):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=37, max_position_embeddings=64)
    model = getattr(transformers, model_class)(config).to(getattr(torch, dtype))
    path = tmp_path / "pytorch_model.bin"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=layout == "zip")
    arrays = read_torch_state_dict(path)
    expected = torch.load(path, weights_only=True)
    assert list(arrays) == list(expected)
    for name, tensor in expected.items():
        tensor = tensor.float() if tensor.dtype == torch.bfloat16 else tensor
        assert arrays[name].dtype == tensor.numpy().dtype, name
        np.testing.assert_array_equal(arrays[name], tensor.numpy(), err_msg=name)


class CreatesFile:
    """What an attacker pickles: loading it calls open(target, "w")."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


def malicious_pickle(payload, target):
    """A state dict pickle one of whose values creates `target` when plain pickle loads it."""
    if payload == "__reduce__ open":
        return pickle.dumps(collections.OrderedDict([("bert.pooler.dense.weight", CreatesFile(target))]), protocol=2)
    call = {"os.system": pickle_global("os", "system") + b"(" + pickle_str(f"touch {shlex.quote(str(target))}"),
            "builtins.exec": pickle_global("builtins", "exec") + b"(" + pickle_str(f"open({str(target)!r}, 'w')")}
    return pickle_state_dict([("bert.pooler.dense.weight", call[payload] + b"tR")])


def write_pickle_in(path, layout, pickled):
    if layout == "zip":
        return write_zip(path, pickled, {})
    if layout == "legacy":
        return write_legacy(path, pickled, {}, {})
    path.write_bytes(pickled)  # a bare pickle, as a hand-made .bin would be
    return path


PAYLOADS = ["os.system", "builtins.exec", "__reduce__ open"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_payloads_do_create_the_file_under_plain_pickle(tmp_path, payload):
    target = tmp_path / "created"
    pickle.loads(malicious_pickle(payload, target))
    assert target.exists()


@pytest.mark.parametrize("layout", ["zip", "legacy", "bare pickle"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_bin_whose_pickle_would_create_a_file_is_refused_and_runs_nothing(tmp_path, payload, layout):
    target = tmp_path / "created"
    path = write_pickle_in(tmp_path / "pytorch_model.bin", layout, malicious_pickle(payload, target))
    with pytest.raises(UnsafeCheckpointError, match="refusing to load: its pickle asks for") as refusal:
        read_torch_state_dict(path)
    assert not target.exists()
    assert str(path) in str(refusal.value)


def test_the_refusal_names_the_file_and_the_global(tmp_path):
    path = write_pickle_in(tmp_path / "pytorch_model.bin", "zip", malicious_pickle("os.system", tmp_path / "x"))
    with pytest.raises(UnsafeCheckpointError) as refusal:
        read_torch_state_dict(path)
    assert str(refusal.value) == (
        f"{path}: refusing to load: its pickle asks for os.system, which a weights file never needs")


NOT_TORCH = {
    "empty": b"",
    "git-lfs pointer": b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 411577189\n",
    "html page": b"<!DOCTYPE html><html><body>404</body></html>",
    "random bytes": np.random.default_rng(0).bytes(4096),
    "plain pickle": pickle.dumps({"weight": [1.0, 2.0]}, protocol=2),
}


@pytest.mark.parametrize("content", NOT_TORCH.values(), ids=NOT_TORCH.keys())
def test_a_file_of_neither_format_is_refused(tmp_path, content):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(content)
    with pytest.raises(UnsafeCheckpointError, match="not a PyTorch checkpoint") as refusal:
        read_torch_state_dict(path)
    assert str(path) in str(refusal.value)


def test_a_zip_without_torchs_data_pkl_is_refused(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(UnsafeCheckpointError, match="no single <archive>/data.pkl"):
        read_torch_state_dict(path)


def test_a_cut_off_zip_is_refused(tmp_path):
    path = write_by_hand(tmp_path / "pytorch_model.bin", "zip")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UnsafeCheckpointError, match="damaged or truncated zip"):
        read_torch_state_dict(path)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_a_storage_shorter_than_it_says_is_refused(tmp_path, layout):
    path = tmp_path / "pytorch_model.bin"
    pickled = pickle_state_dict([("weight", pickle_tensor("0", 0, (2, 3), (3, 1), legacy=layout == "legacy"))])
    short = {"0": storage_bytes("0")[:-3]}  # the legacy file ends there: a download cut short
    if layout == "zip":
        write_zip(path, pickled, short)
    else:
        write_legacy(path, pickled, short, {"0": len(STORAGES["0"][1])})
    with pytest.raises(UnsafeCheckpointError, match="storage 0 is truncated"):
        read_torch_state_dict(path)


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    path = write_by_hand(tmp_path / "pytorch_model.bin", "zip", tensors={"weight": ("0", 2, (2, 3), (3, 1))})
    with pytest.raises(UnsafeCheckpointError, match="'weight' reaches past the end of its storage"):
        read_torch_state_dict(path)


JUNK = {
    "a nested dict": pickle_state_dict([("weight", EMPTY_ORDERED_DICT)]),
    "a list": pickle.dumps(collections.OrderedDict(weight=[1.0, 2.0]), protocol=2),
    "a list of tensors": b"\x80\x02]" + b"(" + pickle_tensor("0", 0, (6,), (1,), legacy=False) + b"e.",
    "a tensor of no storage": pickle_state_dict([("weight", pickle_global("torch._utils", "_rebuild_tensor_v2")
                                                  + b"(" + pickle_str("0") + b"K\x00(K\x01t(K\x01t\x89tR")]),
    "a called storage type": pickle_state_dict([("weight", pickle_global("torch", "FloatStorage") + b")R")]),
}


@pytest.mark.parametrize("pickled", JUNK.values(), ids=JUNK.keys())
def test_non_tensor_values_the_allow_list_lets_through_are_refused(tmp_path, pickled):
    path = write_zip(tmp_path / "pytorch_model.bin", pickled, {"0": storage_bytes("0")})
    with pytest.raises(UnsafeCheckpointError) as refusal:
        read_torch_state_dict(path)
    assert str(path) in str(refusal.value)


@pytest.mark.parametrize("module, name", [("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict"),
                                          ("torch", "FloatStorage")])
def test_a_pickle_altering_an_allowed_global_is_refused(tmp_path, module, name):
    # BUILD with slot state sets attributes: on a plain function it would rewrite the reader's own defaults.
    alter = pickle_global(module, name) + b"N}" + pickle_str("__defaults__") + b"(K\x01ts\x86b"
    pickled = pickle_state_dict([("weight", pickle_tensor("0", 0, (6,), (1,), legacy=False, backward_hooks=alter))])
    path = write_zip(tmp_path / "pytorch_model.bin", pickled, {"0": storage_bytes("0")})
    with pytest.raises(UnsafeCheckpointError, match=f"refusing its pickle: it alters a global {module}.{name}"):
        read_torch_state_dict(path)
