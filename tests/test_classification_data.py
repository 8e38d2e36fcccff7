"""classification_data.py: every published layout read as it is, label sets, and bad input named by file and line."""
import json
import os

import pytest

from classification_data import (
    Labels, find_split_file, label_order, parse_columns, read_class_names, read_examples, read_texts_to_classify)
from fine_tuning import UserError

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "classification")


def first_line(path):
    with open(path, encoding="utf-8") as reader:
        return reader.readline().rstrip("\n")


def training_set(folder, columns=None):
    """(examples, Labels) of a bundled sample's training file, found under its published name."""
    path = find_split_file(os.path.join(SAMPLES, folder), "train")
    examples = read_examples(path, parse_columns(columns) if columns else None)
    return path, examples, Labels.of_training_set(examples, path, read_class_names(os.path.join(SAMPLES, folder)))


# ---------------------------------------------------------------------------------------------
# The bundled samples, each in its publisher's layout
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("folder, train_name, label_count, text_pair, named", [
    ("tnews", "train.json", 15, False, "news_entertainment"),
    ("iflytek", "train.json", 8, False, "打车"),
    ("fewclue-tnews", "train_0.json", 15, False, "news_story"),
    ("afqmc", "train.json", 2, True, None),
    ("cmnli", "train.json", 3, True, None),
    ("ocnli", "train.50k.json", 3, True, None),
    ("lcqmc", "train.tsv", 2, True, None),
    ("lcqmc-ernie", "train.tsv", 2, True, None),
    ("bq", "train.tsv", 2, True, None),
    ("pawsx", "translated_train.tsv", 2, True, None),
    ("thucnews-titles", "train.txt", 10, False, "体育"),
])
def test_every_bundled_layout_reads_its_texts_labels_and_names_as_published(
        folder, train_name, label_count, text_pair, named):
    path, examples, labels = training_set(folder)
    assert os.path.basename(path) == train_name
    assert (len(labels), labels.text_pair) == (label_count, text_pair)
    assert labels.binary == (label_count == 2)  # every 2-label sample here is 0/1: the blog's head
    if named:
        assert named in [labels.name(value) for value in labels.values]
    # The first example is the first line's, field for field
    line = first_line(path)
    if path.endswith(".json"):
        row = json.loads(line)
        assert examples[0].texts == tuple(row[name] for name in ("sentence", "sentence1", "sentence2") if name in row)
        assert examples[0].label == str(row["label"])
    elif folder in ("lcqmc-ernie", "pawsx"):  # a header line first
        assert line.split("\t")[-1] == "label" and examples[0].line == 2
    else:
        assert examples[0].texts == tuple(line.split("\t")[:-1]) and examples[0].label == line.split("\t")[-1]


def test_thucnews_label_first_is_read_with_columns_and_not_mistaken_for_text_label():
    with pytest.raises(UserError, match=r"cnews\.train\.txt: \d+ different labels in \d+ examples \(line 1: '.+'\): "
                                        r"is the label in another column\? .*--columns label,text"):
        training_set("thucnews-cnews")
    _, examples, labels = training_set("thucnews-cnews", "label,text")
    assert len(labels) == 10 and "体育" in labels.values and len(examples[0].texts[0]) > 10


def test_class_txt_names_the_labels_by_line():
    labels = training_set("thucnews-titles")[2]
    with open(os.path.join(SAMPLES, "thucnews-titles", "class.txt"), encoding="utf-8") as reader:
        names = reader.read().split()
    assert [labels.name(value) for value in labels.values] == names


def test_clue_test_files_without_labels_are_for_prediction_and_keep_their_ids():
    test = read_examples(os.path.join(SAMPLES, "tnews", "test.json"), require_label=False)
    assert all(example.label is None for example in test)
    with open(os.path.join(SAMPLES, "tnews", "test.json"), encoding="utf-8") as reader:
        assert [example.id for example in test] == [json.loads(line)["id"] for line in reader]
    with pytest.raises(UserError, match=r"test\.json line 1: expected a label column, found none"):
        read_examples(os.path.join(SAMPLES, "tnews", "test.json"))


def test_a_two_column_test_file_of_a_pair_task_is_two_texts_without_labels():
    path = os.path.join(SAMPLES, "lcqmc", "test.tsv")
    test = read_examples(path, require_label=False, text_pair=True)
    assert all(len(example.texts) == 2 and example.label is None for example in test)
    assert test[0].texts == tuple(first_line(path).split("\t"))
    assert [example.texts for example in read_texts_to_classify(path, text_pair=True)] == [
        example.texts for example in test]


