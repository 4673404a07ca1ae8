"""The fixed texts every contender speaks.

The main run's texts are Japanese (its figures and targets read them: keep them unchanged). The languages
step (bench/languages.py) speaks LANGUAGE_TEXTS, on the demo voice of each language.
"""

SHORT = "こんにちは、"

SENTENCE = "今日はとてもいい天気なので、公園まで散歩に行きましょう。"

PARAGRAPH = (
    "むかしむかし、ある山のふもとに、おじいさんとおばあさんが住んでいました。"
    "おじいさんは山へしば刈りに、おばあさんは川へ洗濯に行きました。"
    "すると、川上から大きな桃が、どんぶらこ、どんぶらこと流れてきました。"
    "おばあさんはその桃を拾って、家に持って帰りました。"
    "二人が桃を切ろうとすると、中から元気な男の子が生まれました。"
)

#: Distinct sentences for concurrent clients: each client's audio length identifies its text.
CONCURRENT = [
    "おはようございます、今日もよろしくお願いします。",
    "駅までの道を教えていただけますか。",
    "この本はとても面白くて、一晩で読んでしまいました。",
    "明日の会議は午後三時からです。",
    "雨が降りそうなので、傘を持って行ったほうがいいですよ。",
    "週末は家族と一緒に海へ行く予定です。",
    "新しいレストランの料理は、どれもおいしかったです。",
    "ありがとうございました、またお会いしましょう。",
]

TEXTS = {"short": SHORT, "sentence": SENTENCE, "paragraph": PARAGRAPH}

#: Per language (the demo voice's code): a sentence about as long in speech as SENTENCE (the demo voice's length
#: rule makes 60-65 phonemes, about 5 s) and a short paragraph of three sentences (about 11 s). The Chinese and
#: English texts hold numbers, a date, a percentage and abbreviations, so the text normaliser is timed too.
LANGUAGE_TEXTS = {
    "zh": {
        "sentence": "今天是2024年3月15日，我们的计划已经完成了85%。",
        "paragraph": (
            "小明每天早上七点起床，先跑步半个小时，然后吃早饭。"
            "他说，坚持运动让他的精神好了很多。"
            "上个月，他一共跑了120公里，比去年同期多了30%。"
        ),
    },
    "en": {
        "sentence": "Dr. Smith said the meeting starts at 3 pm, and 25 people will join us.",
        "paragraph": (
            "Every morning, Mr. Lee walks his dog along the river before work. "
            "Last week they covered 18 miles, almost twice as far as in January. "
            "He says the fresh air helps him think, and the dog clearly agrees."
        ),
    },
    "ko": {
        "sentence": "오늘은 날씨가 좋아서 공원까지 산책하러 가려고 합니다.",
        "paragraph": (
            "어제는 친구와 함께 시장에 갔습니다. "
            "신선한 과일과 채소를 많이 샀어요. "
            "저녁에는 그 재료로 맛있는 비빔밥을 만들어 먹었습니다."
        ),
    },
}

#: What each contender speaks once after it starts, untimed (TEXTS["short"] for Japanese).
WARMUPS = {"ja": SHORT, "zh": "你好，", "en": "Hello,", "ko": "안녕하세요,"}
