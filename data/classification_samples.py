"""Write the classification samples in data/classification/, each in its publisher's exact layout.

Every text is made up from the templates below (no line is taken from the real data sets, whose
terms forbid or do not clear redistribution); only the layouts are the publishers': file names,
field names and order, header or none, label values, and each format's quirks (OCNLI's `-` rows,
CLUE test files without labels, TNEWS `label_desc` beside IFLYTEK `label_des`, THUCNews' `class.txt`).
Labels follow the words in the text (topic words for topics, shared words for matching pairs,
cue words for entailment), so a tiny model can learn them a little: the samples are for smoke
runs and tests, not for judging a model. data/README.md says where each real set comes from.

    python data/classification_samples.py                       # rewrites data/classification/
    python data/classification_samples.py --out /tmp/cls --scale 20   # 20 times as many lines
"""
import argparse
import json
import os
import random

# ---------------------------------------------------------------------------------------------
# News headlines by topic: (subjects, events, keywords). A headline is a subject and an event of
# the same topic, so the topic words decide the label. Shared by TNEWS and both THUCNews layouts.
# ---------------------------------------------------------------------------------------------

TOPICS = {
    "故事": ("老张|邻居大婶|小李的婆婆|村口的老人|外出打工的表哥",
           "讲了一个民间故事|年轻时的往事让人落泪|捡到钱包后的选择|三十年后才知道真相|和儿媳的一段故事",
           "民间故事,婆婆,往事,老人"),
    "文化": ("一位书法家|市博物馆|非遗传承人|古籍修复师|一座百年书院",
           "讲述传统文化的传承|展出宋代瓷器|把剪纸带进课堂|修复千年古籍|举办诗词雅集",
           "书法,博物馆,非遗,古籍,诗词"),
    "娱乐": ("一位当红歌手|新上映的电影|人气综艺节目|青年演员|某偶像组合",
           "新专辑首周销量破纪录|票房突破十亿|公布新一季嘉宾|获得最佳新人奖|演唱会门票秒光",
           "明星,电影,综艺,演唱会,票房"),
    "体育": ("主队球员|国家女排|马拉松选手|篮球联赛|乒乓球小将",
           "补时绝杀对手|三比零战胜对手夺冠|打破赛会纪录|季后赛首轮晋级|拿下世界冠军",
           "比赛,冠军,球队,联赛,进球"),
    "财经": ("央行|多家银行|消费市场|上半年经济数据|一家上市公司",
           "下调存款利率|发布季度财报|居民消费稳步回升|出口增速超出预期|营业收入同比增长",
           "银行,利率,经济,财报,消费"),
    "房产": ("城东新楼盘|二手房市场|多地楼市|公积金新政|一个老旧小区",
           "开盘当天售罄|成交量环比上涨|房价企稳回升|首付比例下调|启动改造工程",
           "楼盘,房价,二手房,楼市,首付"),
    "汽车": ("一款紧凑型SUV|新能源车型|某品牌轿车|国产电动车|家用七座车",
           "百公里油耗仅五升|续航突破六百公里|新款上市售价十二万起|销量再创新高|召回部分车辆",
           "SUV,新车,油耗,续航,轿车"),
    "教育": ("今年高考|考研报名|多所高校|中小学|职业院校",
           "录取分数线公布|报考人数再创新高|发布招生简章|推行课后服务|开设新专业",
           "高考,考研,高校,招生,学生"),
    "科技": ("新款手机|国产芯片|人工智能公司|一家互联网企业|卫星导航系统",
           "搭载自研处理器发布|实现量产突破|推出大模型产品|发布操作系统更新|完成全球组网",
           "手机,芯片,人工智能,互联网,系统"),
    "军事": ("新型战机|海军舰艇编队|某部官兵|国产航母|导弹部队",
           "完成首次试飞|开展远海训练|进行实弹演习|完成海上测试|组织夜间射击",
           "战机,舰艇,演习,官兵,训练"),
    "旅游": ("一座江南古镇|国庆假期景区|自驾游路线|西部草原|海岛度假村",
           "迎来赏秋游客|游客接待量大增|沿途风景美如画|开放夏季观光|推出亲子游套餐",
           "景区,古镇,游客,自驾游,度假"),
    "国际": ("外国总统|联合国大会|多国外长|欧洲议会|某国新政府",
           "就气候问题发表讲话|通过一项决议|举行会谈|举行选举投票|宣布新的外交政策",
           "总统,联合国,外长,会谈,外交"),
    "股票": ("A股三大指数|创业板|银行板块|一只科技股|北向资金",
           "午后集体翻红|放量大涨|早盘冲高回落|连续三个涨停|净买入超百亿",
           "A股,涨停,指数,板块,个股"),
    "农业": ("种粮大户|果园里的苹果|养殖户|高标准农田|乡村合作社",
           "迎来大丰收|亩产再创新高|靠养牛增收致富|完成秋播|带动农民种植药材",
           "农民,种植,养殖,丰收,亩产"),
    "游戏": ("一款国产手游|电竞战队|经典单机游戏|开放世界新作|游戏主机",
           "公测首日登顶下载榜|夺得全球总决赛冠军|推出重制版|发布新版本地图|公布发售日期",
           "手游,电竞,玩家,主机,版本"),
    "社会": ("一名外卖小哥|社区志愿者|热心市民|派出所民警|一名环卫工",
           "勇救落水儿童|帮独居老人送菜|拾金不昧归还失主|帮走失老人找到家人|雨中坚守岗位",
           "市民,民警,志愿者,社区,救人"),
    "时政": ("国务院常务会议|省政府|全国人大|有关部门|市委工作会议",
           "部署稳就业举措|出台促消费政策|审议法律草案|发布改革方案|强调推进高质量发展",
           "国务院,政策,会议,改革,部署"),
    "家居": ("小户型客厅|卧室收纳|北欧风格装修|厨房改造|新款沙发",
           "巧用空间显大一倍|十个实用小技巧|打造温馨的家|预算两万搞定|舒适又耐用",
           "装修,收纳,客厅,卧室,家具"),
    "时尚": ("今秋流行色|街拍达人|国际时装周|一款经典手袋|职场穿搭",
           "引领新潮流|示范叠穿技巧|发布春夏新品|推出限量版|简约又显气质",
           "穿搭,时装周,流行,新品,搭配"),
}
PREFIXES = ["", "", "", "快讯：", "组图：", "热点｜"]
SUFFIXES = ["", "", "", "（图）", "，网友热议", "，原因曝光"]


