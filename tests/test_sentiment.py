"""sentiment.py: data reading, per-batch padding, the blog's model, learning, best weights, --predict."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import sentiment
from fine_tuning import UserError, parse_flags, run
from synthetic import sentiment_examples


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


def test_reads_text_tab_label_lines_and_skips_a_header(tmp_path):
    path = tmp_path / "train.tsv"
    # A header naming no known column: skipped since its label is not a number
    path.write_text("内容\t标签\n好评\t1\n带\t制表符的差评\t0\n", encoding="utf-8")
    assert sentiment.read_tsv(str(path)) == [("好评", 1), ("带\t制表符的差评", 0)]


@pytest.mark.parametrize("content, message", [
    ("好评\t1\n没有标签的一行\n", r"line 2: expected text<TAB>label"),
    ("好评\t1\n差评\t2\n", r"line 2: the label must be 0 or 1, found '2'"),
    ("\n\n", r"is empty"),
])
def test_malformed_files_name_the_line_and_the_expectation(tmp_path, content, message):
    path = tmp_path / "train.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        sentiment.read_tsv(str(path))


def test_gbk_file_is_refused_with_the_conversion_to_run(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes("好评\t1\n差评\t0\n".encode("gbk"))
    with pytest.raises(UserError, match=r"line 1 is not UTF-8 .*GB18030: iconv"):
        sentiment.read_tsv(str(path))


def test_without_dev_file_a_tenth_is_held_out_the_same_way_for_a_seed(tmp_path):
    write_tsv(tmp_path / "train.tsv", [("评论%d" % i, i % 2) for i in range(100)])
    first, again = sentiment.load_data(str(tmp_path), seed=3), sentiment.load_data(str(tmp_path), seed=3)
    assert len(first["dev"]) == 10 and len(first["train"]) == 90
    assert first["dev"] == again["dev"]
    assert not set(first["dev"]) & set(first["train"])
    assert sentiment.load_data(str(tmp_path), seed=4)["dev"] != first["dev"]


def test_a_chnsenticorp_header_picks_the_label_and_text_columns_and_ignores_the_others(tmp_path):
    (tmp_path / "train.tsv").write_text("label\ttext_a\n1\t房间干净\n0\t服务\t太差\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("qid\tlabel\ttext_a\n0\t1\t早餐不错\n1\t0\t隔音差\n", encoding="utf-8")
    assert sentiment.read_tsv(str(tmp_path / "train.tsv")) == [("房间干净", 1), ("服务\t太差", 0)]
    assert sentiment.read_tsv(str(tmp_path / "dev.tsv")) == [("早餐不错", 1), ("隔音差", 0)]


def test_csv_files_are_read_by_their_header_with_quoted_commas_quotes_and_line_breaks(tmp_path):
    shopping = tmp_path / "online_shopping_10_cats.csv"
    shopping.write_text('cat,label,review\n书籍,1,"好书，值得一读, 推荐"\n酒店,0,"说是""五星"",其实很差"\n水果,1,新鲜\n',
                        encoding="utf-8")
    assert sentiment.read_tsv(str(shopping)) == [
        ("好书，值得一读, 推荐", 1), ('说是"五星",其实很差', 0), ("新鲜", 1)]
    weibo = tmp_path / "weibo_senti_100k.csv"
    weibo.write_text('\ufefflabel,review\r\n1,"开心,[哈哈]\r\n第二行"\r\n0,难过\r\n', encoding="utf-8")
    assert sentiment.read_tsv(str(weibo)) == [("开心,[哈哈]\r\n第二行", 1), ("难过", 0)]


def test_a_test_file_without_labels_is_for_prediction_only(tmp_path, capsys):
    write_tsv(tmp_path / "train.tsv", [("评论%d" % i, i % 2) for i in range(20)])
    (tmp_path / "test.tsv").write_text("qid\ttext_a\n0\t不错\n1\t很差\n", encoding="utf-8")
    assert sentiment.load_data(str(tmp_path), seed=0)["test"] is None
    assert "test.tsv has no labels: no test accuracy; predict its texts with --predict-file" in capsys.readouterr().out
    assert sentiment.read_texts(str(tmp_path / "test.tsv")) == ["不错", "很差"]
    (tmp_path / "texts.txt").write_text("不错\n\n  很差\n", encoding="utf-8")
    assert sentiment.read_texts(str(tmp_path / "texts.txt")) == ["不错", "很差"]


def test_named_files_replace_those_of_the_data_dir_and_a_train_file_alone_holds_a_tenth_out(tmp_path, tiny_checkpoint):
    reviews = tmp_path / "weibo_senti_100k.csv"
    reviews.write_text("label,review\n" + "".join("%d,评论%d\n" % (i % 2, i) for i in range(50)), encoding="utf-8")
    args, _ = parse_flags(sentiment.build_parser(), ["--bert-dir", tiny_checkpoint.bert_dir, "--train-file", str(reviews)],
                          sentiment.TINY_BERT_SETTINGS)
    assert args.data_dir == str(tmp_path)  # not the bundled sample, whose dev.tsv would be taken as dev
    data = sentiment.load_data(args.data_dir, args.seed, args.train_file, args.dev_file, args.test_file)
    assert (len(data["train"]), len(data["dev"]), data["test"]) == (45, 5, None)

    dev = tmp_path / "dev.csv"
    dev.write_text("label,text\n1,好\n", encoding="utf-8")
    data = sentiment.load_data(sentiment.SETTINGS["data_dir"], 0, str(reviews), str(dev), str(dev))
    assert (len(data["train"]), data["dev"], data["test"]) == (50, [("好", 1)], [("好", 1)])


@pytest.mark.parametrize("name, content, message", [
    ("train.tsv", "qid\tlabel\tcontent\n0\t1\t好\n",
     r"train\.tsv line 1: expected a text column named text_a, text, review, sentence in the header, "
     r"found qid, label, content"),
    ("train.csv", "cat,review\n书,好\n", r"train\.csv line 1: expected a label column in the header"),
    ("train.csv", "label,review\n1,好,多\n", r"train\.csv line 2: expected 2 columns \(label, review\), found 3"),
    ("train.csv", 'label,review\n1,"两\n行"\n2,好\n', r"train\.csv line 4: the label must be 0 or 1, found '2'"),
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
    (token_ids, segment_ids), labels = sentiment.make_batch(encoded, [1, 1, 0], [0, 1])
    assert token_ids.shape == segment_ids.shape == (2, 7)  # "非常好的酒" cut to 5 characters + [CLS], [SEP]
    assert list(token_ids[0]) == tokenizer.encode(first="好")[0] + [0] * 4
    assert list(token_ids[1]) == tokenizer.encode(first="非常好的酒")[0]
    assert labels.tolist() == [[1.0], [1.0]]


def test_model_gives_one_probability_per_text(tiny_checkpoint, tokenizer):
    model = sentiment.build_model(tiny_checkpoint)
    encoded = sentiment.encode_texts(tokenizer, ["好", "非常好的酒店"], maxlen=100, source="test")
    probabilities = sentiment.predict_probabilities(model, encoded, batch_size=2)
    assert probabilities.shape == (2,)
    assert np.all((probabilities > 0) & (probabilities < 1))


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

    dev = sentiment.read_tsv(str(synthetic_dir / "dev.tsv"))
    predict_file = tmp_path / "texts.txt"
    predict_file.write_text("\n".join(text for text, _ in dev), encoding="utf-8")
    sentiment.main(common + ["--predict-file", str(predict_file)])
    printed = [line.split("\t") for line in capsys.readouterr().out.strip().split("\n")]
    assert [text for _, text in printed] == [text for text, _ in dev]
    correct = [(float(probability) > 0.5) == bool(label) for (probability, _), (_, label) in zip(printed, dev)]
    assert np.mean(correct) == pytest.approx(best)


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
                 "--test-file"):
        assert flag in result.stdout


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    """A model trained one epoch on a slice of the bundled reviews, and its export."""
    folder = tmp_path_factory.mktemp("sentiment_export")
    bundled = os.path.join(os.path.dirname(os.path.abspath(sentiment.__file__)), "data", "sentiment")
    write_tsv(folder / "train.tsv", sentiment.read_tsv(os.path.join(bundled, "train.tsv"))[:200])
    write_tsv(folder / "dev.tsv", sentiment.read_tsv(os.path.join(bundled, "dev.tsv"))[:50])
    flags = ["--bert-dir", tiny_checkpoint.bert_dir, "--output-dir", str(folder / "run"), "--lr", "1e-3"]
    sentiment.main(flags + ["--data-dir", str(folder), "--epochs", "1"])
    sentiment.main(flags + ["--export", str(folder / "export")])
    return flags, folder / "export", [text for text, _ in sentiment.read_tsv(os.path.join(bundled, "dev.tsv"))[:200]]


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
