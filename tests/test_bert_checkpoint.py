"""The tiny checkpoint is in Google's exact format, and bad checkpoint folders get clear errors."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import bert_checkpoint
from bert_checkpoint import (
    TINY_BERT_CONFIG, BertCheckpoint, CheckpointError, check_checkpoint, find_checkpoint,
    google_variable_shapes, load_bert, write_google_checkpoint)

# A few of the names in Google's chinese_L-12_H-768_A-12/bert_model.ckpt, with BERT-base shapes.
GOOGLE_BASE_SAMPLE = {
    "bert/embeddings/word_embeddings": [21128, 768],
    "bert/embeddings/position_embeddings": [512, 768],
    "bert/embeddings/token_type_embeddings": [2, 768],
    "bert/embeddings/LayerNorm/gamma": [768],
    "bert/encoder/layer_0/attention/self/query/kernel": [768, 768],
    "bert/encoder/layer_11/attention/output/LayerNorm/beta": [768],
    "bert/encoder/layer_11/intermediate/dense/kernel": [768, 3072],
    "bert/encoder/layer_11/output/dense/kernel": [3072, 768],
    "bert/pooler/dense/kernel": [768, 768],
    "cls/predictions/output_bias": [21128],
    "cls/predictions/transform/dense/kernel": [768, 768],
    "cls/seq_relationship/output_weights": [2, 768],
}


def copy_checkpoint(source, target):
    shutil.copytree(source.bert_dir, target)
    return BertCheckpoint(str(target))


def test_variable_names_and_shapes_match_google_bert_base():
    base_config = dict(TINY_BERT_CONFIG, hidden_size=768, intermediate_size=3072, num_hidden_layers=12)
    shapes = google_variable_shapes(base_config)
    assert len(shapes) == 5 + 16 * 12 + 2 + 4 + 1 + 2
    for name, shape in GOOGLE_BASE_SAMPLE.items():
        assert shapes[name] == shape


def test_tiny_checkpoint_holds_exactly_googles_variables(tiny_checkpoint):
    stored = dict(tf.train.list_variables(tiny_checkpoint.checkpoint_path))
    assert {name: list(shape) for name, shape in stored.items()} == google_variable_shapes(TINY_BERT_CONFIG)
    for name in ("bert_config.json", "vocab.txt", "bert_model.ckpt.index", "bert_model.ckpt.data-00000-of-00001"):
        assert os.path.isfile(os.path.join(tiny_checkpoint.bert_dir, name))


def test_tiny_checkpoint_is_deterministic(tmp_path, tiny_checkpoint):
    write_google_checkpoint(str(tmp_path), TINY_BERT_CONFIG)
    name = "bert/encoder/layer_1/attention/self/key/kernel"
    again = tf.train.load_variable(str(tmp_path / "bert_model.ckpt"), name)
    np.testing.assert_array_equal(again, tf.train.load_variable(tiny_checkpoint.checkpoint_path, name))
    assert np.std(again) > 0.01


def test_keras_bert_loads_it_and_gives_one_vector_per_token(tiny_checkpoint):
    bert = load_bert(tiny_checkpoint)
    output = bert.predict([np.array([[101, 791, 1921, 102]]), np.zeros((1, 4))], verbose=0)
    assert output.shape == (1, 4, TINY_BERT_CONFIG["hidden_size"])
    loaded = bert.get_layer("Embedding-Token").get_weights()[0]
    np.testing.assert_allclose(loaded, tf.train.load_variable(
        tiny_checkpoint.checkpoint_path, "bert/embeddings/word_embeddings"))


def test_the_embeddings_are_dropped_after_their_layer_norm_as_in_googles_bert(tiny_checkpoint):
    """Google's order (keras-bert's drops before the LayerNorm, which then scales what is left up)."""
    bert = load_bert(tiny_checkpoint)
    embeddings = tf.keras.Model(bert.inputs, [bert.get_layer("Embedding-Norm").output,
                                              bert.get_layer("Embedding-Dropout").output])
    inputs = [np.array([[101, 791, 1921, 102]]), np.zeros((1, 4))]
    normalised = embeddings(inputs, training=False)[0].numpy()
    dropped = embeddings(inputs, training=True)[1].numpy()
    kept = dropped != 0
    assert 0 < kept.mean() < 1  # a mask was drawn: some units zeroed, the others kept
    rate = TINY_BERT_CONFIG["hidden_dropout_prob"]
    np.testing.assert_allclose(dropped[kept], normalised[kept] / (1 - rate), rtol=1e-5)


def test_bert_dir_flag_wins_over_environment(tmp_path, monkeypatch, tiny_checkpoint):
    monkeypatch.setenv("BERT_DIR", str(tmp_path / "does-not-exist"))
    assert find_checkpoint(tiny_checkpoint.bert_dir).bert_dir == tiny_checkpoint.bert_dir
    with pytest.raises(CheckpointError, match="does-not-exist does not exist"):
        find_checkpoint()


def test_without_any_checkpoint_the_tiny_one_is_used(monkeypatch, tmp_path, tiny_checkpoint):
    monkeypatch.setattr(bert_checkpoint, "DEFAULT_BERT_DIR", str(tmp_path / "absent"))
    assert find_checkpoint().is_tiny


@pytest.mark.parametrize("missing", ["bert_config.json", "vocab.txt", "bert_model.ckpt.index",
                                     "bert_model.ckpt.data-00000-of-00001"])
def test_missing_checkpoint_file_is_named(tmp_path, tiny_checkpoint, missing):
    checkpoint = copy_checkpoint(tiny_checkpoint, tmp_path / "bert")
    os.remove(os.path.join(checkpoint.bert_dir, missing))
    with pytest.raises(CheckpointError, match=missing.split("-")[0]):
        check_checkpoint(checkpoint)


def test_config_that_does_not_match_the_checkpoint_names_variable_and_both_shapes(tmp_path, tiny_checkpoint):
    checkpoint = copy_checkpoint(tiny_checkpoint, tmp_path / "bert")
    with open(checkpoint.config_path, "w") as writer:
        json.dump(dict(TINY_BERT_CONFIG, hidden_size=256), writer)
    with pytest.raises(CheckpointError, match=r"bert/embeddings/LayerNorm/beta has shape \[128\].*but \[256\]"):
        check_checkpoint(checkpoint)


def test_vocab_of_another_size_than_the_config_is_refused(tmp_path, tiny_checkpoint):
    checkpoint = copy_checkpoint(tiny_checkpoint, tmp_path / "bert")
    with open(checkpoint.vocab_path, "a", encoding="utf-8") as writer:
        writer.write("extra-token\n")
    with pytest.raises(CheckpointError, match="21129 tokens but .* vocab_size 21128"):
        check_checkpoint(checkpoint)