def topic_parts(topic):
    subjects, events, keywords = TOPICS[topic]
    return subjects.split("|"), events.split("|"), keywords.split(",")


def headline(rng, topic):
    """A made-up news headline on `topic`, 8 to 30 characters."""
    subjects, events, _ = topic_parts(topic)
    return rng.choice(PREFIXES) + rng.choice(subjects) + rng.choice(events) + rng.choice(SUFFIXES)


def keywords(rng, topic):
    """TNEWS-style keywords: two or three topic words joined by commas, sometimes none."""
    words = topic_parts(topic)[2]
    return "" if rng.random() < 0.15 else ",".join(rng.sample(words, rng.randint(2, 3)))


def article(rng, topic):
    """A short THUCNews-style article (cnews): a headline and one or two more sentences on the topic."""
    subjects, events, _ = topic_parts(topic)
    sentences = [rng.choice(subjects) + rng.choice(events)]
    for _ in range(rng.randint(1, 2)):
        sentences.append(rng.choice(["据记者了解，", "业内人士表示，", "消息称，", ""])
                         + rng.choice(subjects) + rng.choice(events))
    return "。".join(sentences) + "。"


def balanced(labels, per_label, rng):
    """Each label `per_label` times, shuffled."""
    rows = [label for label in labels for _ in range(per_label)]
    rng.shuffle(rows)
    return rows


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as writer:
        writer.writelines(line + "\n" for line in lines)


