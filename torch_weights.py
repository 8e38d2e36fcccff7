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

A downloaded file is untrusted, so before anything is unpickled or allocated it is checked against
limits that a real state dict stays far below (see "Checking a file before reading it"): the
pickle's opcodes are walked without running them, each zip entry must be stored as torch stores
it, and a storage must be held whole by the file before its bytes are read.
"""
import collections
import io
import math
import os
import pickle
import pickletools
import zipfile
from typing import NamedTuple

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
ZIP_MAGIC = b"PK\x03\x04"

# Limits no real state dict comes near (BERT-base: a 25 KB data.pkl, 199 tensors, nesting 3 deep).
MAX_PICKLE_BYTES = 4 * 2**20  # ~125 bytes a tensor: 4 MiB is ~33,000 tensors
MAX_PICKLE_NESTING = 32
MAX_PICKLE_MEMO_INDEX = 2**20
MAX_PICKLE_STACK = 2**16
MAX_PICKLE_ITEMS = 2**20  # values put into tuples, lists and dicts, all together
MAX_BYTEORDER_BYTES = 16
MAX_DIMENSIONS = 32
# Copies made for non-contiguous and bfloat16 tensors, against the storages' bytes: bfloat16 widens
# to twice its bytes, and a tied bfloat16 matrix (word embeddings and decoder) is widened twice.
MAX_COPIED_BYTES_PER_STORAGE_BYTE = 4
PRINTED_TEXT_LIMIT = 100

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

    @property
    def itemsize(self):
        return self.numpy_dtype("little").itemsize


class StorageRef(NamedTuple):
    """What the pickle's persistent id says of one storage; its bytes are read after unpickling."""

    key: str
    storage_type: StorageType
    numel: int

    @property
    def nbytes(self):
        return self.numel * self.storage_type.itemsize


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
                f"{self.path}: refusing to load: its pickle asks for {printable(module + '.' + name)}, "
                f"which a weights file never needs")
        return allowed

    def persistent_load(self, pid):
        # zip: ('storage', type, key, location, numel); legacy adds a view that torch >= 1.0 leaves None
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage" and pid[5:] in ((), (None,))
                and isinstance(pid[1], StorageType) and isinstance(pid[2], str) and is_index(pid[4])):
            raise UnsafeCheckpointError(
                f"{self.path}: not a state dict: its pickle refers to something other than a storage: {printable(pid)}")
        storage = StorageRef(pid[2], pid[1], pid[4])
        if self.storages.setdefault(storage.key, storage) != storage:
            raise UnsafeCheckpointError(f"{self.path}: storage {printable(storage.key)} is declared twice, differently")
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
            entries = {info.filename: info for info in archive.infolist()}
            pickled = read_small_entry(archive, entries[prefix + "data.pkl"], MAX_PICKLE_BYTES, path)
            unpickler = StateDictUnpickler(io.BytesIO(pickled[:checked_pickle_length(pickled, path)]), path)
            state_dict = unpickle(unpickler)
            # Files from older torch have no byteorder record; torch.load then assumes little-endian too.
            byteorder = "little"
            if prefix + "byteorder" in entries:
                record = read_small_entry(archive, entries[prefix + "byteorder"], MAX_BYTEORDER_BYTES, path)
                byteorder = record.decode("ascii", "replace")
            if byteorder not in ("little", "big"):
                raise UnsafeCheckpointError(f"{path}: unknown byteorder {printable(byteorder)}")
            storages = {}
            for key, storage in unpickler.storages.items():
                entry = entries.get(prefix + "data/" + key)
                if entry is None:
                    raise UnsafeCheckpointError(f"{path}: storage {printable(key)} is missing from the archive")
                check_stored_entry(entry, path)
                check_storage_is_held(storage, entry.file_size, path)
                with archive.open(entry) as data:
                    storages[key] = read_storage(data, storage, byteorder, path)
    except (zipfile.BadZipFile, EOFError) as error:  # EOFError: a local entry cut short
        raise UnsafeCheckpointError(f"{path}: damaged or truncated zip archive ({printable(str(error))})") from None
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
        unpickler = next_unpickler(file, path)
    except UnsafeCheckpointError:  # not a pickle torch writes, so not its legacy format
        return False
    try:
        return unpickler.load() == LEGACY_MAGIC_NUMBER
    except UnsafeCheckpointError:
        raise
    except Exception:  # a pickle, but not of a number
        return False


