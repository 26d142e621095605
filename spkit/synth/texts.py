"""What the embedded corpora say: Speech Commands words, Fluent Speech Commands intents with
several phrasings each, short phrases in ten languages, and digit strings / commands for ASR."""

from __future__ import annotations

import numpy as np

# ---- Speech Commands v0.01 -------------------------------------------------------------------
KWS_TARGETS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
"""The ten command words of the 12-class task."""
KWS_UNKNOWN = ("bed", "bird", "cat", "dog", "eight", "five", "four", "happy", "house", "marvin", "nine",
               "one", "seven", "sheila", "six", "three", "tree", "two", "wow", "zero")
"""The other twenty v0.01 words (the ``_unknown_`` class)."""
BACKGROUND_NOISES = ("white_noise", "pink_noise", "brown_noise", "babble", "hum", "running_tap")
"""The long noise files written to ``_background_noise_/`` (the ``_silence_`` class is cut from them)."""

# ---- Fluent Speech Commands ------------------------------------------------------------------
# The 31 (action, object, location) intents of FSC, each with several phrasings.
# ``{loc}`` is filled with the location word; phrasings without it are used for location "none".
FSC_INTENTS: dict[tuple[str, str, str], tuple[str, ...]] = {}


def _add(action: str, obj: str, locations: tuple[str, ...], with_loc: tuple[str, ...],
         without_loc: tuple[str, ...]) -> None:
    for loc in locations:
        FSC_INTENTS[(action, obj, loc)] = without_loc if loc == "none" else tuple(
            p.format(loc=loc) for p in with_loc)


_ROOMS = ("none", "kitchen", "bedroom", "washroom")
_add("activate", "lights", _ROOMS,
     ("turn on the lights in the {loc}", "turn the lights on in the {loc}", "switch on the {loc} lights",
      "{loc} lights on", "lights on in the {loc}", "switch the lights on in the {loc}"),
     ("turn on the lights", "lights on", "switch on the lights", "turn the lights on",
      "switch the lights on"))
_add("deactivate", "lights", _ROOMS,
     ("turn off the lights in the {loc}", "turn the lights off in the {loc}", "switch off the {loc} lights",
      "{loc} lights off", "lights off in the {loc}", "switch the lights off in the {loc}"),
     ("turn off the lights", "lights off", "switch off the lights", "turn the lights off",
      "switch the lights off"))
_add("increase", "heat", _ROOMS,
     ("turn the heat up in the {loc}", "increase the heating in the {loc}", "{loc} heat up",
      "make the {loc} warmer", "increase the temperature in the {loc}", "it's too cold in the {loc}"),
     ("turn the heat up", "increase the heating", "heat up", "make it warmer", "increase the temperature",
      "it's too cold"))
_add("decrease", "heat", _ROOMS,
     ("turn the heat down in the {loc}", "decrease the heating in the {loc}", "{loc} heat down",
      "make the {loc} cooler", "decrease the temperature in the {loc}", "it's too hot in the {loc}"),
     ("turn the heat down", "decrease the heating", "heat down", "make it cooler", "lower the temperature",
      "it's too hot"))
_add("activate", "lamp", ("none",), (), ("turn on the lamp", "switch on the lamp", "lamp on",
                                         "turn the lamp on", "switch the lamp on"))
_add("deactivate", "lamp", ("none",), (), ("turn off the lamp", "switch off the lamp", "lamp off",
                                           "turn the lamp off", "switch the lamp off"))
_add("activate", "music", ("none",), (), ("play the music", "put on some music", "turn on the music",
                                          "music on", "play music", "start the music"))
_add("deactivate", "music", ("none",), (), ("stop the music", "pause the music", "turn off the music",
                                            "music off", "switch off the music"))
_add("increase", "volume", ("none",), (), ("turn the volume up", "increase the volume", "louder please",
                                           "make it louder", "turn it up", "volume up"))
_add("decrease", "volume", ("none",), (), ("turn the volume down", "decrease the volume", "lower the volume",
                                           "make it quieter", "turn it down", "too loud"))
for _obj in ("newspaper", "juice", "socks", "shoes"):
    _some = "some " if _obj == "juice" else "my " if _obj in ("socks", "shoes") else "the "
    _add("bring", _obj, ("none",), (), (f"bring me {_some}{_obj}", f"get me {_some}{_obj}",
                                        f"fetch {_some}{_obj}", f"bring {_some}{_obj}",
                                        f"go get {_some}{_obj}"))
for _lang in ("Chinese", "Korean", "English", "German"):
    _add("change language", _lang, ("none",), (), (
        f"change the language to {_lang}", f"switch to {_lang}", f"set the language to {_lang}",
        f"use {_lang}", f"{_lang} please", f"switch the language to {_lang}"))
