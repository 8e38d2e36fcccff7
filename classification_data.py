"""Reading text classification data as it is published: one text or a pair, any set of labels.
Not a block of the blog (docs/blog_map.md): its first example reads two .xls files of 0/1 reviews;
sentiment.py reads these files as their publishers ship them, with no conversion step.

- Lines without a header: `text<TAB>label` (the blog's reviews; a tab inside the text is kept),
  `text_a<TAB>text_b<TAB>label` when most lines have three fields (LCQMC, BQ corpus).
- A header naming a label or text column picks those columns (ChnSentiCorp's `label<TAB>text_a`,
  PAWS-X's `id<TAB>sentence1<TAB>sentence2<TAB>label`, the review CSVs' `cat,label,review`).
- JSON lines as CLUE ships them: `sentence` or `sentence1`/`sentence2`, `label`, with its readable
  `label_desc` (TNEWS) or `label_des` (IFLYTEK) and an `id`; rows labelled `-` have no gold label
  (OCNLI, CMNLI) and are skipped with a count; FewCLUE's integer labels are read as text.
- `--columns label,text` names the columns of any other layout, in order (THUCNews' label first);
  `-` skips a column, a header line, if any, is skipped.

A `.csv` file is read with the csv module (quoted fields), `.json`/`.jsonl` as JSON lines, any
other file at its tabs. A file without labels (a CLUE test file) is for prediction only.
"""
import collections
import json
import os

from fine_tuning import UserError, read_csv_rows, read_data_file, read_json_lines

# One example: its text or two texts, its label (None in a test file), the label's readable name
# where the file gives one, the line it came from, and the id of a CLUE test row (for submissions).
Example = collections.namedtuple("Example", ["texts", "label", "description", "line", "id"])

FIRST_TEXT_COLUMNS = ("text_a", "text", "review", "sentence", "sentence1", "content")
SECOND_TEXT_COLUMNS = ("text_b", "sentence2")
ID_COLUMNS = ("id", "qid", "guid")
DESCRIPTION_FIELDS = ("label_desc", "label_des")  # TNEWS' and IFLYTEK's spellings
NO_GOLD_LABEL = "-"  # OCNLI and CMNLI rows whose annotators did not agree
COLUMN_ROLES = ("text", "text_a", "text_b", "label", "id", "-")

# The names under which publishers ship each split, in the order they are looked for in --data-dir.
SPLIT_FILE_NAMES = {
    "train": ("train.tsv", "train.json", "train.txt", "train.csv", "train.50k.json", "translated_train.tsv",
              "train_0.json", "cnews.train.txt"),
    "dev": ("dev.tsv", "dev.json", "dev.txt", "dev.csv", "dev_2k.tsv", "dev_0.json", "cnews.val.txt"),
    # FewCLUE's test_public.json is labelled, its test.json not: the labelled one first
    "test": ("test.tsv", "test_public.json", "test.json", "test.txt", "test.csv", "test_2k.tsv", "cnews.test.txt"),
}
CLASS_NAMES_FILE = "class.txt"  # THUCNews subsets: the name of label i on line i + 1


def find_split_file(data_dir, split):
    """The first file of `split` under one of its published names in `data_dir`, or None."""
    for name in SPLIT_FILE_NAMES[split]:
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    return None


def parse_columns(value):
    """--columns 'label,text' -> ['label', 'text']: one role per column of the file, in order."""
    roles = [role.strip().lower() for role in value.split(",")]
    unknown = [role for role in roles if role not in COLUMN_ROLES]
    if unknown:
        raise UserError("--columns %s: unknown column %r; name each column of the file in order as one of %s"
                        % (value, unknown[0], ", ".join(COLUMN_ROLES)))
    roles = ["text_a" if role == "text" else role for role in roles]
    for role in ("text_a", "text_b", "label", "id"):
        if roles.count(role) > 1:
            raise UserError("--columns %s names %s twice" % (value, role))
    if "text_a" not in roles:
        raise UserError("--columns %s names no text column" % value)
    return roles


# ---------------------------------------------------------------------------------------------
# Reading one file
# ---------------------------------------------------------------------------------------------

def read_examples(path, columns=None, require_label=True, text_pair=None):
    """[Example] of one file; the labels are None in a file without them (for prediction only).

    `text_pair`, where the training file has told it, reads a header-less two-column file as a
    pair without labels (LCQMC's test.tsv) rather than as `text<TAB>label`.
    """
    if path.lower().endswith((".json", ".jsonl")):
        if columns:
            raise UserError("--columns is for tab- or comma-separated files: the JSON lines of %s name their "
                            "fields" % path)
        examples = read_json_examples(path)
    else:
        examples = read_table(path, columns, text_pair)
    if not examples:
        raise UserError("%s holds no examples" % path)
    labelled = [example for example in examples if example.label is not None]
    if labelled and len(labelled) < len(examples):
        unlabelled = next(example for example in examples if example.label is None)
        raise UserError("%s line %d: expected a label, as the other lines have, found none"
                        % (path, unlabelled.line))
    if require_label and not labelled:
        raise UserError("%s line %d: expected a label column, found none (only a test file may have none)"
                        % (path, examples[0].line))
    return examples


