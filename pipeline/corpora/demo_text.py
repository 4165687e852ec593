"""The demo's transcripts: a sentence whose wording carries the emotion only part of the time (the plan's text
mode: cue, filler, misleading or empty)."""

from __future__ import annotations

import numpy as np

from pipeline.corpora.demo_plan import Plan

LEXICON: dict[str, list[str]] = {
    "ang": ["this is absolutely outrageous", "I am so angry with you right now", "stop lying to me",
            "I can't stand this any longer", "you never listen to a word I say", "get out of my way",
            "how dare you do that to me", "that is completely unacceptable", "I'm sick and tired of this",
            "don't you dare raise your voice at me", "this makes me furious", "you ruined everything"],
    "hap": ["that's wonderful news", "I'm so happy for you", "this is the best day ever", "I love it so much",
            "we did it, this is amazing", "what a lovely surprise", "I can't stop smiling",
            "that's fantastic, congratulations", "I'm thrilled to hear that", "this is great, thank you",
            "you made my day", "everything worked out perfectly"],
    "neu": ["okay, that sounds fine", "sure, we can do that", "I see what you mean", "alright, noted",
            "that works for me", "fine, let's go with that", "I understand", "yes, that's right",
            "no problem at all", "let me check and get back to you", "that seems reasonable", "got it"],
    "sad": ["I miss her so much", "I feel so alone these days", "it's all hopeless now", "I lost everything",
            "nothing ever goes right for me", "I don't think I can go on like this", "I'm so sorry it ended",
            "it hurts to even think about it", "I wish things were different", "I can't stop crying",
            "nobody cares anymore", "I really let everyone down"],
}
# Another culture's wording of the same emotions (demo_b: `lexicon: alternate`): other words carry the cues.
ALTERNATE_LEXICON: dict[str, list[str]] = {
    "ang": ["enough of this nonsense", "I have had it with you", "leave me alone this instant",
            "you are impossible", "that was a rotten thing to do", "stop it right now",
            "I will not put up with this", "what a disgrace", "you keep wrecking things", "shut the door on it"],
    "hap": ["brilliant, simply brilliant", "we are over the moon", "such a joy to see you", "hooray, it worked",
            "what a delight", "I could dance all night", "lovely, just lovely", "cheers to that",
            "that cheered me right up", "a perfect afternoon"],
    "neu": ["right, carry on", "very well then", "as you wish", "noted, thanks", "fair enough", "of course",
            "that will do", "understood", "certainly", "we shall see"],
    "sad": ["my heart is heavy", "all of it is gone", "there is no point anymore", "I keep thinking of him",
            "such a grey and empty week", "I am worn out and lonely", "it never gets better", "tears again tonight",
            "I failed them all", "nobody came"],
}
LEXICONS = {"default": LEXICON, "alternate": ALTERNATE_LEXICON}
FILLERS = ["the meeting is at three tomorrow", "I put the keys on the kitchen table", "we need to buy milk and bread",
           "the train leaves from platform four", "my sister called this morning", "it rained all weekend",
           "the report is due on friday", "he moved to another city last year", "the car is parked outside",
           "she works at the library downtown", "we talked about the new schedule", "the package arrived today",
           "I read that article yesterday", "they are painting the house next week", "the office closes at six",
           "I had coffee with my brother", "the store was busy this afternoon", "we watched a movie last night"]
OPENERS = ["", "", "", "well, ", "look, ", "you know, ", "honestly, ", "so ", "oh, ", "listen, "]
PUNCT = {"ang": ["!", "!", "."], "hap": ["!", "!", "."], "neu": [".", "."], "sad": ["...", ".", "."]}


def compose_text(plan: Plan, classes: list[str], lexicon: str = "default") -> str:
    rng = np.random.default_rng([*plan.seed, 3])
    if plan.text_mode == "empty":
        return ""
    if plan.text_mode == "filler":
        body, punct = FILLERS[int(rng.integers(len(FILLERS)))], "."
    else:
        source = plan.emotion
        if plan.text_mode == "misleading":
            others = [c for c in classes if c != plan.emotion]
            source = others[int(rng.integers(len(others)))]
        words = LEXICONS[lexicon][source]
        body = words[int(rng.integers(len(words)))]
        punct = PUNCT[source][int(rng.integers(len(PUNCT[source])))]
        if rng.random() < 0.4:
            body = f"{body}, {FILLERS[int(rng.integers(len(FILLERS)))]}"
    text = OPENERS[int(rng.integers(len(OPENERS)))] + body + punct
    return text[0].upper() + text[1:]
