"""`--bert-dir` takes the Chinese BERTs of the Hugging Face Hub: a folder in each of its layouts, or
an id in the Hub's cache, gives transformers' own numbers, and a .bin never runs its pickle."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import relation_extraction
import sentiment
import subject_extraction
import synthetic
from bert_checkpoint import CheckpointError, HubCheckpoint, find_checkpoint, load_bert
from fine_tuning import run
from hub_layouts import HUB_LAYOUTS, hub_tensors_from_google, write_google_folder, write_hub_folder
from transformers_reference import REFERENCE_PATH, SMALL_CONFIG, small_bert_tensors

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def reference():
    with open(REFERENCE_PATH, encoding="utf-8") as reader:
        return json.load(reader)


@pytest.fixture(scope="module")
def small_tensors():
    return small_bert_tensors()


def encoder_output(bert_dir, reference):
    bert = load_bert(find_checkpoint(str(bert_dir)))
    return bert.predict([np.array([reference["token_ids"]]), np.array([reference["segment_ids"]])], verbose=0)[0]


# Each Hugging Face layout, with BertModel's names or BertForPreTraining's (`bert.`), LayerNorm as
# weight/bias or as the gamma/beta of 2019 uploads.
LAYOUTS = [("safetensors", "", "weight"), ("sharded-safetensors", "bert.", "weight"),
           ("bin", "bert.", "gamma"), ("bin-legacy", "", "gamma"), ("sharded-bin", "", "weight")]


@pytest.mark.parametrize("layout, prefix, layer_norm_names", LAYOUTS)
def test_every_hub_layout_gives_transformers_own_output(tmp_path, small_tensors, reference, layout, prefix,
                                                        layer_norm_names):
    folder = write_hub_folder(str(tmp_path / layout), SMALL_CONFIG, small_tensors, layout, prefix, layer_norm_names)
    checkpoint = find_checkpoint(folder)
    assert isinstance(checkpoint, HubCheckpoint)
    output = encoder_output(folder, reference)
    # transformers' BertModel with the tanh form of GELU, which keras-bert and Google's BERT compute
    np.testing.assert_allclose(output, reference["gelu_new"], atol=1e-4, rtol=0)
    # the erf form ("gelu" in the config) is measurably different: the comparison can tell them apart
    assert np.abs(output - np.array(reference["gelu"])).max() > 1e-4


def test_the_same_weights_in_googles_layout_give_the_same_output(tmp_path, small_tensors, reference):
    folder = write_google_folder(str(tmp_path / "google"), SMALL_CONFIG, small_tensors)
    np.testing.assert_allclose(encoder_output(folder, reference), reference["gelu_new"], atol=1e-4, rtol=0)


def test_every_layout_is_covered():
    assert sorted(layout for layout, _, _ in LAYOUTS) == sorted(HUB_LAYOUTS)


# ---------------------------------------------------------------------------------------------
# What is refused, with the file and the tensor named
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def hub_folder(tmp_path, small_tensors):
    return write_hub_folder(str(tmp_path / "hub"), SMALL_CONFIG, small_tensors)


def rewrite_config(folder, **changes):
    path = os.path.join(folder, "config.json")
    with open(path, encoding="utf-8") as reader:
        config = json.load(reader)
    with open(path, "w", encoding="utf-8") as writer:
        json.dump(dict(config, **changes), writer)
    return path


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta", "ernie"])
def test_a_config_that_is_not_bert_is_refused(hub_folder, model_type):
    path = rewrite_config(hub_folder, model_type=model_type)
    with pytest.raises(CheckpointError, match=re.escape("%s says model_type %r" % (path, model_type))):
        find_checkpoint(hub_folder)


def test_a_vocab_that_disagrees_with_the_config_is_refused(hub_folder):
    path = rewrite_config(hub_folder, vocab_size=21129)
    with pytest.raises(CheckpointError, match=re.escape("has 21128 tokens but %s says vocab_size 21129" % path)):
        find_checkpoint(hub_folder)


def test_a_missing_tensor_is_named(tmp_path, small_tensors):
    tensors = {name: value for name, value in small_tensors.items() if name != "encoder.layer.1.output.dense.weight"}
    folder = write_hub_folder(str(tmp_path / "hub"), SMALL_CONFIG, tensors)
    with pytest.raises(CheckpointError, match=r"model\.safetensors has no tensor encoder\.layer\.1\.output\.dense\.weight"):
        find_checkpoint(folder)


def test_a_wrongly_shaped_tensor_is_named_with_both_shapes(tmp_path, small_tensors):
    tensors = dict(small_tensors, **{"encoder.layer.0.attention.self.query.weight": np.zeros((32, 16), np.float32)})
    folder = write_hub_folder(str(tmp_path / "hub"), SMALL_CONFIG, tensors)
    with pytest.raises(CheckpointError, match=r"tensor encoder\.layer\.0\.attention\.self\.query\.weight has shape "
                                              r"\[32, 16\] in .*model\.safetensors but .*config\.json says \[32, 32\]"):
        find_checkpoint(folder)


def test_a_folder_with_only_tf_model_h5_says_which_files_it_reads(hub_folder):
    os.rename(os.path.join(hub_folder, "model.safetensors"), os.path.join(hub_folder, "tf_model.h5"))
    with pytest.raises(CheckpointError, match=r"no weights in Hugging Face model folder .*model\.safetensors.*"
                                              r"pytorch_model\.bin.*its tf_model\.h5 is not read"):
        find_checkpoint(hub_folder)


# ---------------------------------------------------------------------------------------------
# Fine-tuning from a Hub folder: the same run as from Google's layout, in all three scripts
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_hub_folder(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint's weights in the Hub's layout."""
    folder = str(tmp_path_factory.mktemp("tiny_hub"))
    return write_hub_folder(folder, tiny_checkpoint.config(), hub_tensors_from_google(tiny_checkpoint.bert_dir))


