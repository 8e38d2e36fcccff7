"""A hostile or broken checkpoint file is refused with one `error:` line: no crash, no traceback, no
gigabytes, no minutes, nothing read outside its folder, no terminal escapes printed raw.

Each file is small and written here. The `.bin` ones are read in a child process of their own
(a crafted pickle could crash it), with its address space capped at what it had after importing
plus 256 MiB, so that any attack which makes the reader allocate gigabytes fails the test, and a
minute's timeout for the ones that took minutes. The config, vocabulary, index and safetensors
ones cannot crash: they are checked in this process, with tracemalloc's peak as the memory bound.
"""
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

from bert_checkpoint import CheckpointError, find_checkpoint, load_bert
from hub_layouts import write_hub_folder
from torch_pickles import pickle_global, pickle_state_dict, pickle_str, pickle_tensor, write_legacy, write_zip
from transformers_reference import SMALL_CONFIG, small_bert_tensors

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRA_MEMORY = 256 * 2**20
ESCAPE = "\x1b[2J\x1b[31m"  # clear the screen, then red

# ---------------------------------------------------------------------------------------------
# The .bin reader, in a child process with capped memory
# ---------------------------------------------------------------------------------------------

READ_IN_A_CHILD = """
import resource, sys
sys.path.insert(0, sys.argv[2])
from torch_weights import UnsafeCheckpointError, read_torch_state_dict
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (size + int(sys.argv[3]), size + int(sys.argv[3])))
try:
    read_torch_state_dict(sys.argv[1])
except UnsafeCheckpointError as error:  # as fine_tuning.run prints a CheckpointError
    print("error: %s" % error, file=sys.stderr)
    sys.exit(2)
"""


def pickle_long(value):
    """LONG1: an integer too large for BININT, as pickle writes one."""
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def state_dict_of(storage_numel, offset, size, stride, storage_key="0", legacy=False):
    """One float32 tensor over one storage, with whatever sizes the pickle claims."""
    persistent_id = (b"(" + pickle_str("storage") + pickle_global("torch", "FloatStorage") + pickle_str(storage_key)
                     + pickle_str("cpu") + pickle_long(storage_numel) + (b"N" if legacy else b"") + b"t")
    tensor = (pickle_global("torch._utils", "_rebuild_tensor_v2") + b"(" + persistent_id + b"Q"
              + pickle_long(offset) + b"(" + b"".join(map(pickle_long, size)) + b"t"
              + b"(" + b"".join(map(pickle_long, stride)) + b"t" + b"\x89" + pickle_global("collections", "OrderedDict")
              + b")RtR")
    return pickle_state_dict([("bert.embeddings.word_embeddings.weight", tensor)])


def nested_tuples(levels):
    """A dict whose key is a tuple nested `levels` deep: hashing it recursed in C until the stack overflowed."""
    return b"\x80\x02}N" + b"\x85" * levels + b"Ns."


def doubling_tuple_key(levels):
    """A 400-byte pickle whose key is a tuple of 2**levels tuples, by memo: its repr is ~100 MB."""
    chain = b"".join(struct.pack("<BB", ord("q"), i) + struct.pack("<BB", ord("h"), i) + b"\x86"
                     for i in range(levels))
    return b"\x80\x02}(" + b")" + chain + b"Nu."


def colliding_int_keys(count):
    """Integer keys that all hash alike (multiples of 2**61 - 1): inserting them took quadratic time."""
    pairs = b"".join(pickle_long(i * (2**61 - 1)) + b"N" + (b"u(" if i % 1000 == 999 else b"") for i in range(count))
    return b"\x80\x02}(" + pairs + b"u."


def ordered_dict_of_colliding_int_keys(count):
    """OrderedDict([(key, None), ...]) called with the pairs: no SETITEM to check, the same quadratic insertion."""
    pairs = b"".join(pickle_long(i * (2**61 - 1)) + b"N\x86" + (b"e(" if i % 1000 == 999 else b"")
                     for i in range(count))
    return b"\x80\x02" + pickle_global("collections", "OrderedDict") + b"](" + pairs + b"e\x85R."


def many_views_of_one_storage(count):
    """`count` transposed views of one 512 x 512 storage: each comes back as its own 1 MiB copy."""
    tensor = pickle_tensor("FloatStorage", "0", 512 * 512, 0, (512, 512), (1, 512), legacy=False)
    return pickle_state_dict([("view%d" % i, tensor) for i in range(count)])