def test_ocnli_rows_labelled_dash_are_skipped_with_a_count(capsys):
    path = os.path.join(SAMPLES, "ocnli", "train.50k.json")
    dashes = sum(json.loads(line)["label"] == "-" for line in open(path, encoding="utf-8"))
    examples = read_examples(path)
    assert dashes > 0 and "%d rows labelled '-' (no gold label) skipped" % dashes in capsys.readouterr().out
    assert "-" not in {example.label for example in examples}


# ---------------------------------------------------------------------------------------------
# Layouts written here: headers, pairs, --columns
# ---------------------------------------------------------------------------------------------

def test_reads_text_tab_label_lines_keeps_tabs_in_the_text_and_skips_a_header(tmp_path):
    path = tmp_path / "train.tsv"
    # A header naming no known column: skipped since its label is not a number, as all others are
    path.write_text("内容\t标签\n好评\t1\n带\t制表符的差评\t0\n", encoding="utf-8")
    assert [(e.texts, e.label) for e in read_examples(str(path))] == [(("好评",), "1"), (("带\t制表符的差评",), "0")]


def test_a_chnsenticorp_header_picks_the_label_and_text_columns_and_ignores_the_others(tmp_path):
    (tmp_path / "train.tsv").write_text("label\ttext_a\n1\t房间干净\n0\t服务\t太差\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("qid\tlabel\ttext_a\n0\t1\t早餐不错\n1\t0\t隔音差\n", encoding="utf-8")
    assert [(e.texts, e.label) for e in read_examples(str(tmp_path / "train.tsv"))] == [
        (("房间干净",), "1"), (("服务\t太差",), "0")]
    assert [(e.texts, e.label, e.id) for e in read_examples(str(tmp_path / "dev.tsv"))] == [
        (("早餐不错",), "1", "0"), (("隔音差",), "0", "1")]


def test_csv_files_are_read_by_their_header_with_quoted_commas_quotes_and_line_breaks(tmp_path):
    shopping = tmp_path / "online_shopping_10_cats.csv"
    shopping.write_text('cat,label,review\n书籍,1,"好书，值得一读, 推荐"\n酒店,0,"说是""五星"",其实很差"\n水果,1,新鲜\n',
                        encoding="utf-8")
    assert [(e.texts[0], e.label) for e in read_examples(str(shopping))] == [
        ("好书，值得一读, 推荐", "1"), ('说是"五星",其实很差', "0"), ("新鲜", "1")]
    # The same file classified by its category: --columns names the roles, the header is skipped
    by_category = read_examples(str(shopping), parse_columns("label,-,text"))
    assert [(e.texts[0], e.label) for e in by_category] == [
        ("好书，值得一读, 推荐", "书籍"), ('说是"五星",其实很差', "酒店"), ("新鲜", "水果")]
    weibo = tmp_path / "weibo_senti_100k.csv"
    weibo.write_text('\ufefflabel,review\r\n1,"开心,[哈哈]\r\n第二行"\r\n0,难过\r\n', encoding="utf-8")
    assert [(e.texts[0], e.label) for e in read_examples(str(weibo))] == [("开心,[哈哈]\r\n第二行", "1"), ("难过", "0")]


def test_three_fields_on_every_line_are_a_pair_and_a_pawsx_header_names_its_columns(tmp_path):
    lcqmc = tmp_path / "train.txt"
    lcqmc.write_text("怎么办信用卡\t信用卡怎么办\t1\n今天天气\t明天下雨吗\t0\n", encoding="utf-8")
    assert [(e.texts, e.label) for e in read_examples(str(lcqmc))] == [
        (("怎么办信用卡", "信用卡怎么办"), "1"), (("今天天气", "明天下雨吗"), "0")]
    pawsx = tmp_path / "dev_2k.tsv"
    pawsx.write_text("id\tsentence1\tsentence2\tlabel\n7\t甲\t乙\t1\n", encoding="utf-8")
    assert read_examples(str(pawsx))[0][:2] == (("甲", "乙"), "1") and read_examples(str(pawsx))[0].id == "7"


def test_json_lines_take_label_desc_or_label_des_and_integer_labels(tmp_path):
    path = tmp_path / "train_0.json"
    path.write_text('{"id": 3, "sentence": "甲", "label": 102, "label_desc": "news_entertainment"}\n'
                    '{"id": 4, "sentence": "乙", "label": "108", "label_des": "教育"}\n', encoding="utf-8")
    examples = read_examples(str(path))
    assert [(e.texts, e.label, e.description, e.id) for e in examples] == [
        (("甲",), "102", "news_entertainment", 3), (("乙",), "108", "教育", 4)]


def test_labels_are_ordered_by_value_where_all_are_integers_else_as_text():
    assert sorted(["10", "2", "100", "-1"], key=label_order) == ["-1", "2", "10", "100"]
    assert sorted(["neutral", "contradiction", "entailment"], key=label_order) == [
        "contradiction", "entailment", "neutral"]


def test_labels_are_saved_and_loaded_and_an_old_run_without_them_is_the_blogs(tmp_path):
    labels = Labels(["100", "102"], {"100": "news_story"}, text_pair=True)
    labels.save(str(tmp_path / "labels.json"))
    loaded = Labels.load(str(tmp_path / "labels.json"))
    assert loaded == labels and loaded.name("100") == "news_story" and loaded.name("102") == "102"
    assert Labels.load(str(tmp_path / "missing.json")).binary


# ---------------------------------------------------------------------------------------------
# Bad input: one message naming the file, the line and what was expected
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, message", [
    ("train.tsv", "好评\t1\n没有标签的一行\n", r"train\.tsv line 2: expected 2 columns \(text_a, label\), found 1"),
    ("train.txt", "问一\t问二\t1\n问三\t0\n问五\t问六\t0\n",
     r"train\.txt line 2: expected 3 columns \(text_a, text_b, label\), found 2"),
    ("train.json", '{"sentence1": "甲", "label": "1"}\n', r"train\.json line 1: expected sentence2 beside sentence1"),
    ("train.json", '{"sentence": "甲", "label": "1"}\n{"sentence": "乙"\n',
     r"train\.json line 2: expected one JSON object"),
    ("train.json", '{"text_x": "甲", "label": "1"}\n', r"train\.json line 1: expected a text field"),
    ("train.json", '{"sentence": 5, "label": "1"}\n', r"train\.json line 1: expected sentence to be a string"),
    ("train.json", '{"sentence": "甲", "label": "1"}\n{"sentence": "乙"}\n',
     r"train\.json line 2: expected a label, as the other lines have, found none"),
    ("train.tsv", "\n\n", r"is empty"),
    ("train.json", "[" * 100000 + "]" * 100000 + "\n", r"train\.json line 1: expected one JSON object, got malformed JSON"),
])
def test_malformed_files_name_the_line_and_the_expectation(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        read_examples(str(path))


def test_gbk_file_is_refused_with_the_conversion_to_run(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes("好评\t1\n差评\t0\n".encode("gbk"))
    with pytest.raises(UserError, match=r"line 1 is not UTF-8 .*GB18030: iconv"):
        read_examples(str(path))


def test_a_dev_label_the_training_set_never_had_and_a_single_training_label_are_refused(tmp_path):
    train = [read_examples_from(tmp_path, "train.tsv", "好\tpos\n差\tneg\n")]
    labels = Labels.of_training_set(train[0], "train.tsv")
    dev = read_examples_from(tmp_path, "dev.tsv", "好\tpos\n一般\tneutral\n")
    with pytest.raises(UserError, match=r"dev\.tsv line 2: the label 'neutral' is not among the training labels "
                                        r"\(neg, pos\)"):
        labels.check(dev, "dev.tsv")
    one_label = read_examples_from(tmp_path, "one.tsv", "好\tpos\n很好\tpos\n")
    with pytest.raises(UserError, match=r"one\.tsv line 1: every example has the label 'pos'"):
        Labels.of_training_set(one_label, "one.tsv")


def test_a_single_text_where_training_had_pairs_is_refused(tmp_path):
    labels = Labels(["0", "1"], text_pair=True)
    dev = read_examples_from(tmp_path, "dev.tsv", "甲\t1\n乙\t0\n")
    with pytest.raises(UserError, match=r"dev\.tsv line 1: expected two texts, as in the training file, found 1"):
        labels.check(dev, "dev.tsv")


@pytest.mark.parametrize("value, message", [
    ("label,body", r"unknown column 'body'"),
    ("label,label,text", r"names label twice"),
    ("label,-", r"names no text column"),
])
def test_columns_flag_is_checked(value, message):
    with pytest.raises(UserError, match="--columns %s: .*%s|--columns %s names" % (value, message, value)):
        parse_columns(value)


def read_examples_from(folder, name, content):
    (folder / name).write_text(content, encoding="utf-8")
    return read_examples(str(folder / name))