def epoch_lines(output):
    """Each epoch's loss and dev metric (its seconds and tokens/s vary from run to run)."""
    return re.findall(r"^epoch \d+: loss [\d.]+, dev [a-z ]+[\d.]+", output, flags=re.MULTILINE)


def test_the_same_weights_in_both_layouts_give_the_same_fine_tuning_run(tiny_checkpoint, tiny_hub_folder, tmp_path,
                                                                         capsys):
    (tmp_path / "data").mkdir()
    synthetic.write_sentiment(str(tmp_path / "data"), 200, seed=3)
    runs = {}
    for name, bert_dir in (("google", tiny_checkpoint.bert_dir), ("hub", tiny_hub_folder)):
        sentiment.main(["--bert-dir", bert_dir, "--data-dir", str(tmp_path / "data"), "--output-dir",
                        str(tmp_path / name), "--epochs", "1", "--batch-size", "16", "--lr", "1e-3"])
        captured = capsys.readouterr()
        runs[name] = epoch_lines(captured.out)
        assert "Google TF1 checkpoint" in captured.err if name == "google" else "safetensors" in captured.err
    assert len(runs["hub"]) == 1
    assert runs["hub"] == runs["google"]


def test_predict_and_export_work_from_a_hub_folder(tiny_hub_folder, tmp_path, capsys, serve_standalone):
    (tmp_path / "data").mkdir()
    synthetic.write_sentiment(str(tmp_path / "data"), 60, seed=5)
    flags = ["--bert-dir", tiny_hub_folder, "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out")]
    sentiment.main(flags + ["--epochs", "1"])
    texts = ["服务很好，下次还来", "太差了"]
    sentiment.main(flags + ["--predict", *texts])
    printed = re.findall(r"^(\d\.\d{4})\t(.*)$", capsys.readouterr().out, flags=re.MULTILINE)
    assert [text for _, text in printed] == texts
    sentiment.main(flags + ["--export", str(tmp_path / "export")])
    _, served = serve_standalone(tmp_path / "export", text=texts)["positive_probability"]
    np.testing.assert_allclose(served, [float(probability) for probability, _ in printed], atol=2e-3)


@pytest.mark.parametrize("script, write_data", [(relation_extraction, synthetic.write_relation),
                                                (subject_extraction, synthetic.write_subject)])