_add("change language", "none", ("none",), (), ("change language", "change the language",
                                                "switch the language", "language settings",
                                                "switch language"))
assert len(FSC_INTENTS) == 31, len(FSC_INTENTS)

# ---- Language identification -----------------------------------------------------------------
# label -> (espeak voices used for that language's speakers, short phrases in the native script)
LID_LANGUAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc"), (
        "good morning", "where is the station", "thank you very much", "I would like a coffee",
        "the weather is nice today", "see you tomorrow", "how much does it cost", "open the window please",
        "my name is Peter", "we are going home")),
    "de": (("de",), (
        "guten Morgen", "wo ist der Bahnhof", "vielen Dank", "ich möchte einen Kaffee",
        "das Wetter ist heute schön", "bis morgen", "wie viel kostet das", "mach bitte das Fenster auf",
        "ich heiße Peter", "wir gehen nach Hause")),
    "fr": (("fr", "fr-be", "fr-ch"), (
        "bonjour", "où est la gare", "merci beaucoup", "je voudrais un café", "il fait beau aujourd'hui",
        "à demain", "combien ça coûte", "ouvre la fenêtre s'il te plaît", "je m'appelle Pierre",
        "nous rentrons à la maison")),
    "es": (("es", "es-419"), (
        "buenos días", "dónde está la estación", "muchas gracias", "quiero un café", "hoy hace buen tiempo",
        "hasta mañana", "cuánto cuesta", "abre la ventana por favor", "me llamo Pedro", "vamos a casa")),
    "it": (("it",), (
        "buongiorno", "dov'è la stazione", "grazie mille", "vorrei un caffè", "oggi fa bel tempo",
        "a domani", "quanto costa", "apri la finestra per favore", "mi chiamo Pietro", "andiamo a casa")),
    "ru": (("ru", "ru-lv"), (
        "доброе утро", "где вокзал", "большое спасибо", "я хочу кофе", "сегодня хорошая погода",
        "до завтра", "сколько это стоит", "открой окно пожалуйста", "меня зовут Пётр", "мы идём домой")),
    "nl": (("nl",), (
        "goedemorgen", "waar is het station", "dank je wel", "ik wil graag een koffie",
        "het is mooi weer vandaag", "tot morgen", "hoeveel kost het", "doe het raam open alsjeblieft",
        "ik heet Pieter", "we gaan naar huis")),
    "pt": (("pt", "pt-br"), (
        "bom dia", "onde fica a estação", "muito obrigado", "eu queria um café", "hoje está um dia bonito",
        "até amanhã", "quanto custa", "abre a janela por favor", "o meu nome é Pedro", "vamos para casa")),
    "pl": (("pl",), (
        "dzień dobry", "gdzie jest dworzec", "dziękuję bardzo", "poproszę kawę", "dzisiaj jest ładna pogoda",
        "do jutra", "ile to kosztuje", "otwórz okno proszę", "nazywam się Piotr", "idziemy do domu")),
    "sv": (("sv",), (
        "god morgon", "var ligger stationen", "tack så mycket", "jag vill ha en kaffe",
        "det är fint väder idag",
        "vi ses imorgon", "vad kostar det", "öppna fönstret tack", "jag heter Per", "vi går hem")),
}


def lid_text(rng: np.random.Generator, language: str) -> str:
    """A short utterance in ``language``: a phrase, a number (espeak reads digits in that language),
    or a phrase followed by a number."""
    phrases = LID_LANGUAGES[language][1]
    r = rng.uniform()
    number = str(int(rng.choice([rng.integers(0, 100), rng.integers(100, 10000)])))
    if r < 0.45:
        return str(phrases[int(rng.integers(0, len(phrases)))])
    if r < 0.7:
        return number
    return f"{phrases[int(rng.integers(0, len(phrases)))]}, {number}"


# ---- ASR -------------------------------------------------------------------------------------
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_ASR_COMMANDS = ("go left", "go right", "move up", "move down", "stop now", "go forward", "turn left",
                 "turn right", "yes please", "no thanks", "on", "off", "open the door", "close the door")


def asr_text(rng: np.random.Generator) -> str:
    """A lowercase utterance for the ASR corpus: a 3-8 digit string spelled out, or a command
    phrase (FSC phrasings and short commands). The transcript is its upper-case form."""
    r = rng.uniform()
    if r < 0.5:
        return " ".join(DIGITS[int(d)] for d in rng.integers(0, 10, size=int(rng.integers(3, 9))))
    if r < 0.85:
        phrasings = [p for ps in FSC_INTENTS.values() for p in ps]
        return str(phrasings[int(rng.integers(0, len(phrasings)))]).lower()
    return str(_ASR_COMMANDS[int(rng.integers(0, len(_ASR_COMMANDS)))])
