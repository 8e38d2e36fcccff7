"""Find, check or make the BERT checkpoint that the three scripts fine-tune.
Beside the blog (docs/blog_map.md, "1. Loading BERT and the tokenizer"): its `config_path` and
`checkpoint_path` are `find_checkpoint`, its `load_trained_model_from_checkpoint` call is `load_bert`
(keras-bert's model and loader, with the embeddings' dropout moved to where Google's BERT has it).

Which checkpoint a script uses, first match wins:
1. `--bert-dir DIR`: a folder as in Google's zip (`bert_config.json`, `vocab.txt`,
   `bert_model.ckpt.index`, `bert_model.ckpt.data-*`), or as the Hugging Face Hub has them
   (`config.json`, `vocab.txt` or only `tokenizer.json`, `model.safetensors` or `pytorch_model.bin`,
   maybe sharded);
   or, when no such folder exists, a Hub id `ORG/NAME[@REVISION]`, fetched into the Hub's cache;
2. `$BERT_DIR`, the same;
3. `chinese_L-12_H-768_A-12/` beside the scripts (where Google's zip unpacks);
4. else a tiny random BERT in Google's exact TF1 format, written once into `.cache/` from a
   fixed seed, so that everything runs with nothing downloaded. Its numbers mean nothing.

Whatever the layout, `load_bert(find_checkpoint(...))` gives the same keras-bert backbone.
"""
import contextlib
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import warnings

import numpy as np

from tokenizer import DEFAULT_VOCAB_PATH, UNKNOWN_TOKEN, load_vocab
from torch_weights import printable

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BERT_DIR = os.path.join(PROJECT_DIR, "chinese_L-12_H-768_A-12")
TINY_BERT_DIR = os.path.join(PROJECT_DIR, ".cache", "tiny_chinese_bert")
CHECKPOINT_NAME = "bert_model.ckpt"
REAL_CHECKPOINT_URL = "https://storage.googleapis.com/bert_models/2018_11_03/chinese_L-12_H-768_A-12.zip"
# What the banner suggests: the blog's weights, and a real BERT small enough for a laptop CPU.
SUGGESTED_HUB_IDS = ("google-bert/bert-base-chinese", "uer/chinese_roberta_L-4_H-512")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
# The weights files of a Hub folder, in the order we take them: safetensors first (no pickle).
HUB_WEIGHTS_FILES = (
    ("model.safetensors", "safetensors"),
    ("model.safetensors.index.json", "sharded safetensors"),
    ("pytorch_model.bin", "PyTorch .bin"),
    ("pytorch_model.bin.index.json", "sharded PyTorch .bin"),
)
# A Hub folder with only tokenizer.json gets its vocab.txt written here, named by the file's hash (the
# folder itself may be read-only). A BERT's tokenizer.json is under a megabyte; the bound stops a huge file.
TOKENIZER_JSON_VOCAB_DIR = os.path.join(PROJECT_DIR, ".cache", "vocab_from_tokenizer_json")
MAX_TOKENIZER_JSON_BYTES = 64 * 2**20
# transformers' names of BERT's activation; keras-bert computes GELU in the tanh form of Google's BERT.
GELU_NAMES = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# A config's sizes, (least, most): far beyond any BERT (BERT-large: 24 layers, hidden 1024), and far
# below what would take the machine's memory before a weight is read.
CONFIG_SIZE_RANGES = {
    "vocab_size": (1, 2**20), "hidden_size": (1, 16384), "num_hidden_layers": (1, 256),
    "num_attention_heads": (1, 1024), "intermediate_size": (1, 65536), "max_position_embeddings": (1, 65536),
    "type_vocab_size": (1, 16),
}
CONFIG_DROPOUTS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
# The tokens the tokenizer looks up in every sequence: keras-bert's [CLS], [SEP], and [UNK] for the rest.
TOKENIZER_TOKENS = ("[CLS]", "[SEP]", UNKNOWN_TOKEN)
# What numpy can hold of safetensors' dtypes (not BF16, not the F8s).
NUMPY_SAFETENSORS_DTYPES = ("F64", "F32", "F16", "I64", "I32", "I16", "I8", "U8", "BOOL")
MAX_CONFIG_BYTES = 2**20  # a real config.json is about 1 KB
MAX_INDEX_BYTES = 64 * 2**20  # a shard index is about 100 bytes a tensor
MAX_VOCAB_BYTES = 64 * 2**20  # Google's Chinese vocab.txt is 110 KB
# Weights files may hold the declared model in float64 at most (float32 is 4 bytes a parameter),
# so that reading them takes memory in proportion to the model the config declares.
MAX_WEIGHTS_BYTES_PER_PARAMETER = 8