def read_legacy_format(file, path):
    if unpickle(next_unpickler(file, path)) != LEGACY_PROTOCOL_VERSION:
        raise UnsafeCheckpointError(f"{path}: legacy torch format of an unknown protocol version")
    unpickle(next_unpickler(file, path))  # sys_info: the storages are little-endian whatever it says
    unpickler = next_unpickler(file, path)
    state_dict = unpickle(unpickler)
    storage_keys = unpickle(next_unpickler(file, path))
    if not (isinstance(storage_keys, list) and all(isinstance(key, str) for key in storage_keys)
            and set(storage_keys) == set(unpickler.storages)):
        raise UnsafeCheckpointError(f"{path}: its list of storages does not match the tensors' storages")
    file_size = os.fstat(file.fileno()).st_size
    storages = {}
    for key in storage_keys:
        count = int.from_bytes(file.read(8), "little")
        if count != unpickler.storages[key].numel:
            raise UnsafeCheckpointError(f"{path}: storage {printable(key)} is damaged or truncated")
        check_storage_is_held(unpickler.storages[key], file_size - file.tell(), path)
        storages[key] = read_storage(file, unpickler.storages[key], "little", path)
    return arrays_from_state_dict(state_dict, storages, path)


def next_unpickler(file, path):
    """An unpickler over the pickle at the file's position, once it is checked; the file is left after it."""
    start = file.tell()
    head = file.read(MAX_PICKLE_BYTES)
    length = checked_pickle_length(head, path)
    file.seek(start + length)
    return StateDictUnpickler(io.BytesIO(head[:length]), path)


def unpickle(unpickler):
    """One pickle through the allow-list; a malformed one is refused like a forbidden one."""
    try:
        return unpickler.load()
    except UnsafeCheckpointError:
        raise
    except Exception as error:  # allowed globals called with nonsense, cut-off data, bad opcodes
        raise UnsafeCheckpointError(
            f"{unpickler.path}: not a readable state dict pickle ({printable(repr(error))})") from None


def read_storage(file, storage, byteorder, path):
    """A storage's elements as a flat writable native-order array, refusing a short read."""
    dtype = storage.storage_type.numpy_dtype(byteorder)
    buffer = bytearray(storage.nbytes)
    if file.readinto(buffer) != len(buffer):
        raise UnsafeCheckpointError(
            f"{path}: storage {printable(storage.key)} is truncated (its tensors need {len(buffer)} bytes)")
    return np.frombuffer(buffer, dtype).astype(dtype.newbyteorder("="), copy=False)


def arrays_from_state_dict(state_dict, storages, path):
    if not isinstance(state_dict, dict):
        raise UnsafeCheckpointError(f"{path}: holds a {type(state_dict).__name__}, not a state dict")
    copy_budget = MAX_COPIED_BYTES_PER_STORAGE_BYTE * sum(flat.nbytes for flat in storages.values())
    arrays = {}
    for name, tensor in state_dict.items():
        if not (isinstance(name, str) and isinstance(tensor, TensorRef)):
            raise UnsafeCheckpointError(
                f"{path}: not a state dict of tensors: '{printable(name)}' holds a {type(tensor).__name__}")
        arrays[name] = array_from_tensor(tensor, storages, path, name)
        if not np.may_share_memory(arrays[name], storages[tensor.storage.key]):
            copy_budget -= arrays[name].nbytes
            if copy_budget < 0:
                raise UnsafeCheckpointError(f"{path}: its tensors view the same storages over and over: copying "
                                            f"them would take more than {MAX_COPIED_BYTES_PER_STORAGE_BYTE} times "
                                            f"the file's bytes")
    return arrays


def array_from_tensor(tensor, storages, path, name):
    storage, offset, size, stride = tensor
    if not (isinstance(storage, StorageRef) and is_index(offset) and is_index_tuple(size)
            and is_index_tuple(stride) and len(size) == len(stride)):
        raise UnsafeCheckpointError(f"{path}: tensor '{printable(name)}' is not a plain view of a storage")
    flat = storages[storage.key]
    check_view_fits_storage(offset, size, stride, flat.size, path, name)
    if 0 in size:  # no element to read: any offset and stride are fine
        view = np.empty(size, flat.dtype)
    else:
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=[step * flat.itemsize for step in stride])
    if storage.storage_type.dtype == BFLOAT16:
        return (view.astype(np.uint32) << 16).view(np.float32)
    return view if view.flags.c_contiguous else view.copy()


def is_index(value):
    return type(value) is int and value >= 0  # not bool, not a subclass the pickle could make


def is_index_tuple(value):
    return isinstance(value, tuple) and all(is_index(item) for item in value)


