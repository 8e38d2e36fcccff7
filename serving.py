"""The serving export shared by the three scripts: a SavedModel that takes raw text and gives the answer.
Not in the blog (docs/blog_map.md, "Beyond the blog"): its scripts answer only through the Keras models in
Python; this exports the same answers, tokenizer and decoder included, for TensorFlow alone.

`--export DIR` writes a TensorFlow SavedModel whose `serving_default` signature takes UTF-8
strings, so that using the fine-tuned model needs TensorFlow only: no keras-bert, no Python
tokenizer, no copy of this repository (TF Serving, a batch job, another program).

- `InGraphTokenizer` is `tokenizer.OurTokenizer` in TensorFlow ops: the text is decoded to code
  points and each one looked up in a table computed once from `OurTokenizer` over every code
  point (only those that do not become [UNK] are stored), so the two cannot disagree. It adds
  [CLS] and [SEP], cuts to `maxlen` characters as the scripts do, and pads per batch.
- `write_export` saves a script's `tf.Module` into DIR atomically: into a temporary folder
  beside DIR, then renamed. It refuses a DIR that holds anything but our own previous export.

Each script keeps its own task part: the module with its signature and its decoder in TensorFlow
ops (no `tf.py_function`: a SavedModel with Python callbacks cannot be served).
"""
import functools
import json
import os
import shutil
import tempfile

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # keras-bert needs Keras 2: TensorFlow's tf-keras, not Keras 3
import tensorflow as tf  # noqa: E402

from fine_tuning import UserError, best_weights_path  # noqa: E402
from tokenizer import UNKNOWN_TOKEN, OurTokenizer, load_vocab  # noqa: E402

EXPORT_MARK_NAME = "export.json"  # marks a folder as our own export, which a new one may replace
LAST_CODE_POINT = 0x10FFFF
SURROGATES = range(0xD800, 0xE000)  # not characters: UTF-8 cannot encode them


# ---------------------------------------------------------------------------------------------
# The tokenizer in the graph
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def code_point_ids(vocab_path):
    """(code points, their ids): every code point to which OurTokenizer gives an id other than [UNK]."""
    vocab = load_vocab(vocab_path)
    tokenizer = OurTokenizer(vocab)
    unknown_id = vocab[UNKNOWN_TOKEN]
    code_points, ids = [], []
    for code_point in range(LAST_CODE_POINT + 1):
        if code_point in SURROGATES:
            continue
        token_id = vocab.get(tokenizer._char_token(chr(code_point)), unknown_id)
        if token_id != unknown_id:
            code_points.append(code_point)
            ids.append(token_id)
    return tuple(code_points), tuple(ids)


class InGraphTokenizer(tf.Module):
    """OurTokenizer in TensorFlow ops: strings in, the same token ids out."""

    def __init__(self, vocab_path):
        super().__init__()
        vocab = load_vocab(vocab_path)
        code_points, ids = code_point_ids(vocab_path)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(code_points, tf.int32), tf.constant(ids, tf.int32)),
            default_value=vocab[UNKNOWN_TOKEN])
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]

    @staticmethod
    def code_points(texts, maxlen=None):
        """Ragged [batch, characters] code points of UTF-8 strings, cut to `maxlen` characters.

        Invalid UTF-8 becomes U+FFFD, the replacement character (an [UNK]).
        """
        code_points = tf.strings.unicode_decode(texts, "UTF-8", errors="replace")
        return code_points if maxlen is None else code_points[:, :maxlen]

    def lookup(self, code_points):
        """Ragged ids, one per code point: OurTokenizer's token for the character."""
        return tf.ragged.map_flat_values(self.table.lookup, code_points)

    def token_ids(self, code_points):
        """Ragged [batch, 1 + characters + 1] ids: [CLS], one token per character, [SEP]."""
        ids = self.lookup(code_points)
        batch = ids.nrows()
        return tf.concat([tf.fill([batch, 1], self.cls_id), ids, tf.fill([batch, 1], self.sep_id)], axis=1)

    def encode(self, texts, maxlen):
        """token_ids, segment_ids of each text cut to `maxlen` characters, padded to the longest of the batch."""
        return self.pad(self.token_ids(self.code_points(texts, maxlen)))

    def encode_pair(self, texts, second_texts, maxlen):
        """token_ids, segment_ids of `[CLS] a [SEP] b [SEP]`, the pair cut to `maxlen` characters as
        tokenizer.pair_lengths cuts it (the longer text first), padded to the longest of the batch."""
        first, second = self.code_points(texts), self.code_points(second_texts)
        first_length, second_length = first.row_lengths(), second.row_lengths()
        kept_first, kept_second = pair_lengths_in_graph(first_length, second_length, maxlen)
        first = tf.ragged.boolean_mask(first, tf.ragged.range(first_length) < kept_first[:, None])
        second = tf.ragged.boolean_mask(second, tf.ragged.range(second_length) < kept_second[:, None])
        batch = first.nrows()
        cls, sep = tf.fill([batch, 1], self.cls_id), tf.fill([batch, 1], self.sep_id)
        first_ids = tf.concat([cls, self.lookup(first), sep], axis=1)
        second_ids = tf.concat([self.lookup(second), sep], axis=1)
        token_ids = tf.concat([first_ids, second_ids], axis=1).to_tensor(0)
        segment_ids = tf.concat([tf.zeros_like(first_ids), tf.ones_like(second_ids)], axis=1).to_tensor(0)
        return token_ids, segment_ids

    @staticmethod
    def text(code_points):
        """The (cut) texts again, as valid UTF-8, to slice answers from."""
        return tf.strings.unicode_encode(code_points, "UTF-8")

    @staticmethod
    def pad(token_ids):
        """token_ids, segment_ids: padded with 0 to the longest sequence of this batch (the blog's seq_padding)."""
        token_ids = token_ids.to_tensor(0)
        # No text at all: keep a width of 2 ([CLS], [SEP]), as keras-bert's attention fails on width 0.
        token_ids = tf.pad(token_ids, [[0, 0], [0, tf.maximum(0, 2 - tf.shape(token_ids)[1])]])
        return token_ids, tf.zeros_like(token_ids)