def zip_entry_patched(path, name, local_offset, central_offset, value):
    """Overwrite a 2-byte field of entry `name` in both its local header and the central directory."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(name).header_offset
    central = data.index(b"PK\x01\x02")
    while data[central + 46:central + 46 + len(name)] != name.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<H", data, local + local_offset, value)
    struct.pack_into("<H", data, central + central_offset, value)
    path.write_bytes(bytes(data))
    return path


def write_zip_entries(path, entries):
    """A zip of {name: (bytes, compression)}."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, (data, compression) in entries.items():
            archive.writestr(name, data, compress_type=compression)
    return path


def deflated_nones(path, count):
    """data.pkl of `count` NONE opcodes, deflated: 150 million are 150 KB in the file, 1.25 GB of stack unpickled."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as writer:
            writer.write(b"\x80\x02")
            chunk = b"N" * 2**20
            for _ in range(count // len(chunk)):
                writer.write(chunk)
            writer.write(b".")
    return path


def write_attack(name, path):
    """The file of each attack on the reader; see BIN_ATTACKS."""
    little = {"0": np.zeros(6, np.float32).tobytes()}  # 24 bytes
    if name == "a key nested 10**6 tuples deep":
        return write_zip(path, nested_tuples(10**6), {})
    if name == "a key nested 10**6 tuples deep, legacy":
        return write_legacy(path, nested_tuples(10**6), {}, {})
    if name == "storage claims 2**28 elements, holds 24 bytes":
        return write_zip(path, state_dict_of(2**28, 0, (6,), (1,)), little)
    if name == "storage claims 2**28 elements, holds 24 bytes, legacy":
        return write_legacy(path, state_dict_of(2**28, 0, (6,), (1,), legacy=True), little, {"0": 2**28})
    if name == "storage claims 2**40 elements":
        return write_zip(path, state_dict_of(2**40, 0, (2**20, 2**20), (2**20, 1)), little)
    if name == "tensor of 2**40 elements over 6":
        return write_zip(path, state_dict_of(6, 0, (2**20, 2**20), (2**20, 1)), little)
    if name == "stride-0 16384 x 16384 over one element":
        return write_zip(path, state_dict_of(6, 0, (16384, 16384), (0, 0)), little)
    if name == "stride 2**62":
        return write_zip(path, state_dict_of(6, 0, (1,), (2**62,)), little)
    if name == "an empty tensor of shape (0, 2**62)":
        return write_zip(path, state_dict_of(6, 0, (0, 2**62), (2**62, 1)), little)
    if name == "1000 copies of one 1 MiB storage":
        return write_zip(path, many_views_of_one_storage(1000), {"0": bytes(4 * 512 * 512)})
    if name == "memo index LONG_BINPUT 2**26":
        return write_zip(path, b"\x80\x02}r" + struct.pack("<I", 2**26) + b".", {})
    if name == "150 million NONEs deflated":
        return deflated_nones(path, 150 * 2**20)
    if name == "4 million NONEs stored":
        return write_zip(path, b"\x80\x02" + b"N" * 4_000_000 + b".", {})
    if name == "data.pkl of 5 MB":
        return write_zip(path, b"\x80\x02" + b"N" * 5_000_000 + b".", {})
    if name == "a byteorder of 10 MB, LZMA-compressed":
        return write_zip_entries(path, {"archive/data.pkl": (state_dict_of(6, 0, (6,), (1,)), zipfile.ZIP_STORED),
                                        "archive/byteorder": (b"little" + bytes(10**7), zipfile.ZIP_LZMA),
                                        "archive/data/0": (little["0"], zipfile.ZIP_STORED)})
    if name == "a stored byteorder of 1 MB":
        return write_zip_entries(path, {"archive/data.pkl": (state_dict_of(6, 0, (6,), (1,)), zipfile.ZIP_STORED),
                                        "archive/byteorder": (b"little" + bytes(10**6), zipfile.ZIP_STORED)})
    if name == "a corrupt deflate stream":
        write_zip_entries(path, {"archive/data.pkl": (state_dict_of(6, 0, (6,), (1,)) * 20, zipfile.ZIP_DEFLATED)})
        data = bytearray(path.read_bytes())
        data[40:60] = bytes(20)
        path.write_bytes(bytes(data))
        return path
    if name == "an encrypted entry":
        path = write_zip(path, state_dict_of(6, 0, (6,), (1,)), little)
        return zip_entry_patched(path, "archive/data.pkl", 6, 8, 0x1)
    if name == "an entry of unknown method 99":
        path = write_zip(path, state_dict_of(6, 0, (6,), (1,)), little)
        return zip_entry_patched(path, "archive/data.pkl", 8, 10, 99)
    if name == "a non-string key with a 100 MB repr":
        return write_zip(path, doubling_tuple_key(24), {})
    if name == "300,000 hash-colliding integer keys":
        return write_zip(path, colliding_int_keys(300_000), {})
    if name == "an OrderedDict of 250,000 colliding keys, by its arguments":
        return write_zip(path, ordered_dict_of_colliding_int_keys(250_000), {})
    if name == "a legacy list of storages holding a list":
        path = write_legacy(path, state_dict_of(6, 0, (6,), (1,), legacy=True), {}, {})
        no_storages = pickle.dumps([], protocol=2)
        path.write_bytes(path.read_bytes()[:-len(no_storages)] + pickle.dumps([[]], protocol=2))
        return path
    if name == "a storage key with terminal escapes":
        return write_zip(path, state_dict_of(6, 0, (6,), (1,), storage_key=ESCAPE + "0"), {})
    raise ValueError(name)


# Each attack: what the one error line says.
BIN_ATTACKS = {
    "a key nested 10**6 tuples deep": "refusing its pickle: it nests values more than 32 deep",
    "a key nested 10**6 tuples deep, legacy": "refusing its pickle: it nests values more than 32 deep",
    "storage claims 2**28 elements, holds 24 bytes": "storage 0 is truncated: it claims 268435456 elements",
    "storage claims 2**28 elements, holds 24 bytes, legacy": "storage 0 is truncated: it claims 268435456 elements",
    "storage claims 2**40 elements": "storage 0 is truncated: it claims 1099511627776 elements",
    "tensor of 2**40 elements over 6": "addresses more elements than its storage holds (6)",
    "stride-0 16384 x 16384 over one element": "addresses more elements than its storage holds (6)",
    "stride 2**62": "addresses more elements than its storage holds (6)",
    "an empty tensor of shape (0, 2**62)": "has a shape numpy cannot make",
    "1000 copies of one 1 MiB storage": "its tensors view the same storages over and over",
    "memo index LONG_BINPUT 2**26": "refusing its pickle: memo index 67108864",
    "150 million NONEs deflated": "archive/data.pkl is compressed (method 8)",
    "4 million NONEs stored": "refusing its pickle: it stacks more than 65536 values",
    "data.pkl of 5 MB": "archive/data.pkl is 5000003 bytes",
    "a byteorder of 10 MB, LZMA-compressed": "archive/byteorder is compressed (method 14)",
    "a stored byteorder of 1 MB": "archive/byteorder is 1000006 bytes",
    "a corrupt deflate stream": "archive/data.pkl is compressed (method 8)",
    "an encrypted entry": "archive/data.pkl is encrypted",
    "an entry of unknown method 99": "archive/data.pkl is compressed (method 99)",
    "a non-string key with a 100 MB repr": "refusing its pickle: a dictionary key that is not a string",
    "300,000 hash-colliding integer keys": "refusing its pickle: a dictionary key that is not a string",
    "an OrderedDict of 250,000 colliding keys, by its arguments": "its OrderedDict is built from arguments",
    "a legacy list of storages holding a list": "its list of storages does not match the tensors' storages",
    "a storage key with terminal escapes": r"storage \x1b[2J\x1b[31m0 is missing from the archive",
}


def assert_one_error_line(result, path, expected):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith("error: %s" % path) and expected in errors[0]
    assert len(errors[0]) < 500


@pytest.mark.parametrize("attack", BIN_ATTACKS)
def test_a_hostile_bin_is_refused_in_one_line_with_bounded_memory(tmp_path, attack):
    path = write_attack(attack, tmp_path / "pytorch_model.bin")
    result = subprocess.run([sys.executable, "-c", READ_IN_A_CHILD, str(path), PROJECT_DIR, str(EXTRA_MEMORY)],
                            capture_output=True, text=True, timeout=60)  # 60 s: the quadratic keys took minutes
    assert_one_error_line(result, path, BIN_ATTACKS[attack])


# ---------------------------------------------------------------------------------------------
# config.json, vocab.txt, the shard index and safetensors: checked in this process
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_tensors():
    return small_bert_tensors()


def edit_json(name, change):
    """A break that loads `name`, changes it and writes it back as JSON."""
    def edit(folder):
        path = os.path.join(folder, name)
        with open(path, encoding="utf-8") as reader:
            content = json.load(reader)
        with open(path, "w", encoding="utf-8") as writer:
            json.dump(change(content), writer)
    return edit


def config_with(**changes):
    return edit_json("config.json", lambda config: {**config, **changes})


def config_without(key):
    return edit_json("config.json", lambda config: {name: value for name, value in config.items() if name != key})


def write_bytes(name, data):
    def edit(folder):
        with open(os.path.join(folder, name), "wb") as writer:
            writer.write(data)
    return edit


def vocab_with(old_token, new_token):
    def edit(folder):
        path = os.path.join(folder, "vocab.txt")
        with open(path, encoding="utf-8") as reader:
            tokens = reader.read().split("\n")
        with open(path, "w", encoding="utf-8") as writer:
            writer.write("\n".join(new_token if token == old_token else token for token in tokens))
    return edit


def index_naming(shard):
    """The sharded folder's index with its first shard renamed to `shard` (what that names is left as it is)."""
    return edit_json("model.safetensors.index.json", lambda index: {**index, "weight_map": {
        name: shard if value.startswith("model-00001") else value for name, value in index["weight_map"].items()}})