# ---------------------------------------------------------------------------------------------
# Checking a file before reading it: nothing is unpickled or allocated that a state dict would not need
# ---------------------------------------------------------------------------------------------

def printable(value, limit=PRINTED_TEXT_LIMIT):
    """`value` fit for one line of an error message: a string with its non-printable characters
    (terminal escapes, newlines) escaped and cut to `limit`; None, a bool, a float or a 64-bit int
    as Python writes it; anything else by its type's name (its repr could be any length)."""
    if value is None or type(value) in (bool, float) or (type(value) is int and value.bit_length() <= 64):
        return repr(value)
    if not isinstance(value, str):
        return "a value of type " + type(value).__name__
    text = "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
                   for char in value[:limit])
    return text + ("..." if len(value) > limit else "")


def check_stored_entry(entry, path):
    """torch stores every entry of its zip as is: a compressed or encrypted one is not its, and is not inflated."""
    if entry.flag_bits & 0x1:
        raise UnsafeCheckpointError(f"{path}: a zip, but not torch's: {printable(entry.filename)} is encrypted")
    if entry.compress_type != zipfile.ZIP_STORED:
        raise UnsafeCheckpointError(f"{path}: a zip, but not torch's: {printable(entry.filename)} is compressed "
                                    f"(method {entry.compress_type}), while torch stores its entries as they are")
    if entry.compress_size != entry.file_size or entry.header_offset + entry.file_size > os.path.getsize(path):
        raise UnsafeCheckpointError(
            f"{path}: damaged zip archive: {printable(entry.filename)} claims more bytes than the file holds")


def read_small_entry(archive, entry, limit, path):
    check_stored_entry(entry, path)
    if entry.file_size > limit:
        raise UnsafeCheckpointError(f"{path}: {printable(entry.filename)} is {entry.file_size} bytes; a state dict's "
                                    f"is under {limit}")
    return archive.read(entry)


def check_storage_is_held(storage, available_bytes, path):
    """Before its buffer is allocated: a storage cannot claim more bytes than the file holds for it."""
    if storage.nbytes > available_bytes:
        raise UnsafeCheckpointError(f"{path}: storage {printable(storage.key)} is truncated: it claims "
                                    f"{storage.numel} elements ({storage.nbytes} bytes), the file holds "
                                    f"{available_bytes} bytes for it")


def check_view_fits_storage(offset, size, stride, storage_numel, path, name):
    """No tensor addresses more elements than its storage holds, nor any beyond it. A stride-0 view
    over fewer elements (transformers' position_ids: shape (1, 512), stride (0, 1)) is fine, and an
    empty tensor reads nothing, whatever its offset and strides."""
    elements = math.prod(size)
    if len(size) > MAX_DIMENSIONS or not elements and math.prod(length for length in size if length) > 2**32:
        raise UnsafeCheckpointError(f"{path}: tensor '{printable(name)}' has a shape numpy cannot make")
    if elements and max(elements, offset, *stride) > storage_numel:
        raise UnsafeCheckpointError(f"{path}: tensor '{printable(name)}' addresses more elements than its storage "
                                    f"holds ({storage_numel})")
    last = offset + sum((length - 1) * step for length, step in zip(size, stride))
    if elements and last >= storage_numel:
        raise UnsafeCheckpointError(f"{path}: tensor '{printable(name)}' reaches past the end of its storage")


# The opcodes of protocol 2 that torch.save writes (and pickle.dumps, for the legacy header), by what they push.
PUSHING_OPCODES = {
    "BININT": "int", "BININT1": "int", "BININT2": "int", "LONG1": "int", "BINFLOAT": "float",
    "BINUNICODE": "str", "SHORT_BINSTRING": "str", "BINSTRING": "str",  # Python 2's str: old legacy files
    "NEWTRUE": "bool", "NEWFALSE": "bool", "NONE": "None",
    "EMPTY_TUPLE": "tuple", "EMPTY_LIST": "list", "EMPTY_DICT": "dict",
}
TUPLE_OPCODES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


class PickledValue(NamedTuple):
    """What the check knows of a value the pickle would build: its kind, nesting and length (tuples)."""

    kind: str  # "int", "str", ..., "global collections.OrderedDict", "object" (whatever a call returns)
    depth: int = 0
    length: int = 0


