"""Find, check or make the BERT checkpoint that the three scripts fine-tune.
Beside the blog (docs/blog_map.md, "1. Loading BERT and the tokenizer"): its `config_path` and
`checkpoint_path` are `find_checkpoint`, its `load_trained_model_from_checkpoint` call is `load_bert`.

Which checkpoint a script uses, first match wins:
1. `--bert-dir DIR`: a folder as in Google's zip (`bert_config.json`, `vocab.txt`,
   `bert_model.ckpt.index`, `bert_model.ckpt.data-*`);
2. `$BERT_DIR`;
3. `chinese_L-12_H-768_A-12/` beside the scripts (where Google's zip unpacks);
4. else a tiny random BERT in Google's exact TF1 format, written once into `.cache/` from a
   fixed seed, so that everything runs with nothing downloaded. Its numbers mean nothing.
"""
import glob
import json
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np

from tokenizer import DEFAULT_VOCAB_PATH, load_vocab

PROJECT_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BERT_DIR = os.path.join(PROJECT_DIR, "chinese_L-12_H-768_A-12")
TINY_BERT_DIR = os.path.join(PROJECT_DIR, ".cache", "tiny_chinese_bert")
CHECKPOINT_NAME = "bert_model.ckpt"
REAL_CHECKPOINT_URL = "https://storage.googleapis.com/bert_models/2018_11_03/chinese_L-12_H-768_A-12.zip"

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

    def __init__(self, bert_dir, is_tiny=False):
        self.bert_dir = bert_dir
        self.is_tiny = is_tiny
        self.config_path = os.path.join(bert_dir, "bert_config.json")
        self.vocab_path = os.path.join(bert_dir, "vocab.txt")
        self.checkpoint_path = os.path.join(bert_dir, CHECKPOINT_NAME)

    def config(self):
        with open(self.config_path, encoding="utf-8") as reader:
            return json.load(reader)


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


def write_google_checkpoint(bert_dir, config, vocab_path=DEFAULT_VOCAB_PATH, seed=0):
    """Write a random BERT with Google's file layout and variable names (a TF1 `Saver`)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    std = config["initializer_range"]
    os.makedirs(bert_dir, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        for name, shape in sorted(google_variable_shapes(config).items()):
            if name.endswith("gamma"):
                value = np.ones(shape)
            elif name.endswith("bias") or name.endswith("beta"):
                value = np.zeros(shape)
            else:  # Google's truncated normal initializer, cut at two standard deviations
                value = np.clip(rng.normal(0.0, std, shape), -2 * std, 2 * std)
            tf.compat.v1.get_variable(name, initializer=value.astype(np.float32))
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, os.path.join(bert_dir, CHECKPOINT_NAME), write_meta_graph=False)
    with open(os.path.join(bert_dir, "bert_config.json"), "w", encoding="utf-8") as writer:
        json.dump(config, writer, indent=2, sort_keys=True)
    shutil.copyfile(vocab_path, os.path.join(bert_dir, "vocab.txt"))


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
    import tensorflow as tf

    bert_dir = checkpoint.bert_dir
    if not os.path.isdir(bert_dir):
        raise CheckpointError("BERT folder %s does not exist (expected Google's unzipped "
                              "chinese_L-12_H-768_A-12 folder)" % bert_dir)
    for path in (checkpoint.config_path, checkpoint.vocab_path, checkpoint.checkpoint_path + ".index"):
        if not os.path.isfile(path):
            raise CheckpointError("%s is missing from BERT folder %s" % (os.path.basename(path), bert_dir))
    if not glob.glob(checkpoint.checkpoint_path + ".data-*"):
        raise CheckpointError("%s.data-00000-of-00001 is missing from BERT folder %s"
                              % (CHECKPOINT_NAME, bert_dir))
    try:
        config = checkpoint.config()
        expected = google_variable_shapes(config)
    except (ValueError, KeyError) as error:
        raise CheckpointError("%s is not a BERT config: %s" % (checkpoint.config_path, error))
    vocab_size = len(load_vocab(checkpoint.vocab_path))
    if vocab_size != config["vocab_size"]:
        raise CheckpointError("%s has %d tokens but %s says vocab_size %d"
                              % (checkpoint.vocab_path, vocab_size, checkpoint.config_path, config["vocab_size"]))
    try:
        stored = dict(tf.train.list_variables(checkpoint.checkpoint_path))
    except Exception as error:  # TF raises several unrelated types for a broken checkpoint
        raise CheckpointError("cannot read checkpoint %s: %s" % (checkpoint.checkpoint_path, error))
    for name, shape in sorted(expected.items()):
        if name.startswith("cls/"):
            continue  # the pre-training heads are not used for fine-tuning
        if name not in stored:
            raise CheckpointError("checkpoint %s has no variable %s" % (checkpoint.checkpoint_path, name))
        if list(stored[name]) != shape:
            raise CheckpointError("variable %s has shape %s in checkpoint %s but %s in %s"
                                  % (name, list(stored[name]), checkpoint.checkpoint_path,
                                     shape, checkpoint.config_path))


def find_checkpoint(bert_dir=None):
    """The checkpoint to use (see the module docstring), checked; the tiny one is made if needed."""
    for candidate in (bert_dir, os.environ.get("BERT_DIR")):
        if candidate:
            checkpoint = BertCheckpoint(os.path.abspath(os.path.expanduser(candidate)))
            check_checkpoint(checkpoint)
            return checkpoint
    if os.path.isdir(DEFAULT_BERT_DIR):
        checkpoint = BertCheckpoint(DEFAULT_BERT_DIR)
        check_checkpoint(checkpoint)
        return checkpoint
    return make_tiny_checkpoint()


def print_tiny_banner(demo_settings, file=sys.stderr):
    """Say loudly that the weights are random, which demo settings apply and how to do better."""
    settings = ", ".join("--%s %s" % (name.replace("_", "-"), value) for name, value in demo_settings.items())
    lines = [
        "NO PRETRAINED BERT FOUND: using a tiny BERT with RANDOM weights (hidden 128, 2 layers).",
        "The numbers below only show that the pipeline works; they say nothing about the task.",
        "Demo settings so that the tiny model learns visibly: %s (flags you give win)." % settings,
        "For real results download Google's Chinese BERT:",
        "  " + REAL_CHECKPOINT_URL,
        "unzip it beside the scripts (chinese_L-12_H-768_A-12/), or pass --bert-dir DIR or set $BERT_DIR.",
    ]
    width = max(len(line) for line in lines) + 4
    print("!" * width, file=file)
    for line in lines:
        print("! " + line, file=file)
    print("!" * width, file=file)


def load_bert(checkpoint):
    """keras-bert's backbone with the checkpoint's weights, all layers trainable, any length."""
    from keras_bert import load_trained_model_from_checkpoint

    with warnings.catch_warnings():
        # keras-bert reuses one unseeded initializer; harmless, since the checkpoint overwrites it.
        warnings.filterwarnings("ignore", message="The initializer .* is unseeded")
        return load_trained_model_from_checkpoint(
            checkpoint.config_path, checkpoint.checkpoint_path, seq_len=None, trainable=True,
            dropout_rate=checkpoint.config()["hidden_dropout_prob"])  # keras-bert ignores the config's
