"""sentiment.py: data reading, per-batch padding, the blog's model, learning, best weights, --predict."""
import contextlib
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import sentiment
from classification_data import Labels, read_examples, read_texts_to_classify
from fine_tuning import UserError, parse_flags, run
from synthetic import pair_examples, sentiment_examples, topic_examples


def write_tsv(path, rows):
    with open(path, "w", encoding="utf-8") as writer:
        writer.writelines("%s\t%s\n" % row for row in rows)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sentiment")
    examples = sentiment_examples(360, seed=1)
    write_tsv(folder / "train.tsv", examples[60:])
    write_tsv(folder / "dev.tsv", examples[:60])
    return folder


def test_without_dev_file_a_tenth_is_held_out_the_same_way_for_a_seed(tmp_path):
    write_tsv(tmp_path / "train.tsv", [("评论%d" % i, i % 2) for i in range(100)])
    (first, labels), (again, _) = sentiment.load_data(str(tmp_path), seed=3), sentiment.load_data(str(tmp_path), seed=3)
    assert len(first["dev"]) == 10 and len(first["train"]) == 90
    assert first["dev"] == again["dev"]
    assert not set(first["dev"]) & set(first["train"])
    assert sentiment.load_data(str(tmp_path), seed=4)[0]["dev"] != first["dev"]
    assert labels.binary and not labels.text_pair


def test_a_test_file_without_labels_is_for_prediction_only(tmp_path, capsys):
    write_tsv(tmp_path / "train.tsv", [("评论%d" % i, i % 2) for i in range(20)])
    (tmp_path / "test.tsv").write_text("qid\ttext_a\n0\t不错\n1\t很差\n", encoding="utf-8")
    assert sentiment.load_data(str(tmp_path), seed=0)[0]["test"] is None
    assert "test.tsv has no labels: no test accuracy; predict its texts with --predict-file" in capsys.readouterr().out
    assert [example.texts for example in read_texts_to_classify(str(tmp_path / "test.tsv"))] == [("不错",), ("很差",)]
    (tmp_path / "texts.txt").write_text("不错\n\n  很差\n", encoding="utf-8")
    assert [example.texts for example in read_texts_to_classify(str(tmp_path / "texts.txt"))] == [("不错",), ("很差",)]


def test_named_files_replace_those_of_the_data_dir_and_a_train_file_alone_holds_a_tenth_out(tmp_path, tiny_checkpoint):
    reviews = tmp_path / "weibo_senti_100k.csv"
    reviews.write_text("label,review\n" + "".join("%d,评论%d\n" % (i % 2, i) for i in range(50)), encoding="utf-8")
    args, _ = parse_flags(sentiment.build_parser(), ["--bert-dir", tiny_checkpoint.bert_dir, "--train-file", str(reviews)],
                          sentiment.TINY_BERT_SETTINGS)
    assert args.data_dir == str(tmp_path)  # not the bundled sample, whose dev.tsv would be taken as dev
    data, _ = sentiment.load_data(args.data_dir, args.seed, args.train_file, args.dev_file, args.test_file)
    assert (len(data["train"]), len(data["dev"]), data["test"]) == (45, 5, None)

    dev = tmp_path / "dev.csv"
    dev.write_text("label,text\n1,好\n", encoding="utf-8")
    data, _ = sentiment.load_data(sentiment.SETTINGS["data_dir"], 0, str(reviews), str(dev), str(dev))
    assert len(data["train"]) == 50
    assert [(example.texts, example.label) for example in data["dev"]] == [(("好",), "1")]
    assert [(example.texts, example.label) for example in data["test"]] == [(("好",), "1")]


