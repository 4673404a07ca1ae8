"""The fixed texts every contender speaks (Japanese: the stand-in GenieData has no Chinese/English G2P data)."""

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
