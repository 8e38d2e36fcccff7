"""Generate larger synthetic data sets in each task's original file format.

The bundled samples are small; these template-made sets are for trying a script at scale and
for the tests, where a tiny model must be able to learn the task. The texts are made up.

    python data/synthetic.py sentiment --out /tmp/sentiment --examples 5000
"""
import argparse
import csv
import json
import os
import random

# ---------------------------------------------------------------------------------------------
# Sentiment: `text<TAB>label` lines (train.tsv, dev.tsv)
# ---------------------------------------------------------------------------------------------

POSITIVE_PHRASES = ["非常好", "很满意", "质量不错", "服务热情", "物超所值", "推荐购买", "下次还来", "值得信赖"]
NEGATIVE_PHRASES = ["太差了", "很失望", "质量糟糕", "服务冷漠", "不值这个价", "不推荐", "再也不来", "骗人的"]
TOPICS = ["这家酒店", "这台电脑", "这本书", "这次购物", "房间", "快递", "屏幕", "客服", "早餐", "包装"]
FILLERS = ["总的来说", "说实话", "我觉得", "用了几天", "住了两晚", "朋友推荐的", "第一次买", "价格一般"]


def sentiment_examples(count, seed=0):
    """(text, label) pairs whose label is given by the phrases they contain; 0 negative, 1 positive."""
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        label = rng.randint(0, 1)
        phrases = POSITIVE_PHRASES if label else NEGATIVE_PHRASES
        parts = [rng.choice(TOPICS), rng.choice(phrases)]
        parts += rng.sample(FILLERS, rng.randint(0, 3)) + [rng.choice(phrases)]
        rng.shuffle(parts)
        examples.append(("，".join(parts) + "。", label))
    return examples


