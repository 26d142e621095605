"""What the slot-filling corpus says: SNIPS-style requests of seven intents with typed slots.

The seven intents and the slot type names are SNIPS' own (Coucke et al. 2018, the text Audio SNIPS
synthesized). The phrasings and values are templated here (letters, spaces and apostrophes only, so
espeak-ng reads each word as written and a transcript character is always something heard).

:func:`sf_utterance` draws one request: its intent, its words and one tag per word (``O`` outside slots,
else the slot type), the form of Audio SNIPS' ``all.iob.snips.txt``.
"""

from __future__ import annotations

import re

import numpy as np

# Per intent: the phrasings (``{slot_type}`` placeholders) and the values of the slots they use. A slot type
# that two intents share (``object_type``, ``timeRange``, ``city``...) may take intent-specific values.
SF_INTENTS: dict[str, dict[str, object]] = {
    "AddToPlaylist": {
        "templates": (
            "add {artist} to {playlist_owner} {playlist} playlist",
            "put this {music_item} on {playlist_owner} {playlist} playlist",
            "add the {music_item} by {artist} to {playlist}",
            "please add {artist} to {playlist}",
            "i want this {music_item} in {playlist_owner} {playlist} list",
        ),
        "values": {
            "artist": ("madonna", "bob marley", "nina simone", "the beatles", "miles davis", "adele",
                       "elton john", "norah jones"),
            "playlist_owner": ("my", "our"),
            "playlist": ("chill mix", "road trip", "morning coffee", "rainy day", "workout", "dinner jazz",
                         "summer hits", "sleep sounds"),
            "music_item": ("song", "track", "album", "tune"),
        },
    },
    "PlayMusic": {
        "templates": (
            "play {artist}",
            "play some {genre} music",
            "play the {music_item} {track} by {artist}",
            "play {genre} from {year}",
            "play {playlist} on {service}",
            "i want to hear {artist} on {service}",
        ),
        "values": {
            "artist": ("frank sinatra", "johnny cash", "aretha franklin", "david bowie", "billie holiday",
                       "stevie wonder", "dolly parton"),
            "genre": ("jazz", "blues", "rock", "folk", "reggae", "classical", "country", "soul"),
            "music_item": ("song", "track", "tune"),
            "track": ("blue moon", "river song", "golden hour", "silver lining", "high hopes"),
            "year": ("the sixties", "the eighties", "nineteen ninety", "two thousand ten"),
            "playlist": ("party time", "focus flow", "evening calm", "top hits"),
            "service": ("spotify", "youtube", "deezer", "pandora", "itunes"),
        },
    },
    "GetWeather": {
        "templates": (
            "what is the weather in {city}",
            "will it be {condition_description} in {city} {timeRange}",
            "is it going to be {condition_temperature} in {state} {timeRange}",
            "weather forecast for {city} {timeRange}",
            "tell me the weather in {state}",
        ),
        "values": {
            "city": ("paris", "boston", "london", "tokyo", "denver", "madrid", "seattle", "chicago",
                     "berlin", "dublin"),
            "state": ("texas", "ohio", "oregon", "alaska", "florida", "nevada", "maine"),
            "timeRange": ("tomorrow", "today", "tonight", "next week", "this weekend", "on monday",
                          "at noon"),
            "condition_description": ("rainy", "snowy", "sunny", "cloudy", "windy", "foggy"),
            "condition_temperature": ("warm", "cold", "hot", "chilly", "freezing"),
        },
    },
    "BookRestaurant": {
        "templates": (
            "book a table for {party_size_number} at {restaurant_name}",
            "book a {restaurant_type} in {city} for {party_size_number} {timeRange}",
            "reserve a table at a {cuisine} {restaurant_type} {timeRange}",
            "i need a table for {party_size_number} at a {cuisine} {restaurant_type}",
        ),
        "values": {
            "party_size_number": ("two", "three", "four", "five", "six", "eight", "ten"),
            "restaurant_name": ("the golden spoon", "blue lagoon", "chez marie", "the red lion",
                                "green garden", "the olive tree"),
            "restaurant_type": ("restaurant", "bar", "pub", "diner", "bistro"),
            "cuisine": ("italian", "french", "thai", "mexican", "indian", "greek", "japanese"),
            "city": ("rome", "austin", "vienna", "lisbon", "oslo", "miami"),
            "timeRange": ("tonight", "tomorrow evening", "at seven", "on friday", "for lunch"),
        },
    },
    "RateBook": {
        "templates": (
            "rate {object_select} {object_type} {rating_value} out of {best_rating}",
            "give {object_name} {rating_value} {rating_unit}",
            "rate {object_name} {rating_value} out of {best_rating} {rating_unit}",
            "i give {object_select} {object_type} {rating_value} {rating_unit}",
        ),
        "values": {
            "object_select": ("this", "the current", "the next"),
            "object_type": ("book", "novel", "essay", "textbook"),
            "rating_value": ("one", "two", "three", "four", "five", "zero"),
            "best_rating": ("five", "six", "ten"),
            "rating_unit": ("stars", "points"),
            "object_name": ("the silent river", "winter tales", "the last kingdom", "dark harbor",
                            "the glass garden", "ocean of stars"),
        },
    },
    "SearchCreativeWork": {
        "templates": (
            "find the {object_type} {object_name}",
            "show me the {object_type} called {object_name}",
            "i want to watch {object_name}",
            "search for {object_name}",
        ),
        "values": {
            "object_type": ("tv show", "movie", "game", "song", "painting", "album"),
            "object_name": ("the long winter", "night train", "paper moon", "the lost island",
                            "hidden valley", "a quiet place", "the big sleep"),
        },
    },
    "SearchScreeningEvent": {
        "templates": (
            "find the {object_type} for {movie_name}",
            "is {movie_name} playing at {location_name} {timeRange}",
            "which {movie_type} are showing {spatial_relation}",
            "show me {movie_type} at {location_name}",
        ),
        "values": {
            "object_type": ("schedule", "movie schedule", "showtimes"),
            "movie_name": ("the long road", "midnight sun", "iron valley", "the blue door", "star catcher"),
            "location_name": ("cinema city", "star theatres", "the grand cinema", "regal plaza"),
            "timeRange": ("tonight", "this afternoon", "tomorrow", "on sunday"),
            "movie_type": ("animated movies", "films", "movies", "new movies"),
            "spatial_relation": ("nearby", "close by", "in the area", "downtown"),
        },
    },
}