def read_json_examples(path):
    """CLUE's JSON lines: one object a line with sentence or sentence1/sentence2, label, label_desc, id."""
    examples, no_gold = [], 0
    for line_number, row in read_json_lines(path):
        first = next((name for name in FIRST_TEXT_COLUMNS if name in row), None)
        if first is None:
            raise UserError("%s line %d: expected a text field (%s), found %s"
                            % (path, line_number, ", ".join(FIRST_TEXT_COLUMNS), ", ".join(row) or "none"))
        second = next((name for name in SECOND_TEXT_COLUMNS if name in row), None)
        if first == "sentence1" and second is None:
            raise UserError("%s line %d: expected sentence2 beside sentence1, found none" % (path, line_number))
        texts = tuple(text_field(row, name, path, line_number) for name in (first, second) if name)
        label = None if row.get("label") is None else str(row["label"]).strip()
        if label == NO_GOLD_LABEL:
            no_gold += 1
            continue
        description = next((str(row[name]) for name in DESCRIPTION_FIELDS if name in row), None)
        identifier = row.get("id")
        examples.append(Example(texts, label, description, line_number, identifier))
    if no_gold:
        print("%s: %d rows labelled '-' (no gold label) skipped" % (path, no_gold))
    return examples


def text_field(row, name, path, line_number):
    if not isinstance(row[name], str):
        raise UserError("%s line %d: expected %s to be a string, found %r" % (path, line_number, name, row[name]))
    return row[name]


def read_rows(path):
    """[(line number, fields)] of the non-blank rows: a .csv file's by the csv module (quoted fields), else at tabs."""
    if path.lower().endswith(".csv"):
        return read_csv_rows(path)
    return [(line_number, line.rstrip("\r").split("\t"))
            for line_number, line in enumerate(read_data_file(path).split("\n"), 1) if line.strip()]


def header_roles(fields):
    """The role of each column when `fields` is a header naming a label or a text column, else None."""
    names = [field.strip().lower() for field in fields]
    if "label" not in names and not set(FIRST_TEXT_COLUMNS + SECOND_TEXT_COLUMNS) & set(names):
        return None
    roles = ["-"] * len(names)
    for role, candidates in (("text_a", FIRST_TEXT_COLUMNS), ("text_b", SECOND_TEXT_COLUMNS),
                             ("label", ("label",)), ("id", ID_COLUMNS)):
        column = next((names.index(name) for name in candidates if name in names), None)
        if column is not None:
            roles[column] = role
    return roles


def read_table(path, columns=None, text_pair=None):
    """[Example] of a tab- or comma-separated file, by --columns, by its header, or as `text<TAB>label`."""
    rows = read_rows(path)
    if not rows:
        return []
    header = header_roles(rows[0][1])
    if columns:
        roles, rows = columns, rows[1:] if header else rows
        names = roles
    elif header:
        names = [field.strip() for field in rows[0][1]]
        if "text_a" not in header:
            raise UserError("%s line %d: expected a text column named %s in the header, found %s"
                            % (path, rows[0][0], ", ".join(FIRST_TEXT_COLUMNS), ", ".join(names)))
        roles, rows = header, rows[1:]
    else:
        roles, rows = headerless_roles(path, rows, text_pair)
        names = roles
    return [table_example(path, line_number, fields, roles, names) for line_number, fields in rows]


def headerless_roles(path, rows, text_pair=None):
    """`text_a, text_b, label` when most rows have three fields (then every row must), else `text, label`;
    a first line whose label is not a number over integer labels is a header (内容<TAB>标签) and is
    skipped. Two fields of a pair: no label."""
    if text_pair and all(len(fields) == 2 for _, fields in rows):
        return ["text_a", "text_b"], rows
    if 2 * sum(len(fields) == 3 for _, fields in rows) > len(rows) and not path.lower().endswith(".csv"):
        roles = ["text_a", "text_b", "label"]
    else:
        roles = ["text_a", "label"]
    labels_below = [fields[-1].strip() for _, fields in rows[1:]]
    if labels_below and not rows[0][1][-1].strip().isdigit() and all(label.isdigit() for label in labels_below):
        rows = rows[1:]  # a header over integer labels
    return roles, rows


