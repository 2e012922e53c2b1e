import json, os, random, subprocess, sys
rnd = random.Random(int(sys.argv[2]))
model = sys.argv[1]
n = int(sys.argv[3])
specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<reponame>", "<repo_name>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unused12>", "<table>", "</table>", "<h1>", "<b>", "[multimodal]", "<start_of_image>", "<0x41>", "<0xE2>", "<mask>", "<unk>"]
pools = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " ", "  ", "\n", "\t", "\r\n",
    ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`", "éèêëàâäôöûüçñÿœæßÉÀ", "αβγδεζηθλμπσωΩΔ", "абвгдежзийклмнопрст",
    "漢字日本語中文字符你好世界", "ひらがなカタカナ", "한국어텍스트", "١٢٣٤٥٦٧٨٩٠", "ⅠⅡⅢⅫ½¼²³", "😀😃🎉👍🏽🇫🇷❤️‍🔥", "\u0301\u0308\u0327\u093e\u094d",
    "\u00a0\u2009\u3000\u200b\u2028\u0085", "\x00\x01\x07\x1b\x7f", "▁", "…—–“”‘’«»¿¡", "€£¥₹©®™°±×÷", "Ⓐⓑⓒ", "अआइईउकखगघ",
    "'s 't 're 've 'm 'll 'd 'S 'RE", "ÿĀĠĊ",
]
words = ["the", "The", "hello", "world", "I'm", "don't", "we'll", "they've", "2024", "3.14159", "1,000,000", "def", "return", "fn", "main()", "https://example.com/a?b=c", "    ", "\n\n", "\n\n\n\n", "=====", "----", "...", "!!", "??", " ", "\t\t", "a" * 40, " " * 40, "\n" * 40]
out = []
for i in range(n):
    parts = []
    for _ in range(rnd.randint(1, 12)):
        r = rnd.random()
        if r < 0.35:
            parts.append(rnd.choice(words))
        elif r < 0.45:
            parts.append(rnd.choice(specials))
        else:
            pool = rnd.choice(pools)
            parts.append("".join(rnd.choice(pool) for _ in range(rnd.randint(1, 8))))
        if rnd.random() < 0.5:
            parts.append(" ")
    s = "".join(parts)
    if "\x00" in s:
        s = s.replace("\x00", "")
    out.append(s)
data = b"".join(s.encode("utf-8") + b"\0" for s in out)
res = subprocess.run([os.environ.get("ORACLE", "./oracle"), model], input=data, capture_output=True, check=True).stdout.decode().split("\n")
for k, s in enumerate(out):
    a = [int(x) for x in res[2 * k].split()]
    b = [int(x) for x in res[2 * k + 1].split()]
    print(json.dumps({"text": s, "ids": a, "ids_parse_special": b}, ensure_ascii=False))
