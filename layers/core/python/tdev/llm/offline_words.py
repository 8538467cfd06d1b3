"""What the offline model reads from a request: its resources, features and their fields (no model).

Shared by the offline model's templates (`tdev.llm.offline`) and its projects (`tdev.llm.offline_projects`).
"""

from __future__ import annotations

import builtins
import keyword
import re

_WORD = re.compile(r"[a-z][a-z]+")


# -------------------------------------------------------------------------------- request analysis
# Words that say how to build, not what: never a resource name.
_NOT_RESOURCE_WORDS = """
    a an the and or but for of to in on with without that this these those by from as at be is are was
    it its into using use via me my our we i you your they their them please can could would should will
    shall may might must need needs want wants let lets some any all each every new simple small basic
    minimal full complete little rest restful api apis http https json graphql grpc endpoint endpoints
    route routes service services app apps application applications system systems backend frontend
    server web website site page pages build builds create creates make makes implement write design
    develop add adds support supports manage managing management handle handling crud item items entry
    entries record records data list lists python fastapi flask django lambda aws serverless
    microservice microservices code test tests testing review reviews security secure feature features
    including include includes also based storage store stores storing database databases db dynamodb
    postgres postgresql mysql sql nosql redis auth authentication authorization authorisation
    authenticated login logins logout signup password passwords token tokens jwt oauth role roles
    permission permissions track tracking allow allows show shows view views edit edits delete deletes
    update updates get gets read reads send sends receive upload uploads download downloads share shares
    search searching find filter filters sort sorting pagination paginated paginate like where which who
    what when how than then there here just only very more most other others such same own able per
    about across after before between over under up down out off so if not no yes do does something
    anything everything thing things stuff done did has have had been being one two three real time
    realtime stateless fast quick scalable robust production ready modern clean large
"""
_NOT_RESOURCES = frozenset(_NOT_RESOURCE_WORDS.split())
_BUILTIN_NAMES = frozenset(dir(builtins))
_AFTER_THESE_COMES_THE_RESOURCE = frozenset(
    {
        "for",
        "of",
        "about",
        "manage",
        "managing",
        "track",
        "tracking",
        "store",
        "storing",
        "organize",
        "organise",
    }
)
_AUTH_WORDS = frozenset(
    {"auth", "authentication", "authorization", "authorisation", "login", "logins", "signup", "jwt", "oauth"}
    | {"password", "passwords"}
)
_FEATURES: dict[str, frozenset[str]] = {
    "auth": _AUTH_WORDS | {"token", "tokens", "sign"},
    "search": frozenset({"filter", "filters", "search", "searching", "sort", "sorting"}),
    "files": frozenset(
        {"attachment", "attachments", "file", "files", "image", "images", "upload", "uploads"}
    ),
    "payments": frozenset({"billing", "checkout", "payment", "payments", "stripe"}),
}
# Fields for nouns that come up often; the first field is the required, validated text field.
_KNOWN_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "todo": (("title", "str"), ("done", "bool")),
    "task": (("title", "str"), ("done", "bool")),
    "note": (("title", "str"), ("body", "str")),
    "post": (("title", "str"), ("body", "str")),
    "article": (("title", "str"), ("body", "str")),
    "comment": (("body", "str"),),
    "user": (("email", "str"), ("display_name", "str")),
    "customer": (("email", "str"), ("display_name", "str")),
    "product": (("name", "str"), ("price_cents", "int")),
    "order": (("status", "str"), ("total_cents", "int")),
    "book": (("title", "str"), ("author", "str")),
    "expense": (("description", "str"), ("amount_cents", "int")),
    "event": (("title", "str"), ("starts_at", "str")),
}


def singular(word: str) -> str:
    """Good-enough English singular for resource names (todos → todo, categories → category)."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")) and len(word) > 4:
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def plural(word: str) -> str:
    if word.endswith("y") and len(word) > 2 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


def resources_in(request: str, limit: int = 3) -> list[str]:
    """The nouns the request is about, most likely first; "item" when nothing stands out.

    A noun right after "for", "of", "manage", "track", ... ranks first ("an API for todo items" → todo).
    A noun right before an auth word is a feature, not a resource ("user authentication").
    """
    text = re.sub(r"\bto-dos?\b", "todo", request.lower())
    words = _WORD.findall(text)
    boosted: list[str] = []
    others: list[str] = []
    expect_resource = False
    for index, word in enumerate(words):
        if word in _AFTER_THESE_COMES_THE_RESOURCE:
            expect_resource = True
            continue
        noun = singular(word)
        following = words[index + 1] if index + 1 < len(words) else ""
        usable = (
            len(noun) >= 3
            and word not in _NOT_RESOURCES
            and noun not in _NOT_RESOURCES
            and not keyword.iskeyword(noun)
            and noun not in _BUILTIN_NAMES
            and following not in _AUTH_WORDS
        )
        if not usable:
            continue
        (boosted if expect_resource else others).append(noun)
        expect_resource = False
    ordered: list[str] = []
    for noun in boosted + others:
        if noun not in ordered:
            ordered.append(noun)
    return ordered[:limit] or ["item"]


def features_in(request: str) -> list[str]:
    words = set(_WORD.findall(request.lower()))
    return [name for name, triggers in _FEATURES.items() if words.intersection(triggers)]


def fields_of(resource: str) -> tuple[tuple[str, str], ...]:
    return _KNOWN_FIELDS.get(resource, (("name", "str"),))


def title_of(request: str, width: int = 80) -> str:
    line = " ".join(request.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def docstring_safe(text: str) -> str:
    """User text inside generated docstrings: no quotes or backslashes that could end or break them."""
    return text.replace("\\", "/").replace('"', "'")


def class_name(resource: str) -> str:
    return resource[:1].upper() + resource[1:]
