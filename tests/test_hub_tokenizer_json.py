"""A Hub folder that ships tokenizer.json and no vocab.txt: `--bert-dir` takes BERT's WordPiece
vocabulary from it, in id order, and refuses any other tokenizer model with one `error:` line."""
import json
import os
import re

import pytest

import bert_checkpoint
import sentiment
import synthetic
from bert_checkpoint import CheckpointError, find_checkpoint
from fine_tuning import run
from hub_layouts import write_hub_folder, write_tokenizer_json
from tokenizer import load_vocab
from transformers_reference import SMALL_CONFIG, small_bert_tensors


@pytest.fixture(autouse=True)
def vocab_cache(tmp_path, monkeypatch):
    """The vocab.txt written from tokenizer.json goes to this test's folder, not the project's .cache/."""
    folder = tmp_path / "vocab_cache"
    monkeypatch.setattr(bert_checkpoint, "TOKENIZER_JSON_VOCAB_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def small_tensors():
    return small_bert_tensors()


@pytest.fixture
def hub_folder(tmp_path, small_tensors):
    """A Hub folder with tokenizer.json in place of vocab.txt."""
    folder = write_hub_folder(str(tmp_path / "hub"), SMALL_CONFIG, small_tensors)
    write_tokenizer_json(folder)
    return folder


def rewrite_model(folder, **changes):
    path = os.path.join(folder, "tokenizer.json")
    with open(path, encoding="utf-8") as reader:
        tokenizer_json = json.load(reader)
    tokenizer_json["model"].update(changes)
    with open(path, "w", encoding="utf-8") as writer:
        json.dump(tokenizer_json, writer, ensure_ascii=False)
    return path


def test_the_vocab_comes_from_tokenizer_json_in_id_order(hub_folder, vocab_cache, vocab):
    checkpoint = find_checkpoint(hub_folder)
    assert not os.path.exists(os.path.join(hub_folder, "vocab.txt"))  # nothing written into the user's folder
    assert checkpoint.vocab_path.startswith(str(vocab_cache))
    assert load_vocab(checkpoint.vocab_path) == vocab
    with open(checkpoint.vocab_path, encoding="utf-8") as reader:
        assert reader.read().splitlines()[:3] == ["[PAD]", "[unused1]", "[unused2]"]


def test_vocab_txt_wins_when_both_are_there(tmp_path, small_tensors, vocab_cache):
    folder = write_hub_folder(str(tmp_path / "both"), SMALL_CONFIG, small_tensors)
    write_tokenizer_json(folder, drop_vocab_txt=False)
    assert find_checkpoint(folder).vocab_path == os.path.join(folder, "vocab.txt")
    assert not vocab_cache.exists()


def test_a_script_trains_from_a_folder_with_only_tokenizer_json(hub_folder, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    synthetic.write_sentiment(str(tmp_path / "data"), 60, seed=5)
    sentiment.main(["--bert-dir", hub_folder, "--data-dir", str(tmp_path / "data"), "--output-dir",
                    str(tmp_path / "out"), "--epochs", "1", "--batch-size", "16", "--lr", "1e-3", "--maxlen", "40"])
    assert re.search(r"^epoch 1: loss [\d.]+, dev accuracy", capsys.readouterr().out, flags=re.MULTILINE)
    assert os.path.isfile(tmp_path / "out" / "best_weights.h5")


def refusal(folder, tmp_path, capsys):
    """The one `error:` line of a script given this folder, after checking it exits 2 with no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        run(sentiment.main, ["--bert-dir", folder, "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize("model_type", ["BPE", "Unigram", "WordLevel"])
def test_a_tokenizer_other_than_wordpiece_is_refused_saying_what_it_is(tmp_path, small_tensors, capsys, model_type):
    folder = write_hub_folder(str(tmp_path / "hub"), SMALL_CONFIG, small_tensors)
    path = write_tokenizer_json(folder, model_type=model_type)
    assert refusal(folder, tmp_path, capsys) == (
        "error: %s cannot give a BERT vocabulary: its tokenizer model is '%s', not BERT's WordPiece"
        % (path, model_type))


def test_a_vocab_that_disagrees_with_the_config_is_refused(hub_folder, tmp_path, capsys):
    vocab = load_vocab()
    del vocab["[PAD]"]
    rewrite_model(hub_folder, vocab={token: token_id - 1 for token, token_id in vocab.items()})
    assert re.fullmatch(r"error: .*vocab\.txt has 21127 tokens but %s says vocab_size 21128"
                        % re.escape(os.path.join(hub_folder, "config.json")), refusal(hub_folder, tmp_path, capsys))


@pytest.mark.parametrize("vocab, reason", [
    ({"[PAD]": 0, "[UNK]": 2}, "its WordPiece vocab does not number its 2 tokens 0 to 1, each once"),
    ({"[PAD]": 0, "[UNK]": "1"}, "its WordPiece vocab does not number its 2 tokens 0 to 1, each once"),
    ({"[PAD]": 0, "[UNK]": True}, "its WordPiece vocab does not number its 2 tokens 0 to 1, each once"),
    (["[PAD]", "[UNK]"], "its WordPiece vocab is a list, not {token: id}"),
    ({"[PAD]": 0, "a\nb": 1}, "token 1 holds a line break"),
])
def test_a_broken_wordpiece_vocab_is_refused(hub_folder, tmp_path, capsys, vocab, reason):
    path = rewrite_model(hub_folder, vocab=vocab)
    assert refusal(hub_folder, tmp_path, capsys) == "error: %s cannot give a BERT vocabulary: %s" % (path, reason)


def test_a_tokenizer_json_that_is_not_json_is_refused(hub_folder, tmp_path, capsys):
    path = os.path.join(hub_folder, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as writer:
        writer.write("[" * 100000)  # nested too deep for Python's parser: a RecursionError, not a traceback
    assert refusal(hub_folder, tmp_path, capsys).startswith(
        "error: %s cannot give a BERT vocabulary: it is not a tokenizers JSON file" % path)


def test_a_huge_tokenizer_json_is_refused_before_it_is_read(hub_folder, monkeypatch):
    monkeypatch.setattr(bert_checkpoint, "MAX_TOKENIZER_JSON_BYTES", 1000)
    with pytest.raises(CheckpointError, match="cannot give a BERT vocabulary: it has [0-9]+ bytes, over the 1000 "):
        find_checkpoint(hub_folder)


def test_without_vocab_txt_or_tokenizer_json_vocab_txt_is_named(hub_folder):
    os.remove(os.path.join(hub_folder, "tokenizer.json"))
    with pytest.raises(CheckpointError, match="vocab.txt is missing from Hugging Face model folder"):
        find_checkpoint(hub_folder)