def json_line(row, compact=False):
    """One JSON line as the publisher writes it: CLUE with `, ` and `: `, OCNLI with no spaces."""
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(row, ensure_ascii=False, separators=separators)


# ---------------------------------------------------------------------------------------------
# CLUE TNEWS (tnews_public.zip): train.json, dev.json, test.json, labels.json
# ---------------------------------------------------------------------------------------------

TNEWS_LABELS = [  # (label, label_desc, our topic), CLUE's 15 classes: 100..116 without 105 and 111
    ("100", "news_story", "故事"), ("101", "news_culture", "文化"), ("102", "news_entertainment", "娱乐"),
    ("103", "news_sports", "体育"), ("104", "news_finance", "财经"), ("106", "news_house", "房产"),
    ("107", "news_car", "汽车"), ("108", "news_edu", "教育"), ("109", "news_tech", "科技"),
    ("110", "news_military", "军事"), ("112", "news_travel", "旅游"), ("113", "news_world", "国际"),
    ("114", "news_stock", "股票"), ("115", "news_agriculture", "农业"), ("116", "news_game", "游戏"),
]


def tnews_rows(rng, per_label):
    rows = []
    for label, label_desc, topic in balanced(TNEWS_LABELS, per_label, rng):
        rows.append({"label": label, "label_desc": label_desc, "sentence": headline(rng, topic),
                     "keywords": keywords(rng, topic)})
    return rows


def write_tnews(out_dir, scale, rng):
    train, dev = tnews_rows(rng, 5 * scale), tnews_rows(rng, 2 * scale)
    # The test file has an id and no label, as CLUE ships it for submissions.
    test = [{"id": index, "sentence": row["sentence"], "keywords": row["keywords"]}
            for index, row in enumerate(tnews_rows(rng, scale))]
    for name, rows in (("train.json", train), ("dev.json", dev), ("test.json", test)):
        write_lines(os.path.join(out_dir, name), [json_line(row) for row in rows])
    write_lines(os.path.join(out_dir, "labels.json"),
                [json_line({"label": label, "label_desc": label_desc}) for label, label_desc, _ in TNEWS_LABELS])


# ---------------------------------------------------------------------------------------------
# FewCLUE TNEWS (FewCLUE/datasets/tnews/): integer labels and an `id` on every line
# train_0.json, dev_0.json, test_public.json (labelled), test.json (id and sentence only)
# ---------------------------------------------------------------------------------------------

def write_fewclue_tnews(out_dir, scale, rng):
    files = {"train_0.json": tnews_rows(rng, 4 * scale), "dev_0.json": tnews_rows(rng, 2 * scale),
             "test_public.json": tnews_rows(rng, 2 * scale)}
    next_id = 0
    for name, rows in files.items():
        lines = []
        for row in rows:
            lines.append(json_line({"label": int(row["label"]), "label_desc": row["label_desc"],
                                    "sentence": row["sentence"], "keywords": row["keywords"], "id": next_id}))
            next_id += 1
        write_lines(os.path.join(out_dir, name), lines)
    # FewCLUE's unlabelled test file writes its ids as strings.
    write_lines(os.path.join(out_dir, "test.json"),
                [json_line({"id": str(index), "sentence": row["sentence"]})
                 for index, row in enumerate(tnews_rows(rng, scale))])


# ---------------------------------------------------------------------------------------------
# CLUE IFLYTEK (iflytek_public.zip): app descriptions, 119 classes in the real set, 8 here
# `label_des` (not `label_desc`); train.json, dev.json, test.json, labels.json
# ---------------------------------------------------------------------------------------------