@pytest.mark.parametrize("name, content, message", [
    ("train.tsv", "qid\tlabel\t评论\n0\t1\t好\n",
     r"train\.tsv line 1: expected a text column named text_a, text, review, sentence, sentence1, content in the "
     r"header, found qid, label, 评论"),
    ("train.csv", "cat,review\n书,好\n", r"train\.csv line 2: expected a label column, found none"),
    ("train.csv", "label,review\n1,好,多\n", r"train\.csv line 2: expected 2 columns \(label, review\), found 3"),
    ("train.csv", 'label,review\n1,"两\n行"\n1,好\n', r"train\.csv line 2: every example has the label '1'"),
    ("train.csv", "label,review\n1,好\n0,差\n0\n", r"train\.csv line 4: expected 2 columns \(label, review\), found 1"),
])
def test_malformed_headed_files_exit_2_naming_the_line_and_the_expectation(
        tmp_path, tiny_checkpoint, capsys, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        run(sentiment.main, ["--bert-dir", tiny_checkpoint.bert_dir, "--train-file", str(path),
                             "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert re.search("^error: .*" + message, capsys.readouterr().err, re.M)  # after the device line


def test_batches_are_padded_to_their_own_longest_text_and_aligned_with_the_tokenizer(tokenizer):
    texts = ["好", "非常好的酒店", "差评，太差了"]
    encoded = sentiment.encode_texts(tokenizer, texts, maxlen=5, source="test")
    targets = sentiment.label_targets(sentiment.BLOG_LABELS, ["1", "1", "0"])
    (token_ids, segment_ids), labels = sentiment.make_batch(encoded, targets, [0, 1])
    assert token_ids.shape == segment_ids.shape == (2, 7)  # "非常好的酒" cut to 5 characters + [CLS], [SEP]
    assert list(token_ids[0]) == tokenizer.encode(first="好")[0] + [0] * 4
    assert list(token_ids[1]) == tokenizer.encode(first="非常好的酒")[0]
    assert labels.tolist() == [[1.0], [1.0]]


def test_model_gives_one_probability_per_text_for_0_1_labels_and_one_per_label_for_others(tiny_checkpoint, tokenizer):
    encoded = sentiment.encode_texts(tokenizer, ["好", "非常好的酒店"], maxlen=100, source="test")
    model = sentiment.build_model(tiny_checkpoint)
    assert model.output.shape[1] == 1 and model.layers[-1].activation.__name__ == "sigmoid"  # the blog's head
    probabilities = sentiment.label_probabilities(model, encoded, batch_size=2)
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1)
    assert np.all((probabilities > 0) & (probabilities < 1))
    model = sentiment.build_model(tiny_checkpoint, Labels(["neg", "pos"]))  # two labels, but not 0/1: softmax
    assert model.output.shape[1] == 2 and model.layers[-1].activation.__name__ == "softmax"
    assert sentiment.label_probabilities(model, encoded, batch_size=2).shape == (2, 2)


def test_training_learns_a_synthetic_sentiment_task_keeps_best_weights_and_predict_reproduces_them(
        tiny_checkpoint, synthetic_dir, tmp_path, capsys):
    output_dir = str(tmp_path / "run")
    common = ["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", output_dir, "--lr", "1e-3"]
    sentiment.main(common + ["--data-dir", str(synthetic_dir), "--epochs", "3", "--batch-size", "16"])
    lines = capsys.readouterr().out.strip().split("\n")
    best = float(lines[-1].split(": ")[1])
    assert lines[-1].startswith("best dev accuracy: ")
    assert best >= 0.8  # chance is 0.5: the model has learned which phrases are positive
    assert os.path.isfile(os.path.join(output_dir, "best_weights.h5"))
    assert not os.path.exists(os.path.join(output_dir, "resume"))  # a finished run leaves nothing to resume

    dev = read_examples(str(synthetic_dir / "dev.tsv"))
    predict_file = tmp_path / "texts.txt"
    predict_file.write_text("\n".join(example.texts[0] for example in dev), encoding="utf-8")
    sentiment.main(common + ["--predict-file", str(predict_file)])
    printed = [line.split("\t") for line in capsys.readouterr().out.strip().split("\n")]
    assert [text for _, text in printed] == [example.texts[0] for example in dev]
    correct = [(float(probability) > 0.5) == (example.label == "1") for (probability, _), example in zip(printed, dev)]
    assert np.mean(correct) == pytest.approx(best, abs=5e-5)  # best is printed to 4 decimals


def test_a_chnsenticorp_folder_trains_as_it_is_and_its_unlabelled_test_file_is_not_scored(
        tiny_checkpoint, tmp_path, capsys):
    examples = sentiment_examples(100, seed=5)
    folder = tmp_path / "ChnSentiCorp"
    folder.mkdir()
    (folder / "train.tsv").write_text(
        "label\ttext_a\n" + "".join("%d\t%s\n" % (label, text) for text, label in examples[20:]), encoding="utf-8")
    (folder / "dev.tsv").write_text("qid\tlabel\ttext_a\n" + "".join(
        "%d\t%d\t%s\n" % (i, label, text) for i, (text, label) in enumerate(examples[:20])), encoding="utf-8")
    (folder / "test.tsv").write_text(
        "qid\ttext_a\n" + "".join("%d\t%s\n" % (i, text) for i, (text, _) in enumerate(examples[:10])), encoding="utf-8")
    sentiment.main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(folder),
                    "--output-dir", str(tmp_path / "out"), "--epochs", "1"])
    output = capsys.readouterr().out
    positive = sum(label for _, label in examples[20:])
    assert "train: 80 texts, %.1f%% positive" % (100.0 * positive / 80) in output
    assert "dev: 20 texts" in output and "test.tsv has no labels" in output
    assert "test accuracy with" not in output
    assert re.fullmatch(r"best dev accuracy: \d\.\d{4}", output.strip().splitlines()[-1])


