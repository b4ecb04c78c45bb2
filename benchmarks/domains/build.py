"""Build the cross-domain benchmark sets: benchmarks/domains/<name>/train.jsonl and heldout.jsonl.

    python benchmarks/domains/build.py          # writes every domain (deterministic; the files are checked in)

Five fictional domains (invented names and numbers, so no base model knows them), each a table of entities x
attributes plus question templates per attribute, in different shapes:

| domain   | facts | system prompt | phrasings per fact in train | answers        | turns | held-out per fact |
|----------|-------|---------------|-----------------------------|----------------|-------|-------------------|
| bank     | 40    | yes           | 3                           | one sentence   | 1     | 3                 |
| transit  | 30    | no            | 2                           | two sentences  | 1     | 5                 |
| software | 40    | yes           | 1 or 4 (by attribute)       | one sentence   | 1     | 3                 |
| game     | 32    | yes           | 2 (one as a follow-up)      | one sentence   | 2     | 2                 |
| clinic   | 36    | no            | 3 or 2 (by attribute)       | 2-3 sentences  | 1     | 3                 |

train.jsonl     {"messages": [...], "id": "ENTITY.ATTRIBUTE-tN"}     (OpenAI chat; `annotune train` reads it)
heldout.jsonl   {"id": ..., "fact": ..., "messages": [..., user, reference], "keys": [KEY]}   (`annotune evaluate`)

A held-out question rewords a training question (its own template) but names the same entity; in the game domain
half of them are follow-ups ("how far can it move?") after an earlier exchange about the same piece. The key is
the fact's value: it appears in the reference answer, in no other fact's answer and in no question.

clinic (a veterinary chain: 6 branches x 4 attributes and 12 services x a price; answers of two or three sentences
with the key past the first sentence) was added on 2026-12-06, after the defaults were chosen, as a check on a
shape none of the other four had; it took no part in choosing them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Attribute:
    train: list[str]  # question templates ({e}: the entity); their number is the phrasings per fact
    heldout: list[str]  # other wordings of the same question, never used in training
    answer: str  # {e}, {v} (the key) and any per-entity extra field
    follow_up: list[str] = field(default_factory=list)  # the question without the entity (multi-turn domains)
    heldout_follow_ups: list[str] = field(default_factory=list)  # held-out follow-ups, one per held-out wording


@dataclass
class Domain:
    name: str
    system: str | None
    attributes: dict[str, Attribute]
    rows: dict[str, dict[str, str]]  # entity -> attribute -> value (the key), plus extra answer fields
    multi_turn: bool = False


def _row(**values: str) -> dict[str, str]:
    return values


BANK = Domain("bank", "You are the customer assistant of Quellmoor Mutual, a savings bank.", {
    "fee": Attribute(
        ["What is the monthly fee for the {e}?", "How much does the {e} cost per month?",
         "Is there a monthly charge on the {e}, and how much is it?"],
        ["What will I pay each month to keep a {e}?", "How much is the {e}'s monthly account charge?",
         "What does the {e} charge me every month?"],
        "The {e} costs {v} per month."),
    "rate": Attribute(
        ["What interest rate does the {e} have?", "What's the interest rate on the {e}?",
         "How much interest comes with the {e}?"],
        ["At what percentage is interest set for the {e}?", "What rate of interest applies to the {e}?",
         "How high is the interest on the {e}?"],
        "The {e} has an interest rate of {v}."),
    "minimum": Attribute(
        ["What is the minimum deposit to open a {e}?", "How much money do I need to open the {e}?",
         "What's the smallest opening deposit for the {e}?"],
        ["To get a {e} started, what is the least I have to pay in?", "What's the lowest amount I can open a {e} with?",
         "How much do I have to deposit at first to get a {e}?"],
        "You need at least {v} to open the {e}."),
    "limit": Attribute(
        ["What is the daily withdrawal limit on the {e}?", "How much cash can I take out per day with the {e}?",
         "What's the most I can withdraw in one day from the {e}?"],
        ["Is there a cap on daily cash withdrawals with the {e}, and what is it?",
         "What's the maximum cash I can withdraw daily from a {e}?",
         "Up to what amount can I take out of the {e} each day?"],
        "The {e} lets you withdraw up to {v} a day."),
    "opening": Attribute(
        ["How long does it take to open a {e}?", "How many days until a new {e} is ready?",
         "When will my {e} be open after I apply?"],
        ["After I apply for the {e}, how long is the wait?", "How quickly will a new {e} be set up?",
         "How many days does opening a {e} take?"],
        "A new {e} is ready in {v}."),
}, {
    "Harbour Current Account": _row(fee="£2.85", rate="0.35%", minimum="£40", limit="£620", opening="2 working days"),
    "Lantern Saver": _row(fee="£0.90", rate="3.17%", minimum="£115", limit="£260", opening="3 working days"),
    "Fennick Junior Account": _row(fee="£0.25", rate="2.64%", minimum="£7", limit="£45", opening="4 working days"),
    "Tidewell Fixed Bond": _row(fee="£1.35", rate="4.41%", minimum="£2,750", limit="£180", opening="5 working days"),
    "Pennock Credit Card": _row(fee="£3.95", rate="19.8%", minimum="£60", limit="£340", opening="6 working days"),
    "Marrow Home Loan": _row(fee="£6.40", rate="5.23%", minimum="£18,500", limit="£95", opening="8 working days"),
    "Bellwether Business Account": _row(fee="£11.20", rate="1.08%", minimum="£475", limit="£1,900",
                                        opening="7 working days"),
    "Cinder Travel Wallet": _row(fee="£1.70", rate="0.72%", minimum="£25", limit="£830", opening="1 working day"),
})

TRANSIT = Domain("transit", None, {
    "first": Attribute(
        ["When does the first {e} train leave in the morning?", "What time is the earliest {e} service?"],
        ["How early can I catch a {e} train?", "I have to travel at dawn: when does the {e} start running?",
         "At what time does {e} service begin each day?", "When does the opening train on the {e} depart?",
         "What's the earliest departure I can take on the {e}?"],
        "The first {e} train leaves {start} at {v} on weekdays. At weekends the first departure is one hour later."),
    "peak": Attribute(
        ["How often do {e} trains run at rush hour?", "What is the peak frequency on the {e}?"],
        ["During the busy morning hours, how long is the gap between {e} trains?",
         "If I miss a {e} train at peak time, how long until the next one?",
         "How frequent are {e} trains at the busiest times?", "How many minutes apart are {e} trains during the peak?",
         "When commuters are travelling, how long do I wait for a {e} train?"],
        "At peak times a {e} train comes {v}. Outside the peaks the gap is longer, so check the timetable."),
    "end": Attribute(
        ["Where does the {e} end?", "What is the last stop of the {e}?"],
        ["Which station is at the far end of the {e}?", "If I stay on the {e} to the end, where do I arrive?",
         "What is the final station on the {e}?", "Where is the terminus of the {e}?",
         "Which stop does the {e} finish at?"],
        "The {e} runs from {start} to {v}. The whole journey takes about {minutes} minutes."),
}, {
    "Bramble Line": _row(start="Colbrook Yard", first="5:12 a.m.", peak="every 4 minutes", end="Pellinor Quay",
                         minutes="38"),
    "Saltmarsh Line": _row(start="Dunmere Cross", first="5:26 a.m.", peak="every 6 minutes", end="Grisholt Sands",
                           minutes="51"),
    "Quarry Line": _row(start="Hobb's Gate", first="5:38 a.m.", peak="every 7 minutes", end="Ostley Pits",
                        minutes="27"),
    "Heronfield Line": _row(start="Marrick Square", first="5:44 a.m.", peak="every 8 minutes", end="Vantage Fold",
                            minutes="44"),
    "Tollgate Line": _row(start="Brennock Central", first="5:51 a.m.", peak="every 9 minutes", end="Sedgemoor Halt",
                          minutes="33"),
    "Wicken Line": _row(start="Larkspur Row", first="6:03 a.m.", peak="every 11 minutes", end="Thistlecombe",
                        minutes="62"),
    "Cobble Line": _row(start="Ingram Arches", first="6:09 a.m.", peak="every 13 minutes", end="Fallowmere Docks",
                        minutes="29"),
    "Mirefen Line": _row(start="Quillon Street", first="6:17 a.m.", peak="every 14 minutes", end="Rookhaven",
                         minutes="47"),
    "Hazelgrove Line": _row(start="Elsdon Park", first="6:22 a.m.", peak="every 16 minutes", end="Carrow Heights",
                            minutes="36"),
    "Nettlebridge Line": _row(start="Upper Wyvern", first="6:35 a.m.", peak="every 17 minutes",
                              end="Stoneybeck Mill", minutes="55"),
})

SOFTWARE = Domain("software", "You answer questions about Kestrune, a self-hosted file-sync server.", {
    "file_size": Attribute(
        ["What is the largest file I can upload on the Kestrune {e} plan?",
         "How big can a single file be on Kestrune {e}?",
         "What's the maximum file size for the {e} plan?",
         "Is there a per-file size limit on Kestrune {e}, and what is it?"],
        ["If I'm on {e}, what's the upper size bound for one uploaded file?",
         "What's the biggest single file Kestrune {e} accepts?", "How large may one upload be on the {e} plan?"],
        "On the {e} plan a single file can be up to {v}."),
    "devices": Attribute(
        ["How many devices can I connect on the Kestrune {e} plan?",
         "What is the device limit for Kestrune {e}?",
         "How many computers and phones can sync with one {e} account?",
         "What's the maximum number of linked devices on {e}?"],
        ["Up to how many devices may one Kestrune {e} account link?",
         "On the {e} plan, how many devices can sync at most?",
         "What's the cap on connected devices with Kestrune {e}?"],
        "The {e} plan links at most {v} per account."),
    "history": Attribute(
        ["How long does Kestrune {e} keep old file versions?"],
        ["For how many days can I restore earlier versions of a file on the {e} plan?",
         "How far back can I recover old versions of a file with Kestrune {e}?",
         "How long are previous file versions kept on the {e} plan?"],
        "Kestrune {e} keeps old file versions for {v}."),
    "storage": Attribute(
        ["How much storage comes with the Kestrune {e} plan?"],
        ["What storage quota does a Kestrune {e} account get?", "How much space do I get on the Kestrune {e} plan?",
         "What's the storage allowance of a {e} account?"],
        "The {e} plan includes {v} of storage."),
    "default": Attribute(
        ["What is the default value of the Kestrune setting {e}?"],
        ["If I never change {e} in Kestrune's config, what value does it have?",
         "What does {e} default to in Kestrune?",
         "What is {e} set to in a fresh Kestrune install?"],
        "Out of the box, {e} is set to {v}."),
    "env": Attribute(
        ["Which environment variable overrides the Kestrune setting {e}?",
         "How do I set {e} through an environment variable?",
         "What's the env var name for {e} in Kestrune?",
         "Can {e} be set from the environment, and under what name?"],
        ["To change {e} without editing the config file, which variable do I export?",
         "Which env variable can I use instead of the config file for {e}?",
         "What environment variable controls {e} in Kestrune?"],
        "Set the environment variable {v} to override {e}."),
}, {
    **{plan: _row(file_size=size, devices=devices, history=history, storage=storage) for plan, size, devices,
       history, storage in [
        ("Sprout", "180 MB", "2 devices", "9 days", "6 GB"),
        ("Hearth", "1.4 GB", "5 devices", "21 days", "85 GB"),
        ("Guild", "7 GB", "16 devices", "47 days", "640 GB"),
        ("Citadel", "23 GB", "40 devices", "118 days", "3.5 TB"),
        ("Archipelago", "88 GB", "250 devices", "400 days", "22 TB")]},
    **{setting: _row(default=default, env=env) for setting, default, env in [
        ("sync_workers", "6 workers", "KSTR_SYNC_WORKERS"),
        ("chunk_size", "3 MiB", "KSTR_CHUNK_BYTES"),
        ("conflict_policy", "keep-both", "KSTR_ON_CONFLICT"),
        ("scan_interval", "90 seconds", "KSTR_RESCAN_SECS"),
        ("trash_retention", "14 days", "KSTR_TRASH_DAYS"),
        ("max_upload_rate", "unlimited", "KSTR_UPLOAD_CAP"),
        ("tls_mode", "strict-pinned", "KSTR_TLS_POLICY"),
        ("journal_path", "/var/lib/kestrune/journal", "KSTR_JOURNAL_DIR"),
        ("share_link_expiry", "30 days", "KSTR_LINK_TTL"),
        ("dedup_mode", "block-level", "KSTR_DEDUP")]},
})

GAME = Domain("game", "You are the rules helper for the board game Gloamspire.", {
    "move": Attribute(
        ["How many squares can the {e} move in Gloamspire?", "How far does the {e} move each turn?"],
        ["What is the {e}'s movement range in one turn?", "How many squares is the {e} allowed to cover in a turn?"],
        "The {e} moves up to {v} per turn.",
        ["And how far can it move?", "How many squares does it get each turn?"],
        ["What's its movement like, how many squares?", "How far can it go in a turn?"]),
    "cost": Attribute(
        ["How many embers does it cost to recruit the {e}?", "What is the recruiting cost of the {e}?"],
        ["How much do I have to spend to bring the {e} into play?", "How many embers must I pay for the {e}?"],
        "Recruiting the {e} costs {v}.",
        ["What does it cost to recruit?", "And how many embers is it?"],
        ["How much would I pay to get one onto the board?", "What would it cost me to bring it in?"]),
    "ability": Attribute(
        ["What is the {e}'s special ability?", "What power does the {e} have?"],
        ["Does the {e} have a unique trick, and what is it?", "What can the {e} do that other pieces can't?"],
        "The {e} can {v}.",
        ["What can it do?", "Does it have a special power?"],
        ["Any special move I should know about for it?", "Is there anything unusual it can do?"]),
    "home": Attribute(
        ["Where does the {e} start the game?", "Which tile does the {e} begin on?"],
        ["At setup, where do I place the {e}?", "On which tile is the {e} placed when the game begins?"],
        "The {e} starts the game on {v}.",
        ["Where does it start?", "And which tile does it begin on?"],
        ["When setting up, where does it go?", "Where do I put it at the start?"]),
}, {
    "Lantern Warden": _row(move="2 squares", cost="5 embers", ability="blind an enemy for one round",
                           home="the Salt Gate"),
    "Moss Courier": _row(move="6 squares", cost="3 embers", ability="carry a relic without slowing down",
                         home="the Fern Stair"),
    "Ashen Herald": _row(move="4 squares", cost="8 embers", ability="call a second turn once per game",
                         home="the Ember Throne"),
    "Tidewright": _row(move="3 squares", cost="6 embers", ability="flood one tile until the next dusk",
                       home="the Drowned Arch"),
    "Quillfox": _row(move="7 squares", cost="2 embers", ability="steal one card from a neighbour",
                     home="the Hollow Oak"),
    "Bellmason": _row(move="1 square", cost="9 embers", ability="raise a wall between two tiles",
                      home="the Copper Bell"),
    "Gloam Seer": _row(move="5 squares", cost="7 embers", ability="look at the top three omen cards",
                       home="the Mirror Pool"),
    "Briarwolf": _row(move="8 squares", cost="4 embers", ability="leap over any single piece",
                      home="the Thorn Ring"),
}, multi_turn=True)

CLINIC = Domain("clinic", None, {
    "head": Attribute(
        ["Who is the head vet at Fernhollow {e}?", "Which vet is in charge of the Fernhollow {e} branch?",
         "Who runs the {e} branch of Fernhollow Vets?"],
        ["At the {e} Fernhollow clinic, who leads the team of vets?",
         "Can you tell me the name of the vet who heads Fernhollow {e}?",
         "Who's the chief veterinarian at the Fernhollow branch in {e}?"],
        "Fernhollow {e} has {vets} vets and a nurse-led front desk. Its head vet is Dr {v}, who also takes "
        "referrals from the other branches."),
    "saturday": Attribute(
        ["When does Fernhollow {e} open on Saturdays?",
         "What time does the {e} branch of Fernhollow Vets open on a Saturday?"],
        ["If I bring my pet to Fernhollow {e} on a Saturday morning, from what time are they open?",
         "At what hour do the doors of Fernhollow {e} open on Saturday?",
         "How early on a Saturday can I get into the Fernhollow {e} branch?"],
        "Fernhollow {e} keeps shorter hours at the weekend. On Saturdays it opens at {v} and closes at {close}. "
        "It is shut on Sundays."),
    "address": Attribute(
        ["What is the address of Fernhollow {e}?", "Where is the {e} branch of Fernhollow Vets?"],
        ["Which address should I put in my satnav for Fernhollow {e}?",
         "Where do I go to find the Fernhollow clinic in {e}?",
         "I need to get to Fernhollow {e}: where exactly is it?"],
        "Fernhollow {e} is {area}. Its address is {v}, and there is free parking behind the building."),
    "wait": Attribute(
        ["How long is the usual wait for a walk-in at Fernhollow {e}?",
         "If I turn up without an appointment at the {e} branch of Fernhollow Vets, how long will I wait?"],
        ["Roughly how long do walk-in patients wait to be seen at Fernhollow {e}?",
         "Without booking, how much time should I expect to spend waiting at Fernhollow {e}?",
         "What's the typical waiting time at the Fernhollow {e} branch if I just drop in?"],
        "Fernhollow {e} sees walk-ins in order of arrival, after any emergencies. On a normal weekday the wait is "
        "about {v}. It is worth phoning ahead if you can."),
    "price": Attribute(
        ["How much does the {e} cost at Fernhollow Vets?", "What is the price of Fernhollow's {e}?"],
        ["What will I be charged for a {e} at Fernhollow?",
         "How much should I budget for the {e} at a Fernhollow branch?",
         "What does Fernhollow Vets ask you to pay for the {e}?"],
        "The {e} {covers}. At every Fernhollow branch it costs {v}, paid on the day."),
}, {
    **{branch: _row(head=head, saturday=saturday, close=close, address=address, area=area, wait=wait, vets=vets)
       for branch, head, saturday, close, address, area, wait, vets in [
        ("Larkfield", "Imogen Threlkeld", "8:30 am", "noon", "14 Tanner Row",
         "on the east side of town, next to the old tannery", "20 minutes", "four"),
        ("Ottermead", "Tobias Quenby", "9:15 am", "1 pm", "3 Quince Lane",
         "just off the ring road, opposite the garden centre", "35 minutes", "three"),
        ("Cresswold", "Priya Halloran", "7:45 am", "11:30 am", "88 Harrowgate Road",
         "in the village centre, above the pharmacy", "50 minutes", "two"),
        ("Dunhallow", "Oswin Marchetti", "10:00 am", "2 pm", "27 Pellam Street",
         "on the high street, beside the library", "25 minutes", "five"),
        ("Marlpit", "Delphine Okoro", "8:00 am", "12:30 pm", "Unit 6, Brackwater Retail Park",
         "on the retail park at the north edge of town", "45 minutes", "six"),
        ("Wrenstock", "Rafe Ambleside", "9:45 am", "3 pm", "41 Sorrel Crescent",
         "in a quiet residential street near the station", "40 minutes", "three")]},
    **{service: _row(price=price, covers=covers) for service, price, covers in [
        ("Puppy Starter Check", "£42", "is a first visit for dogs under six months, with a health check and advice"),
        ("Kitten Starter Check", "£39", "is a first visit for cats under six months, with a health check and advice"),
        ("Senior Wellness Screen", "£87", "is a yearly check for older pets, with blood tests and a weigh-in"),
        ("Bright Smile Dental Clean", "£226", "is a scale and polish under anaesthetic, with a day-stay bed"),
        ("Microchip and Register", "£23", "fits a microchip and enters your details on the national database"),
        ("Nail and Paw Tidy", "£14", "trims the claws and the fur between the pads, done by a nurse"),
        ("Travel Papers Check", "£118", "covers the exam and the forms your pet needs to go abroad"),
        ("Rabbit Home Visit", "£61", "brings a vet to your home for a rabbit's check-up and vaccination"),
        ("Weight Clinic Session", "£17", "is a nurse's weigh-in and diet review, booked monthly"),
        ("Ear Clean and Check", "£28", "flushes both ears and checks them for mites and infection"),
        ("Overnight Stay", "£135", "keeps your pet in our ward with a nurse on duty through the night"),
        ("Exotic Pet Consult", "£55", "is a specialist consultation for birds, reptiles and small mammals")]},
})

DOMAINS = (BANK, TRANSIT, SOFTWARE, GAME, CLINIC)


def _answer(domain: Domain, entity: str, attr: str) -> str:
    return domain.attributes[attr].answer.format(e=entity, v=domain.rows[entity][attr], **domain.rows[entity])


def _facts(domain: Domain) -> list[tuple[str, str]]:
    return [(entity, attr) for entity, row in domain.rows.items() for attr in domain.attributes if attr in row]


def _chat(domain: Domain, *turns: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": domain.system}] if domain.system else []
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return messages


def _single_turn(domain: Domain) -> tuple[list[dict], list[dict]]:
    train, heldout = [], []
    for entity, attr in _facts(domain):
        spec, fact = domain.attributes[attr], f"{entity}.{attr}"
        answer, key = _answer(domain, entity, attr), domain.rows[entity][attr]
        for n, template in enumerate(spec.train, start=1):
            train.append({"messages": _chat(domain, template.format(e=entity), answer), "id": f"{fact}-t{n}"})
        for n, template in enumerate(spec.heldout, start=1):
            heldout.append({"id": f"{fact}-h{n}", "fact": fact,
                            "messages": _chat(domain, template.format(e=entity), answer), "keys": [key]})
    return train, heldout


def _multi_turn(domain: Domain) -> tuple[list[dict], list[dict]]:
    """Each training chat asks about one attribute of a piece by name, then another as a follow-up ("it").

    Over its two chats per phrasing, each attribute is asked once by name and once as a follow-up; the template
    used rotates with the piece so that every template is trained on.
    """
    train, heldout = [], []
    attrs = list(domain.attributes)
    for index, entity in enumerate(domain.rows):
        ask = {a: domain.attributes[a] for a in attrs}
        for p in range(2):
            order = attrs if p == 0 else attrs[1:] + attrs[:1]
            for first, second in zip(order[::2], order[1::2]):
                t = (p + index) % 2
                turns = (ask[first].train[t].format(e=entity), _answer(domain, entity, first),
                         ask[second].follow_up[t], _answer(domain, entity, second))
                train.append({"messages": _chat(domain, *turns), "id": f"{entity}.{first}+{second}-t{p + 1}"})
        for n, attr in enumerate(attrs):
            fact, answer, key = f"{entity}.{attr}", _answer(domain, entity, attr), domain.rows[entity][attr]
            for k in range(len(ask[attr].heldout)):  # by name and as a follow-up in turn, wording k of each
                if (n + index + k) % 2 == 0:  # asked by name, in a new wording
                    messages = _chat(domain, ask[attr].heldout[k].format(e=entity), answer)
                else:  # a follow-up after an exchange about the previous attribute
                    before = attrs[n - 1]
                    messages = _chat(domain, ask[before].train[0].format(e=entity), _answer(domain, entity, before),
                                     ask[attr].heldout_follow_ups[k], answer)
                heldout.append({"id": f"{fact}-h{k + 1}", "fact": fact, "messages": messages, "keys": [key]})
    return train, heldout


def build(domain: Domain) -> tuple[list[dict], list[dict]]:
    _check(domain)
    return _multi_turn(domain) if domain.multi_turn else _single_turn(domain)


def _check(domain: Domain) -> None:
    """A key that another answer or a question contains would score a wrong answer as right, or give it away; a
    multi-turn domain needs one held-out follow-up per held-out wording."""
    for name, spec in domain.attributes.items():
        if domain.multi_turn and len(spec.heldout_follow_ups) != len(spec.heldout):
            sys.exit(f"{domain.name}: {name}: {len(spec.heldout)} held-out wordings but {len(spec.heldout_follow_ups)} "
                     "held-out follow-ups; give one follow-up per wording")
    facts = _facts(domain)
    answers = {fact: _answer(domain, *fact) for fact in facts}
    questions = [t.format(e=e) for e, a in facts for t in domain.attributes[a].train + domain.attributes[a].heldout
                 + domain.attributes[a].follow_up + domain.attributes[a].heldout_follow_ups]
    for (entity, attr), answer in answers.items():
        key = domain.rows[entity][attr].casefold()
        others = [f for f, text in answers.items() if f != (entity, attr) and key in text.casefold()]
        if key not in answer.casefold() or others or any(key in q.casefold() for q in questions):
            sys.exit(f"{domain.name}: {entity}.{attr}: key {key!r} is missing from its answer, or appears in "
                     f"another answer ({others}) or in a question")


def write(domain: Domain, root: Path = HERE) -> tuple[int, int]:
    from annotune.dataset.files import write_atomically

    train, heldout = build(domain)
    folder = root / domain.name
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        write_atomically(folder / name, (json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return len(train), len(heldout)


if __name__ == "__main__":
    for domain in DOMAINS:
        n_train, n_heldout = write(domain)
        print(f"{domain.name}: {len(_facts(domain))} facts, {n_train} training chats, {n_heldout} held-out questions")