IFLYTEK_LABELS = {  # label: (label_des, app names, features); the label ids are the real set's
    "0": ("打车", "快嘀出行|顺风小兔|招手车", "一键叫车，司机几分钟就到|支持预约用车和拼车|实时显示司机位置和预估车费"),
    "1": ("地图导航", "路路通导航|北斗行|指路星", "提供实时路况和语音导航|离线地图也能规划路线|步行骑行驾车路线一键切换"),
    "2": ("免费WIFI", "随连WiFi|蹭网宝|飞速热点", "自动发现附近免费热点|一键连接公共无线网络|检测热点安全防止蹭网风险"),
    "3": ("租车", "悠悠租车|周末自驾|车多多", "按天租车，门店取还车|异地还车，押金全免|海量车型随心选，租车更省钱"),
    "8": ("公共交通", "城市公交通|地铁宝|乘车码", "查询公交到站时间|手机扫码乘地铁|查看地铁线路和换乘方案"),
    "92": ("支付", "付呗钱包|快付通|零钱宝宝", "扫码付款，转账秒到账|绑定银行卡即可付款|支持水电煤缴费"),
    "117": ("收款", "收钱吧吧|店铺收款宝|码上收", "商家收款语音播报|一个码收全部付款方式|每日收款账单自动汇总"),
    "118": ("其他", "小小工具箱|万能助手|生活百宝箱", "集合多种实用小工具|手电筒计算器一应俱全|日常生活小帮手"),
}


def iflytek_rows(rng, per_label):
    rows = []
    for label in balanced(sorted(IFLYTEK_LABELS, key=int), per_label, rng):
        label_des, apps, features = IFLYTEK_LABELS[label]
        first, second = rng.sample(features.split("|"), 2)
        sentence = "%s是一款%s应用。%s，%s。" % (rng.choice(apps.split("|")), label_des, first, second)
        if rng.random() < 0.5:  # half the descriptions do not name their category
            sentence = "%s，%s。" % (rng.choice(apps.split("|")), first)
        rows.append({"label": label, "label_des": label_des, "sentence": sentence})
    return rows


def write_iflytek(out_dir, scale, rng):
    train, dev = iflytek_rows(rng, 8 * scale), iflytek_rows(rng, 3 * scale)
    test = [{"id": index, "sentence": row["sentence"]} for index, row in enumerate(iflytek_rows(rng, 2 * scale))]
    for name, rows in (("train.json", train), ("dev.json", dev), ("test.json", test)):
        write_lines(os.path.join(out_dir, name), [json_line(row) for row in rows])
    write_lines(os.path.join(out_dir, "labels.json"),
                [json_line({"label": label, "label_des": IFLYTEK_LABELS[label][0]})
                 for label in sorted(IFLYTEK_LABELS, key=int)])


# ---------------------------------------------------------------------------------------------
# Question matching: AFQMC (CLUE JSON), LCQMC and BQ (TSV). A pair matches when both questions
# ask the same thing of the same object; unmatched pairs share the object or the way of asking.
# ---------------------------------------------------------------------------------------------

QUESTION_DOMAINS = {  # objects | intents, each intent with ways of asking ("{}" is the object)
    "afqmc": ("花呗|借呗|信用卡", {
        "还款": ["{}怎么还款", "{}在哪里还钱", "如何还{}的钱", "{}的还款入口在哪"],
        "提额": ["{}怎么提额", "{}额度怎么提高", "怎样提升{}的额度", "{}能不能加额度"],
        "开通": ["{}怎么开通", "如何开通{}", "我想开{}在哪里弄", "{}开通需要什么条件"],
        "关闭": ["{}怎么关闭", "如何注销{}", "我不想用{}了怎么关掉", "{}可以关掉吗"],
        "逾期": ["{}逾期了怎么办", "{}晚还几天有影响吗", "{}过了还款日会怎样", "{}逾期会上征信吗"],
    }),
    "lcqmc": ("红烧肉|蛋糕|酸奶|月饼|饺子|手工皂", {
        "做法": ["{}怎么做", "{}的做法是什么", "怎样自己做{}", "在家做{}的步骤"],
        "价格": ["{}多少钱", "{}贵不贵", "{}大概什么价位", "买{}要花多少钱"],
        "地点": ["哪里可以买到{}", "{}在哪买", "哪家店有卖{}", "去哪里买{}比较好"],
        "保存": ["{}怎么保存", "{}能放多久", "{}放冰箱能保存几天", "{}怎样保存不会坏"],
    }),
    "bq": ("贷款|借款|提现|退款", {
        "到账": ["{}多久能到账", "{}什么时候到账", "{}到账要几天", "{}一般多长时间到"],
        "申请": ["{}怎么申请", "如何申请{}", "{}在哪里申请", "申请{}需要什么"],
        "失败": ["{}为什么失败", "{}一直失败怎么回事", "{}不成功是什么原因", "{}总是提示失败"],
        "取消": ["{}可以取消吗", "怎么取消{}", "{}能撤销吗", "我想取消{}"],
    }),
}


