"""Multi-hop chain tasks, generated: follow a line of mentors 2 to 8 steps.

Each task has its own chain of invented people ``p_0 → p_1 → … → p_k`` (``p_i``'s
mentor is ``p_{i+1}``), one document per person whose text begins with
"<p_i>'s mentor was <p_{i+1}>." (the last person's with "... had no mentor."), and
asks who is ``k`` steps up the line from ``p_0``. The oracle searches each name in
turn; the search snippet holds the mentor. Every person appears in exactly one
task, so a split by task is content-disjoint: the ``train`` and ``test`` splits
draw family names from disjoint halves of the list, and no name of one occurs in
the other (tests check it).
"""

from __future__ import annotations

import random

from prefalign.agents.tasks import AgentTask, TaskSet
from prefalign.agents.tools import Document

GIVEN = ("Ilsa", "Brann", "Corvin", "Dessa", "Emrys", "Faelan", "Greta", "Halvor", "Isolde",
         "Jory", "Kestrel", "Lioren", "Maren", "Nilo", "Orla", "Perrin", "Quill", "Rhosyn",
         "Soren", "Tamsin", "Ulric", "Vesna", "Wendel", "Yselle", "Zoran", "Aneira",
         "Bastian", "Caelia", "Dorian", "Elowen")
FAMILY = ("Ashgrove", "Brindlecombe", "Calloway", "Dunmore", "Everleigh", "Fennimore",
          "Galbraith", "Harrowgate", "Ingleby", "Jessamy", "Kettleby", "Lockridge",
          "Marchbank", "Nettlefold", "Oakenshaw", "Pendleton", "Quarrington", "Ravensworth",
          "Stanhope", "Thistlewood", "Underhill", "Vantreight", "Wetherby", "Yarborough",
          "Zennor", "Aldwinckle", "Blackstock", "Coldridge", "Drakeford", "Elmhirst",
          "Farrowdale", "Greystoke", "Hollingbury", "Ivesdale", "Juniperhill", "Kingsmere",
          "Larkhall", "Mossgiel", "Northwick", "Ormesby")
CRAFTS = ("clockmaker", "cartographer", "glassblower", "luthier", "astronomer", "bookbinder",
          "shipwright", "apothecary", "weaver", "stonemason")
TOWNS = ("Vell", "Marrowby", "Quenport", "Ostrava Minor", "Halden Cross", "Brightwater",
         "Kelsey Fen", "Drummore")
HOPS = tuple(range(2, 9))
ORDINALS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


def _people(split: str, count: int, rng: random.Random) -> list[str]:
    half = len(FAMILY) // 2
    families = FAMILY[:half] if split == "test" else FAMILY[half:]
    names = [f"{g} {f}" for f in families for g in GIVEN]
    if count > len(names):
        raise ValueError(f"the {split} split has {len(names)} names, {count} asked")
    return rng.sample(names, count)


def _document(index: int, person: str, mentor: str | None, rng: random.Random) -> Document:
    first = f"{person}'s mentor was {mentor}." if mentor else f"{person} had no mentor."
    craft = rng.choice(CRAFTS)
    article = "an" if craft[0] in "aeiou" else "a"
    text = (f"{first} {person} worked as {article} {craft} in {rng.choice(TOWNS)} "
            f"from {rng.randint(1780, 1890)}.")
    return Document(f"p-{index:04d}", person, text)


def chain_task_set(split: str = "test", per_hop: int = 5, seed: int = 0,
                   hops: tuple[int, ...] = HOPS) -> TaskSet:
    """``per_hop`` tasks for each hop count in ``hops`` from the ``split`` names."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rng = random.Random(f"chains-{split}-{seed}")
    people = iter(_people(split, sum((k + 1) * per_hop for k in hops), rng))
    tasks, documents = [], {}
    for k in hops:
        for number in range(per_hop):
            chain = [next(people) for _ in range(k + 1)]
            for position, person in enumerate(chain):
                mentor = chain[position + 1] if position < k else None
                doc = _document(len(documents), person, mentor, rng)
                documents[doc.id] = doc
            steps = ORDINALS[k]
            instruction = (f"{chain[0]}'s mentor is one step up {chain[0]}'s line of "
                           f"mentors; that mentor's own mentor is two steps up, and so on. "
                           f"Who is {steps} steps up the line from {chain[0]}?")
            tasks.append(AgentTask(
                id=f"chain-{split}-{k}-{number + 1:02d}", set="chains", category=f"{k}-hop",
                instruction=instruction, tools=("search", "read_document"), scorer="exact",
                expected_tools=("search",) * k,
                oracle=tuple(("search", person) for person in chain[:k]),
                answer=chain[k], level=k))
    return TaskSet("chains" if split == "test" else f"chains-{split}", tasks, documents)