def table_example(path, line_number, fields, roles, names):
    """One row as an Example; in a tab-separated file a single text column takes any extra fields (tabs in the text)."""
    extra = len(fields) - len(roles)
    if extra > 0 and "text_b" not in roles and not path.lower().endswith(".csv"):
        text_column = roles.index("text_a")
        fields = fields[:text_column] + ["\t".join(fields[text_column:text_column + extra + 1])] \
            + fields[text_column + extra + 1:]
    if len(fields) != len(roles):
        raise UserError("%s line %d: expected %d columns (%s), found %d"
                        % (path, line_number, len(roles), ", ".join(names), len(fields)))
    value = dict(zip(roles, fields))
    texts = (value["text_a"],) + ((value["text_b"],) if "text_b" in value else ())
    label = value["label"].strip() if "label" in value else None
    if label == "":
        raise UserError("%s line %d: expected a label, found an empty field" % (path, line_number))
    return Example(texts, label, None, line_number, value.get("id"))


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------

class Labels:
    """The label set of a training file, in a stable order: by value where all are integers, else sorted.

    `binary` is the blog's case, labels 0 and 1: one sigmoid output, the probability of 1.
    `names` are the readable names a format gives (TNEWS' label_desc, THUCNews' class.txt), if any.
    """

    def __init__(self, values, names=None, text_pair=False):
        self.values = list(values)
        self.names = dict(names or {})
        self.text_pair = text_pair
        self.index = {value: i for i, value in enumerate(self.values)}

    @property
    def binary(self):
        return self.values == ["0", "1"]

    def __len__(self):
        return len(self.values)

    def name(self, value):
        return self.names.get(value, value)

    @classmethod
    def of_training_set(cls, examples, path, class_names=None):
        values = sorted({example.label for example in examples}, key=label_order)
        if len(values) < 2:
            raise UserError("%s line %d: every example has the label %r: a classifier needs two labels or more"
                            % (path, examples[0].line, values[0]))
        if len(examples) >= 20 and len(values) > len(examples) // 2:
            raise UserError("%s: %d different labels in %d examples (line %d: %r): is the label in another column? "
                            "Name the columns in order with --columns, e.g. --columns label,text"
                            % (path, len(values), len(examples), examples[0].line, shortened(examples[0].label)))
        names = {example.label: example.description for example in examples if example.description}
        names.update(class_names or {})
        return cls(values, names, text_pair=len(examples[0].texts) == 2)

    def check(self, examples, path):
        """Refuse a label the training set never had, or texts that do not match it (pair or single)."""
        for example in examples:
            if example.label is not None and example.label not in self.index:
                raise UserError("%s line %d: the label %r is not among the training labels (%s)"
                                % (path, example.line, example.label, ", ".join(self.values)))
            if (len(example.texts) == 2) != self.text_pair:
                raise UserError("%s line %d: expected %s, as in the training file, found %d"
                                % (path, example.line, "two texts" if self.text_pair else "one text",
                                   len(example.texts)))

    def save(self, path):
        """labels.json beside the best weights: what --predict, --export and --resume need to read them."""
        with open(path + ".partial", "w", encoding="utf-8") as writer:
            json.dump({"labels": self.values, "names": self.names, "text_pair": self.text_pair}, writer,
                      ensure_ascii=False, indent=1)
        os.replace(path + ".partial", path)

    @classmethod
    def load(cls, path):
        """The saved labels; a run made before labels were saved is the blog's: 0/1, one text."""
        if not os.path.isfile(path):
            return cls(["0", "1"])
        with open(path, encoding="utf-8") as reader:
            saved = json.load(reader)
        return cls(saved["labels"], saved["names"], saved["text_pair"])

    def __eq__(self, other):
        return (self.values, self.text_pair) == (other.values, other.text_pair)


def shortened(text, length=30):
    return text if len(text) <= length else text[:length] + "..."


def label_order(value):
    """Integers by value (2 before 10), and before any other label, which sorts as text."""
    return (0, int(value), "") if value.lstrip("-").isdigit() else (1, 0, value)


def read_class_names(data_dir):
    """{'0': name, ...} from a THUCNews-style class.txt in `data_dir`, or None."""
    path = os.path.join(data_dir, CLASS_NAMES_FILE)
    if not os.path.isfile(path):
        return None
    names = [line.strip() for line in read_data_file(path).split("\n") if line.strip()]
    return {str(i): name for i, name in enumerate(names)}


def read_texts_to_classify(path, columns=None, text_pair=False):
    """[Example] of texts to predict: a file with a header, JSON lines or --columns by its text
    columns (labels, if any, are ignored); any other file line by line (a pair: text_a<TAB>text_b)."""
    width = 2 if text_pair else 1
    if path.lower().endswith((".json", ".jsonl")) or columns or header_roles(read_rows(path)[0][1]):
        examples = [example._replace(label=None)
                    for example in read_examples(path, columns, require_label=False, text_pair=text_pair)]
    else:
        examples = [Example(tuple(line.strip().split("\t")) if text_pair else (line.strip(),), None, None, number, None)
                    for number, line in enumerate(read_data_file(path).split("\n"), 1) if line.strip()]
    for example in examples:
        if len(example.texts) != width:
            raise UserError("%s line %d: expected %s, found %d" % (
                path, example.line, "two texts (text_a<TAB>text_b)" if text_pair else "one text", len(example.texts)))
    return examples