def test_the_span_scripts_train_an_epoch_from_a_hub_folder(tiny_hub_folder, tmp_path, capsys, script, write_data):
    (tmp_path / "data").mkdir()
    write_data(str(tmp_path / "data"), 120, seed=2)
    script.main(["--bert-dir", tiny_hub_folder, "--data-dir", str(tmp_path / "data"), "--output-dir",
                 str(tmp_path / "out"), "--epochs", "1", "--batch-size", "16", "--lr", "1e-3"])
    captured = capsys.readouterr()
    assert "checkpoint: %s, safetensors, 2 layers, hidden 128" % tiny_hub_folder in captured.err
    assert len(epoch_lines(captured.out)) == 1
    assert os.path.isfile(tmp_path / "out" / "best_weights.h5")


# ---------------------------------------------------------------------------------------------
# A Hub id, offline, through the Hub's own cache
# ---------------------------------------------------------------------------------------------

def lay_out_hub_cache(hf_home, repo_id, source_folder, commit=COMMIT):
    """The Hub cache as huggingface_hub leaves it after a download: snapshots/<commit>/ and refs/main."""
    repo = os.path.join(hf_home, "hub", "models--" + repo_id.replace("/", "--"))
    shutil.copytree(source_folder, os.path.join(repo, "snapshots", commit))
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as writer:
        writer.write(commit)


def offline_env(hf_home):
    return dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", BERT_DIR="")


def test_a_hub_id_in_the_cache_trains_offline_and_names_its_commit(tiny_hub_folder, tmp_path):
    lay_out_hub_cache(str(tmp_path / "hf"), "test-org/tiny-chinese-bert", tiny_hub_folder)
    (tmp_path / "data").mkdir()
    synthetic.write_sentiment(str(tmp_path / "data"), 100, seed=4)
    result = subprocess.run(
        [sys.executable, "sentiment.py", "--bert-dir", "test-org/tiny-chinese-bert@" + COMMIT, "--epochs", "1",
         "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"), "--lr", "1e-3"],
        cwd=PROJECT_DIR, env=offline_env(tmp_path / "hf"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoint: test-org/tiny-chinese-bert at commit %s" % COMMIT in result.stderr
    assert "safetensors, 2 layers, hidden 128" in result.stderr
    assert re.search(r"^best dev accuracy: \d\.\d{4}$", result.stdout, flags=re.MULTILINE)


def test_a_hub_id_by_branch_resolves_through_refs(tiny_hub_folder, tmp_path, monkeypatch):
    lay_out_hub_cache(str(tmp_path / "hf"), "test-org/tiny-chinese-bert", tiny_hub_folder)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    checkpoint = find_checkpoint("test-org/tiny-chinese-bert")
    assert checkpoint.bert_dir.endswith(os.path.join("snapshots", COMMIT))
    assert checkpoint.hub_id == "test-org/tiny-chinese-bert"


def test_an_unknown_id_offline_exits_2_naming_the_id_and_the_two_ways_out(tmp_path):
    result = subprocess.run([sys.executable, "sentiment.py", "--bert-dir", "no-such-org/no-such-bert"],
                            cwd=PROJECT_DIR, env=offline_env(tmp_path / "hf"), capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1
    assert "no folder no-such-org/no-such-bert here, and getting it from the Hugging Face Hub failed" in error[0]
    assert "HF_ENDPOINT" in error[0] and "pass its path as --bert-dir" in error[0]


def test_a_bin_whose_pickle_would_run_a_command_exits_2_and_runs_nothing(hub_folder, tmp_path, capsys):
    from torch_pickles import pickle_global, pickle_state_dict, pickle_str, write_zip

    target = tmp_path / "pwned"
    command = pickle_global("os", "system") + b"(" + pickle_str("touch '%s'" % target) + b"tR"
    os.remove(os.path.join(hub_folder, "model.safetensors"))
    bin_path = write_zip(os.path.join(hub_folder, "pytorch_model.bin"),
                         pickle_state_dict([("embeddings.word_embeddings.weight", command)]), {})
    with pytest.raises(SystemExit) as exit_info:
        run(sentiment.main, ["--bert-dir", hub_folder, "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "error: %s: refusing to load: its pickle asks for os.system" % bin_path in capsys.readouterr().err
    assert not target.exists()