def test_predict_without_trained_weights_says_how_to_train(tiny_checkpoint, tmp_path):
    with pytest.raises(UserError, match=r"no trained weights at .*python sentiment.py --output-dir"):
        sentiment.main(["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(tmp_path), "--predict", "好"])


def test_help_lists_the_shared_flags():
    result = subprocess.run([sys.executable, "sentiment.py", "--help"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(sentiment.__file__)))
    assert result.returncode == 0
    for flag in ("--bert-dir", "--data-dir", "--output-dir", "--epochs", "--batch-size", "--maxlen",
                 "--lr", "--seed", "--resume", "--predict", "--predict-file", "--train-file", "--dev-file",
                 "--test-file", "--columns", "--submission"):
        assert flag in result.stdout


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    """A model trained one epoch on a slice of the bundled reviews, and its export."""
    folder = tmp_path_factory.mktemp("sentiment_export")
    bundled = os.path.join(os.path.dirname(os.path.abspath(sentiment.__file__)), "data", "sentiment")
    train, dev = (read_examples(os.path.join(bundled, name)) for name in ("train.tsv", "dev.tsv"))
    write_tsv(folder / "train.tsv", [(example.texts[0], example.label) for example in train[:200]])
    write_tsv(folder / "dev.tsv", [(example.texts[0], example.label) for example in dev[:50]])
    flags = ["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(folder / "run"), "--lr", "1e-3"]
    sentiment.main(flags + ["--data-dir", str(folder), "--epochs", "1"])
    sentiment.main(flags + ["--export", str(folder / "export")])
    return flags, folder / "export", [example.texts[0] for example in dev[:200]]


def test_export_answers_raw_text_without_keras_bert_as_predict_does(exported, serve_standalone, tmp_path, capsys):
    flags, export_dir, texts = exported
    texts += ["", "  ", "Ｆｕｌｌ　ｗｉｄｔｈ ＯＫ😀", "好" * 300]
    outputs = serve_standalone(export_dir, text=texts)
    assert outputs["positive_probability"][0] == "float32"
    predict_file = tmp_path / "texts.txt"
    predict_file.write_text("\n".join(texts[:-4]), encoding="utf-8")
    capsys.readouterr()
    sentiment.main(flags + ["--predict-file", str(predict_file), "--predict"] + texts[-3:])
    printed = [float(line.split("\t")[0]) for line in capsys.readouterr().out.split("\n") if "\t" in line]
    served = outputs["positive_probability"][1]
    assert len(printed) == len(texts) - 1
    # --predict prints 4 decimals; the two differ by that rounding and float noise only
    assert np.allclose(served[-3:] + served[:-4], printed, rtol=0, atol=1e-4)  # --predict's texts come first
    assert len(set(np.round(served, 3))) > 5  # the model tells the texts apart: the comparison means something


def test_export_without_trained_weights_says_how_to_train(tiny_checkpoint, tmp_path):
    flags = ["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(tmp_path / "run")]
    with pytest.raises(UserError, match=r"no trained weights at .*python sentiment.py --output-dir"):
        sentiment.main(flags + ["--export", str(tmp_path / "export")])
    assert not os.path.exists(tmp_path / "export")


# ---------------------------------------------------------------------------------------------
# Any labels, sentence pairs: the template beyond the blog's 0/1 reviews
# ---------------------------------------------------------------------------------------------

def write_json_lines(path, rows):
    with open(path, "w", encoding="utf-8") as writer:
        writer.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def train_json_lines(tiny_checkpoint, folder, rows):
    """Train 3 epochs on rows written as CLUE's train.json and dev.json (40 rows); (flags, printed lines, dev rows)."""
    write_json_lines(folder / "train.json", rows[40:])
    write_json_lines(folder / "dev.json", rows[:40])
    flags = ["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(folder / "run"), "--lr", "1e-3"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        sentiment.main(flags + ["--data-dir", str(folder), "--epochs", "3", "--batch-size", "16"])
    return flags, printed.getvalue().strip().split("\n"), rows[:40]


@pytest.fixture(scope="module")
def topics_run(tiny_checkpoint, tmp_path_factory):
    """Four TNEWS topics, told apart by their words, trained once for the tests below."""
    return train_json_lines(tiny_checkpoint, tmp_path_factory.mktemp("topics"), topic_examples(240, seed=3))


@pytest.fixture(scope="module")
def pairs_run(tiny_checkpoint, tmp_path_factory):
    """Sentence pairs with three labels, told by a cue word of the second sentence only, trained once."""
    return train_json_lines(tiny_checkpoint, tmp_path_factory.mktemp("pairs"), pair_examples(240, seed=4))


def best_of(lines):
    assert lines[-1].startswith("best dev accuracy: ")
    return float(lines[-1].split(": ")[1])


def test_four_labels_are_learnt_with_a_softmax_head_and_macro_f1_each_epoch(topics_run):
    flags, lines, dev = topics_run
    output_dir = flags[flags.index("--output-dir") + 1]
    assert best_of(lines) >= 0.6  # chance is 0.25
    assert "train: 200 texts, 4 labels" in "\n".join(lines)
    assert all(re.search(r", macro-F1 \d\.\d{4}, ", line) for line in lines if line.startswith("epoch "))
    with open(os.path.join(output_dir, "labels.json"), encoding="utf-8") as reader:
        saved = json.load(reader)
    assert saved["labels"] == ["102", "103", "104", "107"] and saved["names"]["103"] == "news_sports"
    assert not saved["text_pair"]


def test_the_dev_report_and_errors_are_those_of_the_best_weights(topics_run):
    flags, lines, dev = topics_run
    output_dir = flags[flags.index("--output-dir") + 1]
    report = open(os.path.join(output_dir, "dev_report.txt"), encoding="utf-8").read()
    assert report in "\n".join(lines) + "\n"  # printed too
    names = ["news_entertainment", "news_sports", "news_finance", "news_tech"]
    table = {row.split()[0]: row.split()[1:] for row in report.split("\naccuracy")[0].splitlines()[1:]}
    assert sorted(table) == sorted(names)
    matrix = np.array([[int(count) for count in row.split()[1:]]
                       for row in report.split("predicted")[1].splitlines()[1:]])
    assert matrix.shape == (4, 4) and matrix.sum() == 40
    assert np.trace(matrix) / 40 == pytest.approx(best_of(lines))
    supports = [int(table[name][3]) for name in names]
    assert supports == matrix.sum(axis=1).tolist()
    errors = open(os.path.join(output_dir, "dev_errors.tsv"), encoding="utf-8").read().strip().split("\n")
    assert len(errors) - 1 == 40 - np.trace(matrix)  # a header, then each wrong prediction
    for error in errors[1:]:
        line, gold, predicted, _, text = error.split("\t")
        assert gold != predicted and dev[int(line) - 1]["sentence"] == text


def test_confusion_matrix_rows_are_gold_labels_and_per_label_scores_follow_from_it():
    matrix = sentiment.confusion_matrix([0, 0, 0, 1, 1, 2], [0, 1, 1, 1, 1, 0], 3)
    assert matrix.tolist() == [[1, 2, 0], [0, 2, 0], [1, 0, 0]]
    precision, recall, f1, support = sentiment.per_label_scores(matrix)
    assert np.allclose(precision, [1 / 2, 2 / 4, 0]) and np.allclose(recall, [1 / 3, 1, 0])
    assert np.allclose(f1, [0.4, 2 / 3, 0]) and support.tolist() == [3, 2, 1]
    assert sentiment.macro_f1(matrix) == pytest.approx((0.4 + 2 / 3) / 3)
    report = sentiment.classification_report(matrix, Labels(["a", "b", "c"], {"c": "名字"}))
    assert [row.split() for row in report.split("in the order above):\n")[1].splitlines()] == [
        ["a", "1", "2", "0"], ["b", "0", "2", "0"], ["名字", "1", "0", "0"]]
    assert "accuracy 0.5000, macro-F1 0.3556, 6 examples" in report


def test_predict_prints_label_names_and_writes_clue_submissions_as_training_scored_them(topics_run, tmp_path, capsys):
    flags, lines, dev = topics_run
    test_file = tmp_path / "test.json"
    write_json_lines(test_file, [{"id": 100 + i, "sentence": row["sentence"]} for i, row in enumerate(dev)])
    sentiment.main(flags + ["--predict-file", str(test_file), "--submission", str(tmp_path / "tnews_predict.json")])
    printed = [line.split("\t") for line in capsys.readouterr().out.strip().split("\n")[:-1]]
    assert [text for _, _, text in printed] == [row["sentence"] for row in dev]
    assert all(0.25 <= float(probability) <= 1 for _, probability, _ in printed)
    correct = [name == row["label_desc"] for (name, _, _), row in zip(printed, dev)]
    assert np.mean(correct) == pytest.approx(best_of(lines))
    submitted = [json.loads(line) for line in open(tmp_path / "tnews_predict.json", encoding="utf-8")]
    assert [row["id"] for row in submitted] == list(range(100, 140))
    code = {row["label_desc"]: row["label"] for row in topic_examples(240, seed=3)}
    assert [row["label"] for row in submitted] == [code[name] for name, _, _ in printed]


def test_a_pair_task_is_learnt_from_its_second_sentence_and_predicted_two_texts_at_a_time(pairs_run, tmp_path, capsys):
    flags, lines, dev = pairs_run
    assert best_of(lines) >= 0.6  # chance is about 0.33; the label's cue is in the second sentence only
    assert "train: 200 pairs, 3 labels" in "\n".join(lines)
    pairs_file = tmp_path / "pairs.tsv"
    pairs_file.write_text("".join("%s\t%s\n" % (row["sentence1"], row["sentence2"]) for row in dev[:4]),
                          encoding="utf-8")
    sentiment.main(flags + ["--predict", dev[0]["sentence1"], dev[0]["sentence2"], "--predict-file", str(pairs_file)])
    printed = [line.split("\t") for line in capsys.readouterr().out.strip().split("\n")]
    assert [tuple(line[2:]) for line in printed] == [(row["sentence1"], row["sentence2"]) for row in dev[:1] + dev[:4]]
    assert printed[0][:2] == printed[1][:2]  # the same pair, from --predict and from the file
    with pytest.raises(UserError, match="this model classifies pairs of texts; give an even number of TEXTs, 3 given"):
        sentiment.main(flags + ["--predict", "甲", "乙", "丙"])


def test_resume_with_other_labels_than_the_interrupted_run_is_refused(tiny_checkpoint, tmp_path):
    Labels(["0", "1", "2"]).save(str(tmp_path / "labels.json"))
    write_tsv(tmp_path / "train.tsv", [("评论%d" % i, i % 2) for i in range(20)])
    with pytest.raises(UserError, match="labels.json holds other labels than .*: resume with the data of the"):
        sentiment.main(["--bert-dir", tiny_checkpoint.bert_dir, "--data-dir", str(tmp_path),
                        "--output-dir", str(tmp_path), "--resume"])


@pytest.mark.parametrize("run_name", ["topics_run", "pairs_run"])
def test_export_of_a_multi_label_or_pair_model_answers_as_predict_does(run_name, request, serve_standalone, tmp_path,
                                                                        capsys):
    flags, _, dev = request.getfixturevalue(run_name)
    pair = run_name == "pairs_run"
    sentiment.main(flags + ["--export", str(tmp_path / "export")])
    texts = [(row["sentence1"], row["sentence2"]) if pair else (row["sentence"],) for row in dev]
    texts.append(("好" * 150, "坏" * 60) if pair else ("长" * 300,))  # cut to --maxlen: the longer text first
    inputs = {"text": [text[0] for text in texts]}
    if pair:
        inputs["text_b"] = [text[1] for text in texts]
    outputs = serve_standalone(tmp_path / "export", **inputs)
    assert outputs["probabilities"][0] == "float32" and outputs["label"][0] == "string"
    predict_file = tmp_path / "texts.tsv"
    predict_file.write_text("".join("\t".join(text) + "\n" for text in texts), encoding="utf-8")
    capsys.readouterr()
    sentiment.main(flags + ["--predict-file", str(predict_file)])
    printed = [line.split("\t") for line in capsys.readouterr().out.strip().split("\n") if "\t" in line]
    labels = Labels.load(os.path.join(flags[flags.index("--output-dir") + 1], "labels.json"))
    assert [labels.name(label) for label in outputs["label"][1]] == [name for name, *_ in printed]
    served = np.asarray(outputs["probabilities"][1])
    assert served.shape == (len(texts), len(labels))
    assert np.allclose(served.max(axis=1), [float(probability) for _, probability, *_ in printed], atol=1e-4)
    assert len(set(np.round(served[:, 0], 3))) > 5  # the model tells the texts apart: the comparison means something


@pytest.fixture(scope="module")
def binary_pairs_run(tiny_checkpoint, tmp_path_factory):
    """AFQMC-like pairs with 0/1 labels: the blog's sigmoid head reading two texts."""
    rows = [dict(row, label="1" if row["label"] == "entailment" else "0") for row in pair_examples(140, seed=5)]
    return train_json_lines(tiny_checkpoint, tmp_path_factory.mktemp("binary_pairs"), rows)


def test_export_of_a_0_1_pair_model_answers_as_predict_does(binary_pairs_run, serve_standalone, tmp_path, capsys):
    flags, _, dev = binary_pairs_run
    sentiment.main(flags + ["--export", str(tmp_path / "export")])
    pairs = [(row["sentence1"], row["sentence2"]) for row in dev] + [("好" * 150, "坏" * 60)]
    outputs = serve_standalone(tmp_path / "export", text=[a for a, _ in pairs], text_b=[b for _, b in pairs])
    assert outputs["positive_probability"][0] == "float32"
    predict_file = tmp_path / "pairs.tsv"
    predict_file.write_text("".join("%s\t%s\n" % pair for pair in pairs), encoding="utf-8")
    capsys.readouterr()
    sentiment.main(flags + ["--predict-file", str(predict_file)])
    printed = [float(line.split("\t")[0]) for line in capsys.readouterr().out.strip().split("\n") if "\t" in line]
    served = outputs["positive_probability"][1]
    assert len(printed) == len(pairs) and np.allclose(served, printed, rtol=0, atol=1e-4)
    assert len(set(np.round(served, 3))) > 5  # the model tells the pairs apart: the comparison means something