def dev_and_train(examples):
    """A tenth of the examples (at least one) for dev, the rest for training."""
    dev_size = max(1, len(examples) // 10)
    return examples[:dev_size], examples[dev_size:]


def write_sentiment(out_dir, count, seed):
    dev, train = dev_and_train(sentiment_examples(count, seed))
    for name, rows in (("dev.tsv", dev), ("train.tsv", train)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as writer:
            writer.writelines("%s\t%d\n" % (text, label) for text, label in rows)


# ---------------------------------------------------------------------------------------------
# Event subjects (CCKS 2019): `id,text,event_type,entity` rows without a header
# (event_type_entity_extract_train.csv; event_type_entity_extract_eval.csv lacks the entity)
# ---------------------------------------------------------------------------------------------

# Each sentence names several companies, each with a different event, so that only the event
# type tells which company is the answer: the model has to read the `___event_type___` prefix.
# Like real news, most sentences repeat a word of their event type (造假, 评级, 重组, ...).
SUBJECT_EVENTS = {
    "资金账户风险": ["{company}资金链断裂，多个银行账户被冻结", "{company}出现兑付危机，资金账户涉及{amount}万元",
               "{company}因债务逾期被申请冻结资金账户"],
    "涉嫌欺诈": ["{company}涉嫌合同欺诈被客户起诉", "{company}被指以高息为诱饵骗取投资者资金", "{company}涉嫌欺诈发行股票"],
    "财务造假": ["{company}因虚增利润被证监会立案调查", "{company}被曝连续三年财务造假", "{company}年报收入数据涉嫌造假"],
    "实控人股东变更": ["{company}实际控制人拟变更为地方国资委", "{company}控股股东转让全部股份", "{company}第一大股东变更"],
    "评级调整": ["{company}主体信用评级被下调至AA-", "评级机构将{company}的评级展望调整为负面", "{company}债项评级遭下调"],
    "高管负面": ["{company}董事长被警方带走调查", "{company}高管涉嫌内幕交易", "{company}多名高管突然失联"],
    "涉嫌违法": ["{company}因违规排污被处以罚款", "{company}涉嫌非法集资{amount}万元被立案", "{company}涉嫌违法披露关联交易被处罚"],
    "业绩下滑": ["{company}前三季度净利润同比下降{percent}%", "{company}上半年营收大幅下滑", "{company}业绩下滑，预计全年亏损{amount}万元"],
    "重组失败": ["{company}宣布终止重大资产重组", "{company}并购方案未获证监会通过", "{company}重组失败，股价跌停"],
    "其他": ["{company}召开年度股东大会", "{company}发布\"澄清公告\"", "{company}与高校签署战略合作协议"],
}
COMPANY_PREFIXES = ["", "", "", "", "*ST", "ST "]  # "ST " puts a space inside some names
# Names made of two or three of these characters: too many to memorise, so the model must learn
# where a name begins and ends from its context.
COMPANY_CHARACTERS = "华信中安康得东方金鹰海润天宇瑞丰宏达长城新纪元恒泰鼎盛汇通远洋夏凯乐正源视弘保千里神雾大运光明阳晨星辉"
COMPANY_SUFFIXES = ["股份有限公司", "集团", "科技", "银行", "证券", "控股", "实业", "信托", "地产", "环保", ""]
SUBJECT_OPENINGS = ["", "", "据新浪财经报道，", "记者获悉，", "公告显示，", "据\"证券时报\"消息，"]


def subject_examples(count, seed=0):
    """`count` rows (id, text, event_type, entity); the entity of type 其他 is empty.

    About 1 row in 50 names its entity in a form the text does not contain, as real data does.
    """
    rng = random.Random(seed)
    rows = []
    while len(rows) < count:
        event_types = rng.sample(sorted(SUBJECT_EVENTS), rng.randint(1, 3))
        # No shared character, so that no company's name lies inside another's.
        characters = rng.sample(COMPANY_CHARACTERS, 3 * len(event_types))
        companies = [rng.choice(COMPANY_PREFIXES) + "".join(characters[3 * i:3 * i + rng.randint(2, 3)])
                     + rng.choice(COMPANY_SUFFIXES) for i in range(len(event_types))]
        clauses = []
        for event_type, company in zip(event_types, companies):
            clause = rng.choice(SUBJECT_EVENTS[event_type]).format(
                company=company, amount="{:,}".format(rng.randint(1, 900) * 100), percent=rng.randint(5, 95))
            if rng.random() < 0.2:  # the subject named twice
                clause = "%s发布公告称，%s" % (company, clause)
            clauses.append(clause)
        text = rng.choice(SUBJECT_OPENINGS) + "；".join(clauses) + "。"
        for event_type, company in zip(event_types, companies):
            entity = "" if event_type == "其他" else company
            if entity and rng.random() < 0.02:
                entity += "（集团）"
            rows.append((str(100000 + len(rows)), text, event_type, entity))
    return rows[:count]


def write_subject(out_dir, count, seed):
    """event_type_entity_extract_train.csv with `count` rows, and an eval file a tenth as long."""
    train_rows = subject_examples(count, seed)
    eval_rows = [row[:3] for row in subject_examples(max(1, count // 5), seed + 1) if row[2] != "其他"]
    for name, rows in (("event_type_entity_extract_train.csv", train_rows),
                       ("event_type_entity_extract_eval.csv", eval_rows[:max(1, count // 10)])):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8", newline="") as writer:
            csv.writer(writer, lineterminator="\n").writerows(rows)


# ---------------------------------------------------------------------------------------------
# Relation extraction: DuIE 2019 JSON lines (train_data.json, dev_data.json, all_50_schemas)
# ---------------------------------------------------------------------------------------------

RELATION_SCHEMAS = [  # (subject_type, predicate, object_type), as in DuIE's all_50_schemas
    ("图书作品", "作者", "人物"), ("图书作品", "出版社", "出版社"), ("人物", "出生地", "地点"),
    ("人物", "出生日期", "Date"), ("人物", "毕业院校", "学校"), ("人物", "国籍", "国家"),
    ("影视作品", "导演", "人物"), ("影视作品", "主演", "人物"), ("影视作品", "上映时间", "Date"),
    ("歌曲", "歌手", "人物"), ("歌曲", "所属专辑", "音乐专辑"), ("歌曲", "作词", "人物"),
    ("歌曲", "作曲", "人物"),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN_CHARS = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚华玉萍红玲芬燕春兰凤洁梅琳云雪荣爱香月瑞凡佳嘉琼珍莉晶妍秋珊锦青倩婷颖露瑶怡丹蓉君琴蕊薇梦岚馨韵宁欣晓欢枫菲亚宜可舒思浩宇轩然博文志鹏昊天子墨俊辰睿泽航飞鑫"
TITLE_PARTS = ["星光", "远方", "夜雨", "青春", "故乡", "梦想", "风云", "归途", "海岸", "时光", "秋水", "长河",
               "旧城", "白鹭", "春日", "孤岛", "烟火", "山海", "少年", "明月", "北方", "晚风", "花开", "追光"]
TITLE_SUFFIXES = ["", "", "", "传", "记", "之歌", "往事", "的你", "1987", "人家"]
PLACES = ["北京", "上海", "广州", "杭州", "成都", "南京", "武汉", "西安", "长沙", "重庆", "天津", "苏州",
          "湖南长沙", "山东济南", "浙江温州", "四川绵阳", "辽宁大连", "福建厦门", "台湾台北", "香港"]
SCHOOLS = ["北京大学", "清华大学", "复旦大学", "浙江大学", "南京大学", "武汉大学", "中山大学", "四川大学",
           "厦门大学", "北京电影学院", "中央戏剧学院", "上海戏剧学院", "中央音乐学院", "南开大学"]
COUNTRIES = ["中国", "美国", "日本", "韩国", "英国", "法国", "加拿大", "新加坡", "澳大利亚", "马来西亚"]
PUBLISHERS = ["人民文学出版社", "作家出版社", "长江文艺出版社", "上海译文出版社", "中信出版社", "湖南文艺出版社"]
JOBS = ["演员", "歌手", "作家", "导演", "主持人", "编剧", "词曲作者", "企业家"]


def relation_examples(count, seed=0):
    """DuIE-style {"text", "spo_list"} dicts from templates, with made-up names and titles.

    Names and titles are random, so a model must find them from the sentence patterns around
    them; one template has two subjects and some have one subject with several objects.
    """
    rng = random.Random(seed)

    def person():
        return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN_CHARS) for _ in range(rng.randint(1, 2)))

    def people(n):
        names = []
        while len(names) < n:
            name = person()
            if all(name not in other and other not in name for other in names):
                names.append(name)
        return names

    def title():
        parts = rng.sample(TITLE_PARTS, rng.randint(1, 2))
        return "".join(parts) + rng.choice(TITLE_SUFFIXES)

    def date():
        return "%d年%d月%d日" % (rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28))

    def spo(subject, predicate, obj):
        subject_type, _, object_type = next(schema for schema in RELATION_SCHEMAS if schema[1] == predicate)
        return {"predicate": predicate, "object_type": object_type, "subject_type": subject_type,
                "object": obj, "subject": subject}

    def book():
        name, writer, publisher = title(), person(), rng.choice(PUBLISHERS)
        text = rng.choice(["《%s》是%s创作的长篇小说，%d年由%s出版",
                           "《%s》是%s所著的一部散文集，由%s出版发行"])
        if "%d" in text:
            text = text % (name, writer, rng.randint(1980, 2018), publisher)
        else:
            text = text % (name, writer, publisher)
        return text, [spo(name, "作者", writer), spo(name, "出版社", publisher)]

    def biography():
        name, born, place, school = person(), date(), rng.choice(PLACES), rng.choice(SCHOOLS)
        job = rng.choice(JOBS)
        if rng.random() < 0.5:
            text = "%s，%s出生于%s，中国内地%s，毕业于%s" % (name, born, place, job, school)
            return text, [spo(name, "出生日期", born), spo(name, "出生地", place), spo(name, "毕业院校", school)]
        country = rng.choice(COUNTRIES)
        text = "%s，%s籍%s，出生于%s，%d年考入%s" % (name, country, job, place, rng.randint(1970, 2015), school)
        return text, [spo(name, "国籍", country), spo(name, "出生地", place), spo(name, "毕业院校", school)]

    def film():
        name, (director, lead, second) = title(), people(3)
        if rng.random() < 0.5:
            text = "《%s》是由%s执导，%s、%s主演的%s" % (name, director, lead, second, rng.choice(["电影", "电视剧", "爱情片"]))
            return text, [spo(name, "导演", director), spo(name, "主演", lead), spo(name, "主演", second)]
        released = date()
        text = "%s主演的电影《%s》于%s上映，导演是%s" % (lead, name, released, director)
        return text, [spo(name, "主演", lead), spo(name, "上映时间", released), spo(name, "导演", director)]

    def song():
        name, album, (singer, writer, composer) = title(), title(), people(3)
        if rng.random() < 0.5:
            text = "《%s》是%s演唱的一首歌曲，收录于专辑《%s》中" % (name, singer, album)
            return text, [spo(name, "歌手", singer), spo(name, "所属专辑", album)]
        text = "《%s》由%s作词，%s作曲，%s演唱" % (name, writer, composer, singer)
        return text, [spo(name, "作词", writer), spo(name, "作曲", composer), spo(name, "歌手", singer)]

    def classmates():
        first, second = people(2)
        school = rng.choice(SCHOOLS)
        text = "%s和%s都毕业于%s，两人是同班同学" % (first, second, school)
        return text, [spo(first, "毕业院校", school), spo(second, "毕业院校", school)]

    templates = [book, biography, film, song, classmates]
    examples = []
    for _ in range(count):
        text, spo_list = rng.choice(templates)()
        examples.append({"text": text + "。", "spo_list": spo_list})
    return examples


def write_relation(out_dir, count, seed):
    dev, train = dev_and_train(relation_examples(count, seed))
    for name, rows in (("dev_data.json", dev), ("train_data.json", train)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as writer:
            writer.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    with open(os.path.join(out_dir, "all_50_schemas"), "w", encoding="utf-8") as writer:
        writer.writelines(json.dumps({"object_type": object_type, "predicate": predicate, "subject_type": subject_type},
                                     ensure_ascii=False) + "\n" for subject_type, predicate, object_type in RELATION_SCHEMAS)


# ---------------------------------------------------------------------------------------------
# Classification beyond 0/1: news topics as CLUE's TNEWS JSON lines, and sentence pairs with
# three labels as CLUE's CMNLI/OCNLI JSON lines (train.json, dev.json)
# ---------------------------------------------------------------------------------------------

# TNEWS' codes and descriptions for four of its topics; each topic has words of its own.
TOPICS_BY_LABEL = {
    ("102", "news_entertainment"): ["电影", "明星", "综艺", "歌手", "演唱会", "导演"],
    ("103", "news_sports"): ["足球", "篮球", "比赛", "冠军", "球员", "进球"],
    ("104", "news_finance"): ["股市", "银行", "利率", "基金", "投资", "涨停"],
    ("107", "news_tech"): ["手机", "芯片", "软件", "机器人", "电脑", "网络"],
}
NEWS_FRAMES = ["{0}和{1}成了今天的热门话题", "记者报道，{0}的消息让{1}再次受到关注", "关于{0}，网友最关心的是{1}",
               "{0}又有新动向，{1}怎么看", "为什么{0}总是离不开{1}？"]


def topic_examples(count, seed=0):
    """TNEWS-style rows {"label", "label_desc", "sentence"}: the topic is told by its words."""
    rng = random.Random(seed)
    topics = sorted(TOPICS_BY_LABEL)
    rows = []
    for _ in range(count):
        label, description = rng.choice(topics)
        first, second = rng.sample(TOPICS_BY_LABEL[(label, description)], 2)
        rows.append({"label": label, "label_desc": description, "sentence": rng.choice(NEWS_FRAMES).format(first, second)})
    return rows


# The second sentence's cue word tells how it relates to the first, so a model must read both texts.
PAIR_CUES = {"entailment": ["确实", "的确"], "neutral": ["可能", "也许"], "contradiction": ["没有", "从未"]}
PAIR_PEOPLE = ["小明", "老王", "她的同事", "那位医生", "我的邻居", "这个学生"]
PAIR_EVENTS = ["去过北京", "看过这部电影", "参加了比赛", "买了新车", "学过钢琴", "见过校长"]


def pair_examples(count, seed=0):
    """CMNLI-style rows {"sentence1", "sentence2", "label"} with entailment, neutral or contradiction."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(sorted(PAIR_CUES))
        person, event = rng.choice(PAIR_PEOPLE), rng.choice(PAIR_EVENTS)
        premise = "%s上个月%s，%s" % (person, event, rng.choice(["大家都知道", "他自己说的", "新闻里提到过"]))
        hypothesis = "%s%s%s" % (rng.choice(PAIR_PEOPLE), rng.choice(PAIR_CUES[label]), rng.choice(PAIR_EVENTS))
        rows.append({"sentence1": premise, "sentence2": hypothesis, "label": label})
    return rows


def json_lines_writer(make_rows):
    def write(out_dir, count, seed):
        dev, train = dev_and_train(make_rows(count, seed))
        for name, rows in (("dev.json", dev), ("train.json", train)):
            with open(os.path.join(out_dir, name), "w", encoding="utf-8") as writer:
                writer.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return write


WRITERS = {"sentiment": write_sentiment, "relation": write_relation, "subject": write_subject,
           "topics": json_lines_writer(topic_examples), "pairs": json_lines_writer(pair_examples)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(WRITERS))
    parser.add_argument("--out", required=True, help="folder to write the files into")
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    WRITERS[args.task](args.out, args.examples, args.seed)
    print("wrote %d %s examples to %s" % (args.examples, args.task, args.out))


if __name__ == "__main__":
    main()