def pair_lengths_in_graph(first_length, second_length, maxlen):
    """tokenizer.pair_lengths in TensorFlow ops, for a batch of pairs."""
    fits = first_length + second_length <= maxlen
    kept_first = tf.minimum(first_length, tf.maximum(maxlen - second_length, (maxlen + 1) // 2))
    kept_second = tf.minimum(second_length, tf.maximum(maxlen - first_length, maxlen // 2))
    return tf.where(fits, first_length, kept_first), tf.where(fits, second_length, kept_second)


def window_starts_in_graph(lengths, maxlen, stride):
    """tokenizer.window_starts in TensorFlow ops: ragged [batch, windows] starts for a batch of text lengths."""
    lengths = tf.cast(lengths, tf.int32)
    overflow = tf.maximum(lengths - maxlen, 0)
    counts = tf.where(lengths <= maxlen, 1, (overflow + stride - 1) // stride + 1)
    return tf.minimum(tf.ragged.range(counts) * stride, overflow[:, None])


# ---------------------------------------------------------------------------------------------
# What the three exports share
# ---------------------------------------------------------------------------------------------

class ServingModule(tf.Module):
    """Base of a script's export: the in-graph tokenizer, `maxlen`, and its Keras models' weights.

    A subclass defines `serve`, a tf.function with an input signature that calls the models
    through `self.call_models`. Only the models' variables go into the SavedModel, not the Keras
    objects: a loader needs no Keras, and the export is smaller and loads faster (measured on the
    tiny sentiment model: 0.5 MB of graph instead of 1.2 MB, 1.2 s to load instead of 4.8 s).
    """

    def __init__(self, models, vocab_path, maxlen):
        super().__init__()
        self.tokenizer = InGraphTokenizer(vocab_path)
        self.maxlen = maxlen
        shared = {id(variable): variable for model in models for variable in model.variables}  # once each
        self.model_variables = list(shared.values())
        # Plain functions, which tf.Module does not track: the Keras objects stay out of the export.
        self.call_models = tuple(functools.partial(model.__call__, training=False) for model in models)


def substrings(texts, starts, ends):
    """texts[i][starts[i]:ends[i]] in characters (code points, as Python slices a str)."""
    return tf.strings.substr(texts, starts, ends - starts, unit="UTF8_CHAR")


# ---------------------------------------------------------------------------------------------
# Writing the export
# ---------------------------------------------------------------------------------------------

def is_our_export(export_dir):
    return os.path.isfile(os.path.join(export_dir, EXPORT_MARK_NAME))


def check_export_dir(export_dir):
    """Refuse a DIR that is a file, or a folder holding anything but our own previous export."""
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise UserError("--export %s is a file, not a folder" % export_dir)
    if os.path.isdir(export_dir) and os.listdir(export_dir) and not is_our_export(export_dir):
        raise UserError("--export %s exists and is not empty, and it is not an export of this project (no %s "
                        "in it): give a new or empty folder" % (export_dir, EXPORT_MARK_NAME))


def write_export(module, args, script):
    """Save `module.serve` as the `serving_default` signature of a SavedModel in `args.export`.

    Written into a temporary folder beside it, then renamed: a crash leaves no half-written
    model, and a previous export stays whole until the new one is complete. The mark file
    says which script, weights and settings made it.
    """
    check_export_dir(args.export)
    export_dir = os.path.abspath(args.export)
    description = {"script": script, "weights": os.path.abspath(best_weights_path(args.output_dir)),
                   "maxlen": args.maxlen, "inputs": [spec.name for spec in module.serve.input_signature]}
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    temporary_dir = tempfile.mkdtemp(prefix=os.path.basename(export_dir) + ".partial-", dir=parent)
    try:
        os.chmod(temporary_dir, 0o755)  # mkdtemp's 0o700 would hide the model from a server run as another user
        tf.saved_model.save(module, temporary_dir, signatures={"serving_default": module.serve})
        with open(os.path.join(temporary_dir, EXPORT_MARK_NAME), "w", encoding="utf-8") as writer:
            json.dump(description, writer, ensure_ascii=False, indent=1)
        if os.path.isdir(export_dir):  # empty, or our previous export: set it aside until the new one is in
            old_dir = temporary_dir + ".old"
            os.replace(export_dir, old_dir)
            os.replace(temporary_dir, export_dir)
            shutil.rmtree(old_dir)
        else:
            os.replace(temporary_dir, export_dir)
    finally:
        shutil.rmtree(temporary_dir, ignore_errors=True)
    print("wrote the SavedModel to %s (%.1f MB)" % (export_dir, folder_megabytes(export_dir)))


def folder_megabytes(folder):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(folder) for name in names) / 1e6
