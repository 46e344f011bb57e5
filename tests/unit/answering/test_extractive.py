"""The extractive answer: the sentences that match the question, cited."""

from app.answering.extractive import extract, sentences
from tests.fixtures.chunks import hit


def test_extractive_picks_matching_sentences() -> None:
    hits = [
        hit("The lamp was converted in 1931. The keeper climbs 146 steps every evening."),
        hit("The fog horn is tested on Tuesdays.", "b.pdf", 2),
    ]
    answer, cited = extract("how many steps does the keeper climb", hits)
    assert answer == "The keeper climbs 146 steps every evening. [1]" and cited == [1]
    answer, cited = extract("when is the fog horn tested", hits)
    assert answer.startswith("The fog horn is tested on Tuesdays. [2]") and cited[0] == 2
    assert extract("anything", []) == ("No passage in the documents matches the question.", [])
    assert sentences("One. Two? Three!\nFour") == ["One.", "Two?", "Three!", "Four"]