_SLOT_RE = re.compile(r"\{(\w+)\}")


def slot_types() -> list[str]:
    """Every slot type any template uses, sorted."""
    return sorted({m for spec in SF_INTENTS.values() for t in spec["templates"]  # type: ignore[union-attr]
                   for m in _SLOT_RE.findall(t)})


def sf_utterance(rng: np.random.Generator) -> tuple[str, list[str], list[str]]:
    """One request: ``(intent, words, tags)``, words lower case, one tag per word (``O`` or a slot type)."""
    intents = list(SF_INTENTS)
    intent = intents[int(rng.integers(0, len(intents)))]
    spec = SF_INTENTS[intent]
    templates: tuple[str, ...] = spec["templates"]  # type: ignore[assignment]
    values: dict[str, tuple[str, ...]] = spec["values"]  # type: ignore[assignment]
    template = templates[int(rng.integers(0, len(templates)))]
    words: list[str] = []
    tags: list[str] = []
    for token in template.split():
        m = _SLOT_RE.fullmatch(token)
        if m is None:
            words.append(token)
            tags.append("O")
            continue
        slot = m.group(1)
        choices = values[slot]
        for w in str(choices[int(rng.integers(0, len(choices)))]).split():
            words.append(w)
            tags.append(slot)
    return intent, words, tags


def _check_tables() -> None:
    """Every placeholder has values (a typo in the tables fails at import, not mid-synthesis)."""
    for intent, spec in SF_INTENTS.items():
        values: dict[str, tuple[str, ...]] = spec["values"]  # type: ignore[assignment]
        for t in spec["templates"]:  # type: ignore[union-attr]
            for slot in _SLOT_RE.findall(t):
                if slot not in values:
                    raise AssertionError(f"SF_INTENTS[{intent!r}]: {t!r} uses {slot!r} without values")
        for slot, vals in values.items():
            for v in vals:
                if not re.fullmatch(r"[a-z' ]+", v):
                    raise AssertionError(f"SF_INTENTS[{intent!r}][{slot!r}]: {v!r} is not plain letters")


_check_tables()