def checked_pickle_length(data, path):
    """The length of the pickle at the start of `data`, once walking its opcodes, without running
    them, shows that it builds only what a state dict is made of, within the limits above: the
    opcodes torch writes, dictionary keys that are strings (no hash collisions), nesting (Python
    hashes a nested tuple by recursing in C), memo indices, items and stack (which the unpickler
    allocates as told). Raises UnsafeCheckpointError otherwise."""
    stack, marks, memo = [], [], {}
    items = 0

    def refuse(reason):
        raise UnsafeCheckpointError(f"{path}: refusing its pickle: {reason}")

    def pop(count):
        floor = marks[-1] if marks else 0
        if len(stack) - count < floor:
            refuse("it takes more values than it pushed")
        values = stack[len(stack) - count:]
        del stack[len(stack) - count:]
        return values

    def pop_to_mark():
        if not marks:
            refuse("it closes a mark it never opened")
        values = stack[marks[-1]:]
        del stack[marks.pop():]
        return values

    def container(kind, values):
        nonlocal items
        items += len(values)
        if items > MAX_PICKLE_ITEMS:
            refuse(f"it holds more than {MAX_PICKLE_ITEMS} items")
        depth = 1 + max((value.depth for value in values), default=0)
        if depth > MAX_PICKLE_NESTING:
            refuse(f"it nests values more than {MAX_PICKLE_NESTING} deep")
        return PickledValue(kind, depth, len(values))

    def add_to_top(kinds, values):
        target = pop(1)[0]
        if target.kind not in kinds:
            refuse(f"it adds items to a {target.kind}")
        added = container(target.kind, values)
        stack.append(target._replace(depth=max(target.depth, added.depth)))

    try:
        for opcode, arg, position in pickletools.genops(data):
            name = opcode.name
            if name in PUSHING_OPCODES:
                stack.append(PickledValue(PUSHING_OPCODES[name], depth=1 if name.startswith("EMPTY") else 0))
            elif name == "GLOBAL":
                stack.append(PickledValue("global " + printable(arg.replace(" ", "."))))
            elif name == "MARK":
                marks.append(len(stack))
            elif name == "TUPLE":
                stack.append(container("tuple", pop_to_mark()))
            elif name in TUPLE_OPCODES:
                stack.append(container("tuple", pop(TUPLE_OPCODES[name])))
            elif name in ("APPEND", "APPENDS"):
                add_to_top(("list",), pop(1) if name == "APPEND" else pop_to_mark())
            elif name in ("SETITEM", "SETITEMS"):
                pairs = pop(2) if name == "SETITEM" else pop_to_mark()
                if len(pairs) % 2 or any(key.kind != "str" for key in pairs[::2]):
                    refuse("a dictionary key that is not a string")
                add_to_top(("dict", "object"), pairs)
            elif name in ("BINPUT", "LONG_BINPUT"):
                if arg >= MAX_PICKLE_MEMO_INDEX:
                    refuse(f"memo index {arg} (a state dict's are under {MAX_PICKLE_MEMO_INDEX})")
                memo[arg] = pop(1)[0]
                stack.append(memo[arg])
            elif name in ("BINGET", "LONG_BINGET"):
                if arg not in memo:
                    refuse(f"memo index {arg} is read before it is written")
                stack.append(memo[arg])
            elif name == "REDUCE":
                function, arguments = pop(2)
                if not function.kind.startswith("global ") or arguments.kind != "tuple":
                    refuse(f"it calls a {function.kind} with a {arguments.kind}")
                if function.kind == "global collections.OrderedDict" and arguments.length:
                    refuse("its OrderedDict is built from arguments, not item by item")  # hashing keys no check saw
                stack.append(PickledValue("object", arguments.depth))
            elif name == "BUILD":
                target, _ = pop(2)
                if target.kind != "object":  # on a function, a state would rewrite attributes such as its defaults
                    refuse(f"it alters a {target.kind}")
                stack.append(target)
            elif name == "BINPERSID":
                stack.append(PickledValue("object", pop(1)[0].depth))
            elif name == "PROTO":
                if arg != 2:
                    refuse(f"pickle protocol {arg}; torch writes protocol 2")
            elif name == "STOP":
                if len(stack) != 1 or marks:
                    refuse("it ends with a value half built")
                return position + 1
            else:
                refuse(f"opcode {name}, which torch never writes")
            if len(stack) + len(marks) > MAX_PICKLE_STACK:
                refuse(f"it stacks more than {MAX_PICKLE_STACK} values")
    except UnsafeCheckpointError:
        raise
    except ValueError as error:  # from genops: an unknown opcode, an argument cut short, no STOP
        if len(data) >= MAX_PICKLE_BYTES:
            refuse(f"it is longer than {MAX_PICKLE_BYTES} bytes, and a state dict's is far shorter")
        refuse(printable(str(error)))