def question_pairs(rng, domain, count):
    """(question, question, "0" or "1") pairs, about a third of them matching."""
    objects, intents = QUESTION_DOMAINS[domain]
    objects = objects.split("|")
    pairs = []
    for _ in range(count):
        obj, intent = rng.choice(objects), rng.choice(sorted(intents))
        first = rng.choice(intents[intent]).format(obj)
        if rng.random() < 0.35:
            second, label = rng.choice([q for q in intents[intent] if q.format(obj) != first]).format(obj), "1"
        elif rng.random() < 0.5:  # same object, another question
            other = rng.choice([i for i in sorted(intents) if i != intent])
            second, label = rng.choice(intents[other]).format(obj), "0"
        else:  # same question, another object
            other = rng.choice([o for o in objects if o != obj])
            second, label = rng.choice(intents[intent]).format(other), "0"
        pairs.append((first, second, label))
    return pairs


def write_afqmc(out_dir, scale, rng):
    """CLUE AFQMC (afqmc_public.zip): {"sentence1", "sentence2", "label": "0"/"1"}; test with id, no label."""
    for name, count in (("train.json", 100), ("dev.json", 30)):
        write_lines(os.path.join(out_dir, name),
                    [json_line({"sentence1": a, "sentence2": b, "label": label})
                     for a, b, label in question_pairs(rng, "afqmc", count * scale)])
    write_lines(os.path.join(out_dir, "test.json"),
                [json_line({"id": index, "sentence1": a, "sentence2": b})
                 for index, (a, b, _) in enumerate(question_pairs(rng, "afqmc", 15 * scale))])


def write_luge_pairs(out_dir, domain, scale, rng):
    """LUGE / PaddleNLP (lcqmc.zip, bq_corpus.zip): `a<TAB>b<TAB>label`, no header; test.tsv has no label."""
    for name, count in (("train.tsv", 100), ("dev.tsv", 30)):
        write_lines(os.path.join(out_dir, name),
                    ["\t".join(pair) for pair in question_pairs(rng, domain, count * scale)])
    write_lines(os.path.join(out_dir, "test.tsv"),
                ["%s\t%s" % (a, b) for a, b, _ in question_pairs(rng, domain, 15 * scale)])


def write_lcqmc_ernie(out_dir, scale, rng):
    """ERNIE's task_data_zh.tgz (lcqmc/): header `text_a<TAB>text_b<TAB>label`, every file labelled."""
    for name, count in (("train.tsv", 100), ("dev.tsv", 30), ("test.tsv", 15)):
        write_lines(os.path.join(out_dir, name),
                    ["text_a\ttext_b\tlabel"] + ["\t".join(pair) for pair in question_pairs(rng, "lcqmc", count * scale)])


# ---------------------------------------------------------------------------------------------
# PAWS-X zh (google-research-datasets/paws, x-final/zh/): `id<TAB>sentence1<TAB>sentence2<TAB>label`
# with a header; translated_train.tsv, dev_2k.tsv, test_2k.tsv. Word-scrambled pairs: a
# paraphrase keeps who did what, a non-paraphrase swaps two names with almost the same words.
# ---------------------------------------------------------------------------------------------