# The real checkpoint's config with small sizes: hidden 128, 2 layers, 2 heads.
TINY_BERT_CONFIG = {
    "attention_probs_dropout_prob": 0.1,
    "directionality": "bidi",
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 128,
    "initializer_range": 0.02,
    "intermediate_size": 512,
    "max_position_embeddings": 512,
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "pooler_fc_size": 128,
    "pooler_num_attention_heads": 2,
    "pooler_num_fc_layers": 3,
    "pooler_size_per_head": 64,
    "pooler_type": "first_token_transform",
    "type_vocab_size": 2,
    "vocab_size": 21128,
}


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used; the message says which file and why."""


class BertCheckpoint:
    """The files of one Google-format checkpoint, and whether it is the tiny stand-in."""

    layout = "Google TF1 checkpoint"
    config_name = "bert_config.json"
    activations = ("gelu",)  # keras-bert reads Google's config itself, and knows GELU by this name

    def __init__(self, bert_dir, is_tiny=False, hub_id=None):
        self.bert_dir = bert_dir
        self.is_tiny = is_tiny
        self.hub_id = hub_id  # "ORG/NAME" when fetched from the Hub, for the first lines of a run
        self.config_path = os.path.join(bert_dir, self.config_name)
        self.vocab_path = os.path.join(bert_dir, "vocab.txt")
        self.checkpoint_path = os.path.join(bert_dir, CHECKPOINT_NAME)

    def config(self):
        """The config, once its sizes, dropouts and activation are ones we can build (else CheckpointError)."""
        config = read_json(self.config_path, MAX_CONFIG_BYTES)
        check_config_values(config, self.config_path, self.activations)
        return config

    def describe(self):
        """One line for the start of a run: where the weights come from, their format and size."""
        config = self.config()
        source = self.bert_dir
        if self.hub_id:  # the Hub's cache keeps each commit in snapshots/<commit hash>
            source = "%s at commit %s (%s)" % (self.hub_id, os.path.basename(self.bert_dir), self.bert_dir)
        return "checkpoint: %s%s, %s, %d layers, hidden %d" % (
            source, " (tiny, RANDOM weights)" if self.is_tiny else "", self.layout,
            config["num_hidden_layers"], config["hidden_size"])


class HubCheckpoint(BertCheckpoint):
    """A folder as the Hugging Face Hub has it: config.json, vocab.txt (or only tokenizer.json) and one
    weights file (or shards)."""

    config_name = "config.json"
    activations = GELU_NAMES

    def __init__(self, bert_dir, hub_id=None):
        super().__init__(bert_dir, hub_id=hub_id)
        tokenizer_json_path = os.path.join(bert_dir, "tokenizer.json")
        if not os.path.isfile(self.vocab_path) and os.path.isfile(tokenizer_json_path):
            self.vocab_path = vocab_from_tokenizer_json(tokenizer_json_path)
        self.weights_path, self.layout = next(
            ((os.path.join(bert_dir, name), layout) for name, layout in HUB_WEIGHTS_FILES
             if os.path.isfile(os.path.join(bert_dir, name))), (None, "no weights"))

    def weights_files(self):
        """The files that hold the tensors: the weights file, or the shards its index names."""
        if not self.weights_path.endswith(".index.json"):
            return [self.weights_path]
        index = read_json(self.weights_path, MAX_INDEX_BYTES)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not (isinstance(weight_map, dict) and weight_map
                and all(isinstance(shard, str) for shard in weight_map.values())):
            raise CheckpointError("%s is not a weights index: expected a weight_map of tensor name: shard file name"
                                  % self.weights_path)
        shards = sorted(set(weight_map.values()))
        for shard in shards:
            check_shard_name(shard, self.weights_path)
            if not os.path.isfile(os.path.join(self.bert_dir, shard)):
                raise CheckpointError("%s names the shard %s, which is missing from its folder"
                                      % (self.weights_path, printable(shard)))
        return [os.path.join(self.bert_dir, shard) for shard in shards]

    @contextlib.contextmanager
    def open_tensors(self):
        """({transformers' name: shape}, load(name) -> numpy array, file of name). safetensors stay
        memory-mapped until a tensor is asked for; a .bin is read through an allow-list that never
        runs its pickle."""
        from safetensors import SafetensorError, safe_open

        from torch_weights import UnsafeCheckpointError, read_torch_state_dict

        shapes, loaders, files = {}, {}, {}
        with contextlib.ExitStack() as open_files:
            for path in self.weights_files():
                try:
                    if path.endswith(".safetensors"):
                        weights = open_files.enter_context(safe_open(path, framework="numpy"))
                        for name in weights.keys():
                            check_safetensors_dtype(weights.get_slice(name).get_dtype(), name, path)
                            shapes[name] = list(weights.get_slice(name).get_shape())
                            loaders[name] = functools.partial(weights.get_tensor, name)
                            files[name] = path
                    else:
                        for name, array in read_torch_state_dict(path).items():
                            shapes[name], loaders[name], files[name] = list(array.shape), (lambda a=array: a), path
                except UnsafeCheckpointError as error:
                    raise CheckpointError(str(error))
                except (SafetensorError, OSError, ValueError, TypeError) as error:
                    raise CheckpointError("cannot read %s: %s" % (path, printable(str(error), limit=300)))

            def load(name):
                try:
                    return loaders[name]()
                except (SafetensorError, OSError, ValueError, TypeError) as error:
                    raise CheckpointError("cannot read tensor %s from %s: %s" % (
                        printable(name), files[name], printable(str(error), limit=300)))

            yield shapes, load, files


def wordpiece_tokens(tokenizer_json_path):
    """The tokens of a tokenizer.json's WordPiece model in id order: the lines its vocab.txt would have."""
    def refuse(reason):
        return CheckpointError("%s cannot give a BERT vocabulary: %s" % (tokenizer_json_path, reason))

    if os.path.getsize(tokenizer_json_path) > MAX_TOKENIZER_JSON_BYTES:
        raise refuse("it has %d bytes, over the %d we read" % (os.path.getsize(tokenizer_json_path),
                                                                MAX_TOKENIZER_JSON_BYTES))
    try:
        with open(tokenizer_json_path, encoding="utf-8") as reader:
            model = json.load(reader)["model"]
        model_type, vocab = model.get("type"), model.get("vocab")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        raise refuse("it is not a tokenizers JSON file with a \"model\" (%s)" % str(error)[:200])
    if model_type != "WordPiece":
        raise refuse("its tokenizer model is %s, not BERT's WordPiece" % repr(model_type)[:100])
    if not isinstance(vocab, dict):
        raise refuse("its WordPiece vocab is a %s, not {token: id}" % type(vocab).__name__)
    if sorted(value for value in vocab.values() if type(value) is int) != list(range(len(vocab))):
        raise refuse("its WordPiece vocab does not number its %d tokens 0 to %d, each once"
                     % (len(vocab), len(vocab) - 1))
    tokens = sorted(vocab, key=vocab.get)
    for token in tokens:
        if "\n" in token or "\r" in token:  # vocab.txt is one token a line
            raise refuse("token %d holds a line break" % vocab[token])
    return tokens


def vocab_from_tokenizer_json(tokenizer_json_path):
    """The path of a vocab.txt with the WordPiece vocabulary of tokenizer.json, written once into .cache/."""
    digest = hashlib.sha256()
    with open(tokenizer_json_path, "rb") as reader:
        for block in iter(lambda: reader.read(2**20), b""):
            digest.update(block)
    vocab_path = os.path.join(TOKENIZER_JSON_VOCAB_DIR, digest.hexdigest()[:16], "vocab.txt")
    if not os.path.isfile(vocab_path):
        tokens = wordpiece_tokens(tokenizer_json_path)
        os.makedirs(os.path.dirname(vocab_path), exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=os.path.dirname(vocab_path),
                                         delete=False) as writer:  # renamed into place: never half written
            writer.write("".join(token + "\n" for token in tokens))
        os.replace(writer.name, vocab_path)
    return vocab_path


def google_variable_shapes(config):
    """{name: shape} of every variable in a Google BERT checkpoint with this config."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    vocab = config["vocab_size"]

    def dense(prefix, n_in, n_out):
        return {prefix + "/kernel": [n_in, n_out], prefix + "/bias": [n_out]}

    def layer_norm(prefix):
        return {prefix + "/LayerNorm/beta": [hidden], prefix + "/LayerNorm/gamma": [hidden]}

    shapes = {
        "bert/embeddings/word_embeddings": [vocab, hidden],
        "bert/embeddings/token_type_embeddings": [config["type_vocab_size"], hidden],
        "bert/embeddings/position_embeddings": [config["max_position_embeddings"], hidden],
        **layer_norm("bert/embeddings"),
        **dense("bert/pooler/dense", hidden, hidden),
        **dense("cls/predictions/transform/dense", hidden, hidden),
        **layer_norm("cls/predictions/transform"),
        "cls/predictions/output_bias": [vocab],
        "cls/seq_relationship/output_weights": [2, hidden],
        "cls/seq_relationship/output_bias": [2],
    }
    for i in range(config["num_hidden_layers"]):
        layer = "bert/encoder/layer_%d" % i
        for part in ("query", "key", "value"):
            shapes.update(dense(layer + "/attention/self/" + part, hidden, hidden))
        shapes.update(dense(layer + "/attention/output/dense", hidden, hidden))
        shapes.update(layer_norm(layer + "/attention/output"))
        shapes.update(dense(layer + "/intermediate/dense", hidden, inner))
        shapes.update(dense(layer + "/output/dense", inner, hidden))
        shapes.update(layer_norm(layer + "/output"))
    return shapes


def random_google_variables(config, seed=0):
    """{Google variable name: float32 array} of a random BERT with this config, as Google initialises it."""
    rng = np.random.default_rng(seed)
    std = config["initializer_range"]
    variables = {}
    for name, shape in sorted(google_variable_shapes(config).items()):
        if name.endswith("gamma"):
            value = np.ones(shape)
        elif name.endswith("bias") or name.endswith("beta"):
            value = np.zeros(shape)
        else:  # Google's truncated normal initializer, cut at two standard deviations
            value = np.clip(rng.normal(0.0, std, shape), -2 * std, 2 * std)
        variables[name] = value.astype(np.float32)
    return variables


def save_google_checkpoint(bert_dir, config, variables, vocab_path=DEFAULT_VOCAB_PATH):
    """Write {Google variable name: array} with Google's file layout and names (a TF1 `Saver`)."""
    import tensorflow as tf

    os.makedirs(bert_dir, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        for name, value in sorted(variables.items()):
            tf.compat.v1.get_variable(name, initializer=value)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, os.path.join(bert_dir, CHECKPOINT_NAME), write_meta_graph=False)
    with open(os.path.join(bert_dir, "bert_config.json"), "w", encoding="utf-8") as writer:
        json.dump(config, writer, indent=2, sort_keys=True)
    shutil.copyfile(vocab_path, os.path.join(bert_dir, "vocab.txt"))


def write_google_checkpoint(bert_dir, config, vocab_path=DEFAULT_VOCAB_PATH, seed=0):
    """Write a random BERT with Google's file layout and variable names."""
    save_google_checkpoint(bert_dir, config, random_google_variables(config, seed), vocab_path)


def write_random_checkpoint_once(bert_dir, config):
    """Write a random checkpoint of `config` into bert_dir unless it is there; a temporary folder
    renamed into place keeps it whole."""
    if not os.path.exists(os.path.join(bert_dir, CHECKPOINT_NAME + ".index")):
        parent = os.path.dirname(bert_dir)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(bert_dir) + "_")
        write_google_checkpoint(staging, config)
        try:
            os.rename(staging, bert_dir)
        except OSError:  # another process finished first: theirs is identical
            shutil.rmtree(staging, ignore_errors=True)


def make_tiny_checkpoint(bert_dir=TINY_BERT_DIR):
    """The tiny checkpoint, written once."""
    write_random_checkpoint_once(bert_dir, TINY_BERT_CONFIG)
    return BertCheckpoint(bert_dir, is_tiny=True)


def check_checkpoint(checkpoint):
    """Raise CheckpointError naming the first missing or inconsistent file."""
    bert_dir = checkpoint.bert_dir
    if not os.path.isdir(bert_dir):
        raise CheckpointError("BERT folder %s does not exist (expected Google's unzipped chinese_L-12_H-768_A-12 "
                              "folder, a Hugging Face model folder, or a Hub id ORG/NAME)" % bert_dir)
    if isinstance(checkpoint, HubCheckpoint):
        return check_hub_checkpoint(checkpoint)
    for path in (checkpoint.config_path, checkpoint.vocab_path, checkpoint.checkpoint_path + ".index"):
        if not os.path.isfile(path):
            raise CheckpointError("%s is missing from BERT folder %s" % (os.path.basename(path), bert_dir))
    if not glob.glob(checkpoint.checkpoint_path + ".data-*"):
        raise CheckpointError("%s.data-00000-of-00001 is missing from BERT folder %s"
                              % (CHECKPOINT_NAME, bert_dir))
    config = check_config(checkpoint)
    import tensorflow as tf

    try:
        stored = dict(tf.train.list_variables(checkpoint.checkpoint_path))
    except Exception as error:  # TF raises several unrelated types for a broken checkpoint
        raise CheckpointError("cannot read checkpoint %s: %s" % (checkpoint.checkpoint_path,
                                                                 printable(str(error), limit=300)))
    for name, shape in sorted(google_variable_shapes(config).items()):
        if name.startswith("cls/"):
            continue  # the pre-training heads are not used for fine-tuning
        if name not in stored:
            raise CheckpointError("checkpoint %s has no variable %s" % (checkpoint.checkpoint_path, name))
        if list(stored[name]) != shape:
            raise CheckpointError("variable %s has shape %s in checkpoint %s but %s in %s"
                                  % (name, list(stored[name]), checkpoint.checkpoint_path,
                                     shape, checkpoint.config_path))


def check_config(checkpoint):
    """The checkpoint's config, once its keys and its vocab agree."""
    config = checkpoint.config()
    vocab_size = len(read_vocab(checkpoint.vocab_path))
    if vocab_size != config["vocab_size"]:
        raise CheckpointError("%s has %d tokens but %s says vocab_size %d"
                              % (checkpoint.vocab_path, vocab_size, checkpoint.config_path, config["vocab_size"]))
    return config


def check_hub_checkpoint(checkpoint):
    """check_checkpoint for a Hugging Face folder: a BERT config, its vocab, every tensor keras-bert needs."""
    for path in (checkpoint.config_path, checkpoint.vocab_path):
        if not os.path.isfile(path):
            raise CheckpointError("%s is missing from Hugging Face model folder %s" % (os.path.basename(path),
                                                                                        checkpoint.bert_dir))
    config = check_config(checkpoint)
    model_type = config.get("model_type", "bert")
    if model_type != "bert":
        raise CheckpointError("%s says model_type %s: only BERT checkpoints can be loaded (HFL's Chinese RoBERTa "
                              "and MacBERT are BERTs, model_type bert)" % (checkpoint.config_path, shown(model_type)))
    if config["type_vocab_size"] != 2:
        raise CheckpointError("%s says type_vocab_size %d: keras-bert's BERT has 2 segments"
                              % (checkpoint.config_path, config["type_vocab_size"]))
    if checkpoint.weights_path is None:
        raise CheckpointError("no weights in Hugging Face model folder %s: expected one of %s%s" % (
            checkpoint.bert_dir, ", ".join(name for name, _ in HUB_WEIGHTS_FILES),
            " (its tf_model.h5 is not read: use the safetensors or .bin of the same model)"
            if os.path.isfile(os.path.join(checkpoint.bert_dir, "tf_model.h5")) else ""))
    check_weights_size(checkpoint.weights_files(), config, checkpoint.config_path)
    with checkpoint.open_tensors() as (shapes, _, files):
        hub_tensor_names(config, shapes, files, checkpoint)


# ---------------------------------------------------------------------------------------------
# Checking what a checkpoint's files say before it is used: they may come from anyone
# ---------------------------------------------------------------------------------------------

def read_json(path, limit):
    """The JSON in `path`, refused with CheckpointError (naming the file, the line) if it is larger
    than `limit` bytes, not UTF-8, not JSON, or nested too deep for Python's parser."""
    if os.path.getsize(path) > limit:
        raise CheckpointError("%s is %d bytes; expected at most %d" % (path, os.path.getsize(path), limit))
    with open(path, "rb") as reader:
        text = decode_utf8(reader.read(), path)
    try:
        return json.loads(text)
    except RecursionError:
        raise CheckpointError("%s is not JSON we read: nested too deep" % path) from None
    except ValueError as error:  # JSONDecodeError says the line and column
        raise CheckpointError("%s is not valid JSON: %s" % (path, printable(str(error)))) from None


def decode_utf8(data, path):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError("%s, line %d: not UTF-8 text (byte 0x%02x)" % (
            path, data.count(b"\n", 0, error.start) + 1, data[error.start])) from None


def check_config_values(config, path, activations):
    """Raise CheckpointError unless the config's sizes are plain whole numbers in CONFIG_SIZE_RANGES,
    the heads divide the hidden size, the dropouts are probabilities and the activation is in `activations`."""
    if not isinstance(config, dict):
        raise CheckpointError("%s is not a BERT config: it holds %s, not a JSON object" % (path, shown(config)))
    for key, (least, most) in CONFIG_SIZE_RANGES.items():
        value = config.get(key)
        if type(value) is not int or not least <= value <= most:  # not bool, not 21128.0, not "21128"
            raise CheckpointError("%s: %s is %s; expected a whole number from %d to %d"
                                  % (path, key, shown(value) if key in config else "missing", least, most))
    if config["hidden_size"] % config["num_attention_heads"]:
        raise CheckpointError("%s: num_attention_heads %d does not divide hidden_size %d"
                              % (path, config["num_attention_heads"], config["hidden_size"]))
    for key in CONFIG_DROPOUTS:
        value = config.get(key)
        if type(value) not in (int, float) or not 0 <= value < 1:  # NaN fails both comparisons
            raise CheckpointError("%s: %s is %s; expected a probability, at least 0 and below 1"
                                  % (path, key, shown(value) if key in config else "missing"))
    if config.get("hidden_act") not in activations:
        raise CheckpointError("%s: hidden_act is %s; keras-bert computes GELU (%s)"
                              % (path, shown(config.get("hidden_act")), ", ".join(activations)))


def shown(value):
    """A value from a file, for an error line: a string quoted and escaped (torch_weights.printable)."""
    return "'%s'" % printable(value) if isinstance(value, str) else printable(value)


def read_vocab(path):
    """{token: id} of a vocab.txt that is UTF-8 and holds the tokens the tokenizer needs (else CheckpointError)."""
    if os.path.getsize(path) > MAX_VOCAB_BYTES:
        raise CheckpointError("%s is %d bytes; expected at most %d" % (path, os.path.getsize(path), MAX_VOCAB_BYTES))
    with open(path, "rb") as reader:
        decode_utf8(reader.read(), path)
    vocab = load_vocab(path)
    check_tokenizer_tokens(vocab, path)
    return vocab


def check_tokenizer_tokens(vocab, path):
    """Raise CheckpointError unless the vocabulary {token: id} read from `path` has TOKENIZER_TOKENS."""
    missing = [token for token in TOKENIZER_TOKENS if token not in vocab]
    if missing:
        raise CheckpointError("%s has no %s: the tokenizer needs %s" % (
            path, " or ".join(missing), ", ".join(TOKENIZER_TOKENS)))


def check_shard_name(shard, index_path):
    """A shard is a plain file name beside its index, of the index's own format: no folder, no way out of it."""
    extension = ".safetensors" if index_path.endswith(".safetensors.index.json") else ".bin"
    if any(char in shard for char in "/\\:\0") or not shard.endswith(extension):
        raise CheckpointError("%s names the shard %s: expected a plain %s file name in the same folder"
                              % (index_path, printable(shard), extension))


def check_weights_size(paths, config, config_path):
    """Refuse weights files larger than the model the config declares, before a byte of them is read."""
    parameters = sum(int(np.prod(shape)) for shape in google_variable_shapes(config).values())
    size = sum(os.path.getsize(path) for path in paths)
    if size > MAX_WEIGHTS_BYTES_PER_PARAMETER * parameters + 2**20:  # + torch's and safetensors' headers
        raise CheckpointError("%s hold%s %d bytes, more than %d bytes for each of the %d parameters %s declares"
                              % (", ".join(paths), "s" if len(paths) == 1 else "", size,
                                 MAX_WEIGHTS_BYTES_PER_PARAMETER, parameters, config_path))


def check_safetensors_dtype(dtype, name, path):
    if dtype not in NUMPY_SAFETENSORS_DTYPES:
        raise CheckpointError("%s: tensor %s is %s, which is not read (numpy holds %s)" % (
            path, printable(name), printable(dtype), ", ".join(NUMPY_SAFETENSORS_DTYPES)))


def keras_bert_layers(config):
    """[(keras-bert layer, [Google variable names of its weights, in order])], paired as keras-bert's
    own loader (load_model_weights_from_checkpoint) pairs them for fine-tuning."""
    def dense(prefix):
        return [prefix + "/kernel", prefix + "/bias"]

    def layer_norm(prefix):
        return [prefix + "/LayerNorm/gamma", prefix + "/LayerNorm/beta"]

    layers = [
        ("Embedding-Token", ["bert/embeddings/word_embeddings"]),
        ("Embedding-Position", ["bert/embeddings/position_embeddings"]),
        ("Embedding-Segment", ["bert/embeddings/token_type_embeddings"]),
        ("Embedding-Norm", layer_norm("bert/embeddings")),
    ]
    for i in range(config["num_hidden_layers"]):
        google, keras_name = "bert/encoder/layer_%d/" % i, "Encoder-%d-" % (i + 1)
        attention = google + "attention/"
        layers += [
            (keras_name + "MultiHeadSelfAttention", dense(attention + "self/query") + dense(attention + "self/key")
             + dense(attention + "self/value") + dense(attention + "output/dense")),
            (keras_name + "MultiHeadSelfAttention-Norm", layer_norm(google + "attention/output")),
            (keras_name + "FeedForward", dense(google + "intermediate/dense") + dense(google + "output/dense")),
            (keras_name + "FeedForward-Norm", layer_norm(google + "output")),
        ]
    return layers


def hub_names(google_name):
    """transformers' names for one of Google's variables, and whether its matrix is transposed
    (torch's Linear keeps [out, in]). LayerNorm is weight/bias, or gamma/beta in uploads of 2019."""
    name = re.sub(r"layer_(\d+)", r"layer.\1", google_name[len("bert/"):]).replace("/", ".")
    if name.endswith(".kernel"):
        return [name[:-len("kernel")] + "weight"], True
    if name.endswith(".gamma"):
        return [name[:-len("gamma")] + "weight", name], False
    if name.endswith(".beta"):
        return [name[:-len("beta")] + "bias", name], False
    if name.endswith(".bias"):
        return [name], False
    return [name + ".weight"], False  # the embedding tables


def hub_tensor_names(config, shapes, files, checkpoint):
    """{Google variable name: (transformers' name, transposed?)} for every weight keras-bert needs,
    checked against the config's shapes. Saved from BertForPreTraining or BertForMaskedLM, the
    names start with `bert.` (their pre-training heads are not needed)."""
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in shapes else ""
    expected_shapes = google_variable_shapes(config)
    names = {}
    for _, google_names in keras_bert_layers(config):
        for google_name in google_names:
            candidates, transposed = hub_names(google_name)
            found = [prefix + name for name in candidates if prefix + name in shapes]
            if not found:
                raise CheckpointError("%s has no tensor %s" % (
                    checkpoint.weights_path, prefix + candidates[0]))
            shape = expected_shapes[google_name][::-1] if transposed else expected_shapes[google_name]
            if shapes[found[0]] != shape:
                raise CheckpointError("tensor %s has shape %s in %s but %s says %s" % (
                    found[0], shapes[found[0]], files[found[0]], checkpoint.config_path, shape))
            names[google_name] = (found[0], transposed)
    return names


def fetch_from_hub(hub_id):
    """The local folder of Hub id `ORG/NAME[@REVISION]`: config, vocab and one weights file
    (safetensors first), downloaded into the Hub's cache unless already there. HF_ENDPOINT,
    HF_HOME, HF_HUB_OFFLINE and a saved token apply as in any Hugging Face tool."""
    from huggingface_hub import snapshot_download

    repo_id, _, revision = hub_id.partition("@")
    try:
        for weights_name, _ in HUB_WEIGHTS_FILES:
            shards = weights_name.split(".")[0] + "-*"  # model-00001-of-00002.safetensors
            folder = snapshot_download(repo_id, revision=revision or None,
                                       allow_patterns=["config.json", "vocab.txt", "tokenizer.json", weights_name,
                                                       shards])
            if os.path.isfile(os.path.join(folder, weights_name)):
                break
    except Exception as error:  # huggingface_hub raises unrelated types: HTTP, connection, cache, bad id
        reason = " ".join(str(error).split()) or type(error).__name__
        raise CheckpointError(
            "no folder %s here, and getting it from the Hugging Face Hub failed (%s: %s). Either set HF_ENDPOINT "
            "to a mirror (e.g. HF_ENDPOINT=https://hf-mirror.com) and run again, or download the model folder "
            "(config.json, vocab.txt or tokenizer.json, model.safetensors or pytorch_model.bin) and pass its path as "
            "--bert-dir"
            % (hub_id, type(error).__name__, reason[:300]))
    return folder


def checkpoint_at(location):
    """The checkpoint in folder `location`, or fetched from the Hub when it names no folder but an id."""
    folder = os.path.abspath(os.path.expanduser(location))
    hub_id = None
    if not os.path.exists(folder) and HUB_ID.match(location):
        hub_id = location.partition("@")[0]
        folder = fetch_from_hub(location)
    if os.path.isfile(os.path.join(folder, "config.json")) and not os.path.isfile(
            os.path.join(folder, "bert_config.json")):
        checkpoint = HubCheckpoint(folder, hub_id=hub_id)
    else:
        checkpoint = BertCheckpoint(folder, hub_id=hub_id)
    check_checkpoint(checkpoint)
    return checkpoint


def find_checkpoint(bert_dir=None):
    """The checkpoint to use (see the module docstring), checked; the tiny one is made if needed."""
    for candidate in (bert_dir, os.environ.get("BERT_DIR")):
        if candidate:
            return checkpoint_at(candidate)
    if os.path.isdir(DEFAULT_BERT_DIR):
        return checkpoint_at(DEFAULT_BERT_DIR)
    return make_tiny_checkpoint()


def print_tiny_banner(demo_settings, file=sys.stderr):
    """Say loudly that the weights are random, which demo settings apply and how to do better."""
    settings = ", ".join("--%s %s" % (name.replace("_", "-"), value) for name, value in demo_settings.items())
    lines = [
        "NO PRETRAINED BERT FOUND: using a tiny BERT with RANDOM weights (hidden 128, 2 layers).",
        "The numbers below only show that the pipeline works; they say nothing about the task.",
        "Demo settings so that the tiny model learns visibly: %s (flags you give win)." % settings,
        "For real results name a Chinese BERT of the Hugging Face Hub (downloaded once, then cached):",
        "  --bert-dir %s   (the blog's weights, BERT-base)" % SUGGESTED_HUB_IDS[0],
        "  --bert-dir %s   (a real small BERT: minutes an epoch on a laptop CPU)" % SUGGESTED_HUB_IDS[1],
        "or unzip Google's checkpoint beside the scripts (chinese_L-12_H-768_A-12/, or --bert-dir DIR, or $BERT_DIR):",
        "  " + REAL_CHECKPOINT_URL,
    ]
    width = max(len(line) for line in lines) + 4
    print("!" * width, file=file)
    for line in lines:
        print("! " + line, file=file)
    print("!" * width, file=file)


def bert_model(config):
    """keras-bert's BERT backbone (its layers and names), with the embeddings' dropout where Google's
    BERT has it: after their LayerNorm.

    keras-bert drops the summed embeddings before their LayerNorm, which then scales what is left up:
    nearly twice the disturbance of the checkpoint's own order at the same rate, and a first epoch
    that learns slower than the same model in transformers (benchmarks/README.md, "Step by step").
    """
    from keras_bert.layers import get_embedding, get_inputs
    from keras_layer_normalization import LayerNormalization
    from keras_transformer import get_encoders, gelu
    from tensorflow import keras

    inputs = get_inputs(seq_len=None)[:2]  # token and segment ids; the third is for pre-training's masks
    embeddings, _ = get_embedding(inputs, token_num=config["vocab_size"], pos_num=config["max_position_embeddings"],
                                  embed_dim=config["hidden_size"])
    embeddings = LayerNormalization(name="Embedding-Norm")(embeddings)
    embeddings = keras.layers.Dropout(config["hidden_dropout_prob"], name="Embedding-Dropout")(embeddings)
    outputs = get_encoders(encoder_num=config["num_hidden_layers"], input_layer=embeddings,
                           head_num=config["num_attention_heads"], hidden_dim=config["intermediate_size"],
                           feed_forward_activation=gelu, dropout_rate=config["hidden_dropout_prob"])
    return keras.models.Model(inputs=inputs, outputs=outputs)


def load_bert(checkpoint):
    """keras-bert's backbone (`bert_model`) with the checkpoint's weights, all layers trainable, any length."""
    import tensorflow as tf
    from keras_bert import load_model_weights_from_checkpoint

    config = checkpoint.config()
    with warnings.catch_warnings():
        # keras-bert reuses one unseeded initializer; harmless, since the checkpoint overwrites it.
        warnings.filterwarnings("ignore", message="The initializer .* is unseeded")
        model = bert_model(config)
    if not isinstance(checkpoint, HubCheckpoint):
        try:
            load_model_weights_from_checkpoint(model, config, checkpoint.checkpoint_path)
        except (tf.errors.OpError, IndexError) as error:  # IndexError: a data file cut short
            raise CheckpointError("cannot read checkpoint %s: %s" % (checkpoint.checkpoint_path,
                                                                     printable(str(error), limit=300)))
        return model
    with checkpoint.open_tensors() as (shapes, load, files):
        names = hub_tensor_names(config, shapes, files, checkpoint)
        for layer, google_names in keras_bert_layers(config):
            weights = []
            for google_name in google_names:  # one layer's tensors at a time: a large BERT is never held twice
                name, transposed = names[google_name]
                weights.append(load(name).T if transposed else load(name))
            model.get_layer(layer).set_weights(weights)
    return model
