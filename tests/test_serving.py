"""serving.py: the in-graph tokenizer gives OurTokenizer's ids; exports are written whole or not at all."""
import argparse
import os

import pytest
import tensorflow as tf

import serving
from fine_tuning import UserError
from test_tokenizer import TRICKY_TEXTS, random_texts
from tokenizer import DEFAULT_VOCAB_PATH

MORE_TEXTS = [
    "UPPER lower MiXeD ÇÀÉÎÕÜ straße",
    "Ｆｕｌｌ　ｗｉｄｔｈ　１２３，标点！？",
    "a\u0308\u0323 e\u0301 combining marks alone: \u0301\u0308",
    "astral 𝐀𝐁 😀👍🏽 🇨🇳 𠀀𪚥 and \U0010fffd",
    "\u2028line separator\u2029\x85\x0b\x0c",
    " ",
]


@pytest.fixture(scope="module")
def in_graph():
    return serving.InGraphTokenizer(DEFAULT_VOCAB_PATH)


def in_graph_ids(in_graph, texts, maxlen=None):
    return in_graph.token_ids(in_graph.code_points(tf.constant(texts, tf.string), maxlen)).to_list()


def test_in_graph_token_ids_are_our_tokenizers_ids(in_graph, vocab, tokenizer):
    texts = TRICKY_TEXTS + MORE_TEXTS + random_texts(vocab, seed=2)
    assert in_graph_ids(in_graph, texts) == [tokenizer.encode(first=text)[0] for text in texts]


def test_in_graph_tokenizer_cuts_to_maxlen_characters_as_the_scripts_do(in_graph, tokenizer):
    texts = ["今天天气不错", "😀𠀀ab", "", "é\u0301x"]
    assert in_graph_ids(in_graph, texts, maxlen=3) == [tokenizer.encode(first=text[:3])[0] for text in texts]


def test_in_graph_pairs_are_encoded_and_cut_as_the_scripts_encode_them(in_graph, tokenizer, vocab):
    import sentiment

    texts = TRICKY_TEXTS + MORE_TEXTS + random_texts(vocab, seed=3)
    pairs = list(zip(texts, reversed(texts))) + [("长" * 9, "短"), ("短", "长" * 9), ("", ""), ("等长", "等长")]
    for maxlen in (5, 8, 64):
        token_ids, segment_ids = in_graph.encode_pair(tf.constant([a for a, _ in pairs]),
                                                      tf.constant([b for _, b in pairs]), maxlen)
        expected = sentiment.encode_texts(tokenizer, pairs, maxlen, "test")
        for row, (ids, segments) in enumerate(expected):
            width = len(ids)
            assert token_ids[row].numpy().tolist() == ids + [0] * (token_ids.shape[1] - width)
            assert segment_ids[row, :width].numpy().tolist() == segments


def test_invalid_utf8_becomes_the_replacement_character(in_graph, tokenizer):
    assert in_graph_ids(in_graph, [b"ok\xff"]) == [tokenizer.encode(first="ok\ufffd")[0]]


def test_the_table_stores_only_code_points_that_are_not_unk(vocab):
    code_points, ids = serving.code_point_ids(DEFAULT_VOCAB_PATH)
    assert vocab["[UNK]"] not in ids
    assert len(code_points) < len(vocab)  # one entry a known character, not one per code point
    assert dict(zip(code_points, ids))[ord("Ａ")] == vocab["a"]


def test_a_batch_is_padded_with_zeros_to_its_longest_text_and_an_empty_batch_keeps_cls_sep_width(in_graph, vocab):
    token_ids, segment_ids = in_graph.encode(tf.constant(["你好", "今天天气"]), 100)
    assert token_ids.numpy().tolist() == [[101, vocab["你"], vocab["好"], 102, 0, 0],
                                          [101] + [vocab[c] for c in "今天天气"] + [102]]
    assert segment_ids.numpy().tolist() == [[0] * 6] * 2
    token_ids, _ = in_graph.encode(tf.constant([], tf.string), 100)
    assert token_ids.shape == (0, 2)


# ---------------------------------------------------------------------------------------------
# Writing the export
# ---------------------------------------------------------------------------------------------

class Doubler(tf.Module):
    def __init__(self):
        super().__init__()
        self.factor = tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x * self.factor}


def export_args(export_dir, tmp_path):
    return argparse.Namespace(export=str(export_dir), output_dir=str(tmp_path / "run"), maxlen=100)


def test_an_export_is_a_saved_model_with_its_mark_and_a_new_one_replaces_it(tmp_path):
    export_dir = tmp_path / "models" / "doubler" / "1"
    serving.write_export(Doubler(), export_args(export_dir, tmp_path), "test")
    assert {"saved_model.pb", "variables", serving.EXPORT_MARK_NAME} <= set(os.listdir(export_dir))
    module = Doubler()
    module.factor.assign(5.0)
    serving.write_export(module, export_args(export_dir, tmp_path), "test")
    serve = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    assert serve(x=tf.constant([1.0]))["y"].numpy().tolist() == [5.0]
    assert os.listdir(export_dir.parent) == ["1"]  # no temporary folder left beside it


def test_a_folder_that_is_not_our_export_is_refused_and_left_alone(tmp_path):
    export_dir = tmp_path / "mine"
    export_dir.mkdir()
    (export_dir / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match=r"--export .*mine exists and is not empty, and it is not an export"):
        serving.write_export(Doubler(), export_args(export_dir, tmp_path), "test")
    assert os.listdir(export_dir) == ["notes.txt"]
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=r"--export .*file is a file"):
        serving.write_export(Doubler(), export_args(tmp_path / "file", tmp_path), "test")


def test_a_failed_export_leaves_no_half_written_folder_and_the_previous_export_whole(tmp_path, monkeypatch):
    export_dir = tmp_path / "1"
    serving.write_export(Doubler(), export_args(export_dir, tmp_path), "test")
    before = sorted(os.listdir(export_dir))

    def crash_midway(module, path, signatures):
        with open(os.path.join(path, "saved_model.pb"), "w") as writer:
            writer.write("half")
        raise OSError("No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", crash_midway)
    with pytest.raises(OSError, match="No space left"):
        serving.write_export(Doubler(), export_args(export_dir, tmp_path), "test")
    assert sorted(os.listdir(tmp_path)) == ["1"]
    assert sorted(os.listdir(export_dir)) == before
    serve = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    assert serve(x=tf.constant([1.0]))["y"].numpy().tolist() == [2.0]


def test_in_graph_windows_start_where_the_scripts_windows_start():
    from tokenizer import window_starts

    lengths = list(range(0, 80))
    for maxlen, stride in ((1, 1), (5, 2), (8, 8), (10, 3), (16, 5)):
        assert serving.window_starts_in_graph(tf.constant(lengths), maxlen, stride).to_list() == [
            window_starts(length, maxlen, stride) for length in lengths], (maxlen, stride)