PAWS_PEOPLE = ["林子墨", "陈雨桐", "周一帆", "许清和", "宋知远", "韩若溪", "唐明川", "苏景行"]
PAWS_PLACES = ["杭州", "长沙", "青岛", "成都", "厦门", "南昌", "大连", "昆明"]
PAWS_TEMPLATES = [  # (sentence, paraphrase), {a} and {b} are swapped in the non-paraphrases
    ("{a}于{year}年出生在{p}，后来随{b}搬到了{q}。", "{a}{year}年生于{p}，之后和{b}一起迁居{q}。"),
    ("{a}是{b}的学生，两人曾在{p}共事多年。", "{a}师从{b}，二人在{p}一起工作了很多年。"),
    ("{year}年，{a}接替{b}担任{p}乐团的指挥。", "{a}在{year}年从{b}手中接过了{p}乐团指挥一职。"),
    ("{a}在{p}击败了{b}，赢得了{year}年的冠军。", "{year}年的冠军由{a}获得，他在{p}战胜了{b}。"),
]


def pawsx_rows(rng, count, first_id):
    rows = []
    for index in range(count):
        sentence, paraphrase = rng.choice(PAWS_TEMPLATES)
        a, b = rng.sample(PAWS_PEOPLE, 2)
        slots = {"year": rng.randint(1950, 2015), "p": rng.choice(PAWS_PLACES), "q": rng.choice(PAWS_PLACES)}
        first = sentence.format(a=a, b=b, **slots)
        if rng.random() < 0.45:
            second, label = paraphrase.format(a=a, b=b, **slots), "1"
        else:  # the same words with the two people swapped: a different meaning
            second, label = rng.choice([sentence, paraphrase]).format(a=b, b=a, **slots), "0"
        rows.append("%d\t%s\t%s\t%s" % (first_id + index, first, second, label))
    return rows


def write_pawsx(out_dir, scale, rng):
    first_id = 1
    for name, count in (("translated_train.tsv", 100), ("dev_2k.tsv", 30), ("test_2k.tsv", 20)):
        write_lines(os.path.join(out_dir, name),
                    ["id\tsentence1\tsentence2\tlabel"] + pawsx_rows(rng, count * scale, first_id))
        first_id += count * scale


# ---------------------------------------------------------------------------------------------
# Natural language inference: CMNLI and OCNLI, labels entailment / neutral / contradiction.
# A hypothesis restates the premise (entailment), denies it (contradiction) or adds a guess.
# ---------------------------------------------------------------------------------------------

NLI_PREMISES = [  # (premise, entailed, contradicted, neutral), {n} a name, {p} a place
    ("{n}上周末带着孩子去{p}看了画展", "{n}去过{p}", "{n}从来没去过{p}", "{n}很喜欢画画"),
    ("{n}每天早上六点起床，先跑步再去{p}上班", "{n}有跑步的习惯", "{n}从不运动", "{n}的公司离家很远"),
    ("{p}今年新建了三所小学，缓解了上学难的问题", "{p}建了新学校", "{p}没有建任何学校", "{p}的人口增长很快"),
    ("{n}在{p}开了一家面馆，生意一直不错", "{n}经营一家面馆", "{n}的面馆早就关门了", "{n}的面馆是祖传的"),
    ("会议决定明年在{p}继续推进旧城改造", "{p}有旧城改造计划", "{p}的旧城改造已经停止", "旧城改造会花很多钱"),
    ("{n}说他昨晚在{p}加班到很晚才回家", "{n}昨晚加班了", "{n}昨晚一直在家休息", "{n}的工作压力很大"),
]
NLI_NAMES = ["小王", "老李", "张阿姨", "刘师傅", "小陈", "赵老师"]
NLI_PLACES = ["市中心", "城南", "图书馆", "工厂", "县城", "老街"]
NLI_LABELS = ("entailment", "contradiction", "neutral")