def safetensors_of_dtype(dtype):
    """model.safetensors holding one tensor in `dtype`, written by hand (numpy has no such type to save)."""
    shape = [4 // {"F8_E4M3": 1, "BF16": 2}[dtype]]  # 4 bytes
    header = json.dumps({"embeddings.word_embeddings.weight": {"dtype": dtype, "shape": shape, "data_offsets": [0, 4]}})
    return write_bytes("model.safetensors", struct.pack("<Q", len(header)) + header.encode() + bytes(4))


def outside_shard(folder):
    """A real shard outside the folder, for an index to point at."""
    other = os.path.join(os.path.dirname(folder), "other_model")
    os.makedirs(other, exist_ok=True)
    shutil.copyfile(os.path.join(folder, "model-00001-of-00002.safetensors"), os.path.join(other, "model.safetensors"))
    return os.path.join(other, "model.safetensors")


# Each break: (its layout, the change, the file it names, what the one line says).
HUB_BREAKS = {
    "vocab_size NaN": ("safetensors", config_with(vocab_size=float("nan")), "config.json",
                       "vocab_size is nan; expected a whole number from 1 to 1048576"),
    "vocab_size a string": ("safetensors", config_with(vocab_size="21128"), "config.json", "vocab_size is '21128'"),
    "vocab_size a float": ("safetensors", config_with(vocab_size=21128.0), "config.json", "vocab_size is 21128.0"),
    "vocab_size true": ("safetensors", config_with(vocab_size=True), "config.json", "vocab_size is True"),
    "no hidden_dropout_prob": ("safetensors", config_without("hidden_dropout_prob"), "config.json",
                               "hidden_dropout_prob is missing; expected a probability"),
    "hidden_dropout_prob 1": ("safetensors", config_with(hidden_dropout_prob=1.0), "config.json",
                              "hidden_dropout_prob is 1.0; expected a probability, at least 0 and below 1"),
    "heads not dividing hidden": ("safetensors", config_with(num_attention_heads=3), "config.json",
                                  "num_attention_heads 3 does not divide hidden_size 32"),
    "zero heads": ("safetensors", config_with(num_attention_heads=0), "config.json",
                   "num_attention_heads is 0; expected a whole number from 1 to 1024"),
    "zero layers": ("safetensors", config_with(num_hidden_layers=0), "config.json",
                    "num_hidden_layers is 0; expected a whole number from 1 to 256"),
    "100000 layers": ("safetensors", config_with(num_hidden_layers=100000), "config.json",
                      "num_hidden_layers is 100000"),
    "hidden_act relu": ("safetensors", config_with(hidden_act="relu"), "config.json",
                        "hidden_act is 'relu'; keras-bert computes GELU"),
    "model_type with terminal escapes": ("safetensors", config_with(model_type=ESCAPE + "roberta"), "config.json",
                                         r"says model_type '\x1b[2J\x1b[31mroberta'"),
    "config a list": ("safetensors", write_bytes("config.json", b"[]"), "config.json", "not a BERT config"),
    "config nested 10**5 deep": ("safetensors", write_bytes("config.json", b"[" * 10**5 + b"]" * 10**5), "config.json",
                                 "nested too deep"),
    "config of 2 MB": ("safetensors", write_bytes("config.json", b" " * 2**21 + b"{}"), "config.json",
                       "is 2097154 bytes; expected at most 1048576"),
    "config not UTF-8": ("safetensors", write_bytes("config.json", b'{\n"vocab_size": "\xff"}'), "config.json",
                         "line 2: not UTF-8 text (byte 0xff)"),
    "vocab not UTF-8": ("safetensors", write_bytes("vocab.txt", b"[PAD]\n[CLS]\n\xc3(\n"), "vocab.txt",
                        "line 3: not UTF-8 text"),
    "vocab without [CLS]": ("safetensors", vocab_with("[CLS]", "[CLS2]"), "vocab.txt",
                            "has no [CLS]: the tokenizer needs [CLS], [SEP], [UNK]"),
    "vocab without [UNK]": ("safetensors", vocab_with("[UNK]", "[UNK2]"), "vocab.txt", "has no [UNK]"),
    "safetensors F8_E4M3": ("safetensors", safetensors_of_dtype("F8_E4M3"), "model.safetensors",
                            "tensor embeddings.word_embeddings.weight is F8_E4M3, which is not read"),
    "safetensors BF16": ("safetensors", safetensors_of_dtype("BF16"), "model.safetensors", "is BF16, which is not"),
    "weights beyond the declared model": ("safetensors", lambda folder: write_hub_folder(
        folder, SMALL_CONFIG, {**small_bert_tensors(), "extra": np.zeros(2**22, np.float32)}), "model.safetensors",
        "more than 8 bytes for each of the 718730 parameters"),
    "index value a number": ("sharded-safetensors", edit_json("model.safetensors.index.json", lambda index: {
        **index, "weight_map": {"embeddings.word_embeddings.weight": 7}}), "model.safetensors.index.json",
        "is not a weights index"),
    "index nested 10**5 deep": ("sharded-safetensors", write_bytes("model.safetensors.index.json",
                                                                   b"[" * 10**5 + b"]" * 10**5),
                                "model.safetensors.index.json", "nested too deep"),
    "shard ../other_model": ("sharded-safetensors", index_naming("../other_model/model.safetensors"),
                             "model.safetensors.index.json", "names the shard ../other_model/model.safetensors: "
                             "expected a plain .safetensors file name in the same folder"),
    "shard an absolute path": ("sharded-safetensors", lambda folder: index_naming(outside_shard(folder))(folder),
                               "model.safetensors.index.json", "other_model/model.safetensors: expected a plain"),
    "shard a .bin in a safetensors index": ("sharded-safetensors", index_naming("pytorch_model.bin"),
                                            "model.safetensors.index.json", "expected a plain .safetensors file name"),
    "shard with terminal escapes": ("sharded-safetensors", index_naming(ESCAPE + ".safetensors"),
                                    "model.safetensors.index.json", r"names the shard \x1b[2J\x1b[31m.safetensors, "
                                    "which is missing"),
}


def assert_one_line_naming(message, path, expected):
    assert "\n" not in message and "\x1b" not in message and len(message) < 500
    assert path in message and expected in message, message


@pytest.mark.parametrize("name", HUB_BREAKS)
def test_a_broken_or_hostile_hub_file_is_refused_in_one_line(tmp_path, small_tensors, name):
    layout, edit, file_name, expected = HUB_BREAKS[name]
    folder = write_hub_folder(str(tmp_path / "hub"), SMALL_CONFIG, small_tensors, layout)
    if layout == "sharded-safetensors":
        outside_shard(folder)  # there to be read, were the index followed out of the folder
    edit(folder)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as refusal:
            find_checkpoint(folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line_naming(str(refusal.value), os.path.join(folder, file_name), expected)
    assert peak < 64 * 2**20  # 100000 layers took 650 MB before they were refused


@pytest.mark.parametrize("file_name, edit, expected", [
    ("bert_config.json", edit_json("bert_config.json", lambda config: {**config, "num_hidden_layers": 100000}),
     "num_hidden_layers is 100000"),
    ("bert_config.json", edit_json("bert_config.json", lambda config: {**config, "hidden_act": "gelu_new"}),
     "hidden_act is 'gelu_new'; keras-bert computes GELU (gelu)"),
    ("vocab.txt", vocab_with("[SEP]", "[SEP2]"), "has no [SEP]"),
], ids=["100000 layers", "an activation keras-bert does not know", "vocab without [SEP]"])
def test_googles_layout_is_checked_alike(tmp_path, tiny_checkpoint, file_name, edit, expected):
    folder = str(tmp_path / "google")
    shutil.copytree(tiny_checkpoint.bert_dir, folder)
    edit(folder)
    with pytest.raises(CheckpointError) as refusal:
        find_checkpoint(folder)
    assert_one_line_naming(str(refusal.value), os.path.join(folder, file_name), expected)


def test_a_google_data_file_cut_short_is_refused_in_one_line(tmp_path, tiny_checkpoint):
    folder = str(tmp_path / "google")
    shutil.copytree(tiny_checkpoint.bert_dir, folder)
    data_path = os.path.join(folder, "bert_model.ckpt.data-00000-of-00001")
    with open(data_path, "r+b") as data:
        data.truncate(os.path.getsize(data_path) // 2)
    with pytest.raises(CheckpointError) as refusal:
        load_bert(find_checkpoint(folder))
    assert_one_line_naming(str(refusal.value), os.path.join(folder, "bert_model.ckpt"), "cannot read checkpoint")


# ---------------------------------------------------------------------------------------------
# End to end: the script prints one line and exits 2
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attack", ["a key nested 10**6 tuples deep", "shard ../other_model"])
def test_the_script_exits_2_with_one_error_line(tmp_path, small_tensors, attack):
    if attack in BIN_ATTACKS:
        folder = write_hub_folder(str(tmp_path / "hub"), SMALL_CONFIG, small_tensors)
        os.remove(os.path.join(folder, "model.safetensors"))
        path = write_attack(attack, tmp_path / "hub" / "pytorch_model.bin")
        expected = BIN_ATTACKS[attack]
    else:
        layout, edit, file_name, expected = HUB_BREAKS[attack]
        folder = write_hub_folder(str(tmp_path / "hub"), SMALL_CONFIG, small_tensors, layout)
        outside_shard(folder)
        edit(folder)
        path = os.path.join(folder, file_name)
    result = subprocess.run(
        [sys.executable, "sentiment.py", "--bert-dir", folder, "--output-dir", str(tmp_path / "out"),
         "--predict", "好"], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)
    assert_one_error_line(result, path, expected)


def test_the_views_real_state_dicts_hold_still_load(tmp_path):
    """transformers' position_ids (stride 0 over its first dimension), a tied matrix, a transposed
    view and an empty tensor are within the limits."""
    positions, weights = np.arange(512, dtype=np.int64), np.arange(6, dtype=np.float32)
    tensors = {"embeddings.position_ids": ("LongStorage", "0", 512, 0, (1, 512), (0, 1)),
               "embeddings.word_embeddings.weight": ("FloatStorage", "1", 6, 0, (2, 3), (3, 1)),
               "cls.predictions.decoder.weight": ("FloatStorage", "1", 6, 0, (2, 3), (3, 1)),
               "transposed": ("FloatStorage", "1", 6, 0, (3, 2), (1, 3)),
               "empty": ("FloatStorage", "1", 6, 6, (0, 768), (768, 1))}
    pickled = pickle_state_dict((name, pickle_tensor(*tensor, legacy=False)) for name, tensor in tensors.items())
    path = write_zip(tmp_path / "pytorch_model.bin", pickled, {"0": positions.tobytes(), "1": weights.tobytes()})
    from torch_weights import read_torch_state_dict

    arrays = read_torch_state_dict(path)
    np.testing.assert_array_equal(arrays["embeddings.position_ids"], positions[None])
    np.testing.assert_array_equal(arrays["cls.predictions.decoder.weight"], weights.reshape(2, 3))
    np.testing.assert_array_equal(arrays["transposed"], weights.reshape(2, 3).T)
    assert arrays["empty"].shape == (0, 768)