def nli_pairs(rng, count):
    """(premise, hypothesis, label, premise index) tuples, labels in equal thirds."""
    pairs = []
    for label in balanced(NLI_LABELS, -(-count // 3), rng)[:count]:
        index = rng.randrange(len(NLI_PREMISES))
        premise, *hypotheses = NLI_PREMISES[index]
        slots = {"n": rng.choice(NLI_NAMES), "p": rng.choice(NLI_PLACES)}
        hypothesis = hypotheses[NLI_LABELS.index(label)]
        pairs.append((premise.format(**slots), hypothesis.format(**slots), label, index))
    return pairs


def write_cmnli(out_dir, scale, rng):
    """CLUE CMNLI (cmnli_public.zip): {"sentence1", "sentence2", "label"}; test with id, no label."""
    for name, count in (("train.json", 90), ("dev.json", 30)):
        write_lines(os.path.join(out_dir, name),
                    [json_line({"sentence1": premise, "sentence2": hypothesis, "label": label})
                     for premise, hypothesis, label, _ in nli_pairs(rng, count * scale)])
    write_lines(os.path.join(out_dir, "test.json"),
                [json_line({"id": index, "sentence1": premise, "sentence2": hypothesis})
                 for index, (premise, hypothesis, _, _) in enumerate(nli_pairs(rng, 15 * scale))])


OCNLI_GENRES = ["gov", "news", "lit", "tv", "phone"]


def ocnli_row(rng, premise, hypothesis, label, premise_index, row_id, five_labels, no_majority=False):
    """One OCNLI line: level, the pair, the gold label, the five annotators' labels, genre, ids.

    `label` is the majority of label0..label4; with no majority it is "-" (the pair has no gold label).
    Pairs that were not relabelled carry null in label0..label4, as most of OCNLI's training set does.
    """
    genre = OCNLI_GENRES[premise_index % len(OCNLI_GENRES)]
    votes = [None] * 5
    if no_majority:  # two, two and one: no label has three votes
        first, second, third = rng.sample(NLI_LABELS, 3)
        votes = [first, first, second, second, third]
        rng.shuffle(votes)
        label = "-"
    elif five_labels:
        others = [other for other in NLI_LABELS if other != label]
        votes = [label] * rng.randint(3, 5)
        votes += [rng.choice(others) for _ in range(5 - len(votes))]
        rng.shuffle(votes)
    row = {"level": rng.choice(["easy", "medium", "hard", "na"]), "sentence1": premise, "sentence2": hypothesis,
           "label": label}
    row.update(("label%d" % i, vote) for i, vote in enumerate(votes))
    row.update(genre=genre, prem_id="%s_%d" % (genre, 100 + premise_index), id=row_id)
    return row


def write_ocnli(out_dir, scale, rng):
    """CLUE OCNLI (ocnli_public.zip): train.50k.json, dev.json, test.json, compact JSON lines.

    Training lines mostly lack the five annotator labels; every dev line has them. A few lines
    in both are labelled "-" (no majority), which CLUE's baselines skip.
    """
    next_id = 0
    for name, count, no_majority, five_labels_share in (("train.50k.json", 90, 3, 0.1), ("dev.json", 30, 2, 1.0)):
        rows = []
        for premise, hypothesis, label, index in nli_pairs(rng, count * scale):
            rows.append(ocnli_row(rng, premise, hypothesis, label, index, next_id, rng.random() < five_labels_share))
            next_id += 1
        for premise, hypothesis, label, index in nli_pairs(rng, no_majority * scale):
            position = rng.randrange(len(rows))
            rows.insert(position, ocnli_row(rng, premise, hypothesis, label, index, next_id, True, no_majority=True))
            next_id += 1
        write_lines(os.path.join(out_dir, name), [json_line(row, compact=True) for row in rows])
    write_lines(os.path.join(out_dir, "test.json"),
                [json_line({"sentence1": premise, "sentence2": hypothesis, "id": index}, compact=True)
                 for index, (premise, hypothesis, _, _) in enumerate(nli_pairs(rng, 15 * scale))])


# ---------------------------------------------------------------------------------------------
# THUCNews subsets, no header in either:
# gaussic/text-classification-cnn-rnn (cnews): `label<TAB>article`, label names, 10 classes,
#   cnews.train.txt, cnews.val.txt, cnews.test.txt
# 649453932/Chinese-Text-Classification-Pytorch (THUCNews/data/): `title<TAB>index`, 10 classes
#   named one a line in class.txt (line n is index n, no newline after the last); train.txt, dev.txt, test.txt
# ---------------------------------------------------------------------------------------------

CNEWS_LABELS = ["体育", "财经", "房产", "家居", "教育", "科技", "时尚", "时政", "游戏", "娱乐"]
TITLE_CLASSES = ["财经", "房产", "股票", "教育", "科技", "社会", "时政", "体育", "游戏", "娱乐"]


def write_thucnews_cnews(out_dir, scale, rng):
    for name, per_label in (("cnews.train.txt", 6), ("cnews.val.txt", 2), ("cnews.test.txt", 2)):
        write_lines(os.path.join(out_dir, name),
                    ["%s\t%s" % (label, article(rng, label)) for label in balanced(CNEWS_LABELS, per_label * scale, rng)])


def write_thucnews_titles(out_dir, scale, rng):
    for name, per_label in (("train.txt", 8), ("dev.txt", 2), ("test.txt", 2)):
        write_lines(os.path.join(out_dir, name),
                    ["%s\t%d" % (headline(rng, TITLE_CLASSES[index]), index)
                     for index in balanced(range(len(TITLE_CLASSES)), per_label * scale, rng)])
    with open(os.path.join(out_dir, "class.txt"), "w", encoding="utf-8", newline="\n") as writer:
        writer.write("\n".join(TITLE_CLASSES))


WRITERS = {  # folder: writer(out_dir, scale, rng)
    "tnews": write_tnews,
    "iflytek": write_iflytek,
    "fewclue-tnews": write_fewclue_tnews,
    "afqmc": write_afqmc,
    "cmnli": write_cmnli,
    "ocnli": write_ocnli,
    "lcqmc": lambda out_dir, scale, rng: write_luge_pairs(out_dir, "lcqmc", scale, rng),
    "lcqmc-ernie": write_lcqmc_ernie,
    "bq": lambda out_dir, scale, rng: write_luge_pairs(out_dir, "bq", scale, rng),
    "pawsx": write_pawsx,
    "thucnews-cnews": write_thucnews_cnews,
    "thucnews-titles": write_thucnews_titles,
}


def write_all(out_root, scale=1, seed=2019, only=None):
    """Write every sample (or those named in `only`) under `out_root`, one folder each."""
    for folder, writer in sorted(WRITERS.items()):
        if only and folder not in only:
            continue
        out_dir = os.path.join(out_root, folder)
        os.makedirs(out_dir, exist_ok=True)
        # One generator per folder, so that adding a folder leaves the others' files unchanged.
        writer(out_dir, scale, random.Random("%d-%s" % (seed, folder)))
        print("wrote %s" % out_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "classification"),
                        help="folder to write the sample folders into (default: data/classification)")
    parser.add_argument("--scale", type=int, default=1, help="lines per file, as a multiple of the bundled sample's")
    parser.add_argument("--seed", type=int, default=2019)
    parser.add_argument("sets", nargs="*", help="only these folders (default: all): " + ", ".join(sorted(WRITERS)))
    args = parser.parse_args()
    unknown = sorted(set(args.sets) - set(WRITERS))
    if unknown:
        parser.error("unknown sample folder %s; known: %s" % (", ".join(unknown), ", ".join(sorted(WRITERS))))
    write_all(args.out, args.scale, args.seed, args.sets)


if __name__ == "__main__":
    main()
