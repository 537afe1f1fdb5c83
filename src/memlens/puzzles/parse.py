"""Answer parsing: tolerant about the format, never guessing between two answers.

A response is read in this order (text after the last ``</think>`` only, if there is one):

1. **Assignment**: the last ``moves = [...]`` in the text (the format the prompts ask for, as in
   Shojaee et al. 2025). Parsed with :func:`ast.literal_eval` (never executed); bare names such
   as ``[A_1, a_1]`` are quoted first. A list that is opened but never closed is *truncated*:
   its complete moves are kept and the answer is flagged.
2. **JSON list**: otherwise, the last list of lists in the text whose every element has the
   shape of a move for the puzzle (so a printed peg state like ``[[3, 2, 1], [], []]`` is not
   mistaken for an answer).
3. **One move per line**: otherwise, lines that the puzzle reads as a move (``[1, 0, 2]``,
   ``1 0 2``, ``Move disk 1 from peg 0 to peg 2``, ``A_1, a_1``, ...), optionally numbered. They
   must form one block (blank lines and code fences allowed inside); two separate blocks are
   ambiguous and parse to nothing, with the reason.

An ellipsis (``...``) inside a move list marks moves the response chose not to write out.
Independently of the moves, the parser notes whether the response claims the puzzle has no
solution and whether it states an intent not to enumerate the moves (Opus and Lawsen 2025,
arXiv:2506.09250: "The pattern continues, but to avoid making this too long, I'll stop here").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from memlens.puzzles.base import IllegalMove, Puzzle, literal

_ASSIGN = re.compile(r"\bmoves\s*=\s*\[")
_LIST_OF_LISTS = re.compile(r"\[\s*[\[(]")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_BARE = re.compile(r"(?<![\w'\"])([A-Za-z_][A-Za-z_0-9]*)(?![\w'\"])")

UNSOLVABLE = re.compile(
    r"\b(?:(?:has|have|there is|there are|with) no (?:valid |possible |legal )?solutions?|"
    r"no (?:valid |possible |legal )?solution exists|unsolvable|not solvable|insoluble|"
    r"(?:cannot|can ?not|can't) be (?:solved|done|completed)|impossible to (?:solve|complete)|"
    r"(?:puzzle|problem|instance|task|this) is impossible|it is impossible(?=\s*[.!;]))",
    re.I,
)
REFUSAL = re.compile(
    r"(?:too (?:long|many moves|lengthy)|I'll stop here|I will stop here|stop here|"
    r"(?:pattern|process|sequence) continues|for brevity|(?:won't|will not|not going to|"
    r"(?:cannot|can't|unable to)) (?:list|enumerate|write (?:out|down)|write all|print)|"
    r"(?:rest|remaining moves) (?:are |is )?omitted|and so on|exceed(?:s|ing)? (?:the )?"
    r"(?:output|token|length) limit)",
    re.I,
)


@dataclass
class Parsed:
    """What a response says.

    Attributes
    ----------
    moves:
        The raw move objects in order (lists, tuples or strings), ``None`` if no answer list.
    fmt:
        ``"assignment"``, ``"json"``, ``"lines"`` or ``"none"``.
    truncated:
        A move list was opened and never closed.
    elided:
        0-based index of the first ``...`` placeholder in the list, if any.
    error:
        Why the response could not be parsed unambiguously (``None`` when fine).
    claims_unsolvable, refuses:
        The response says there is no solution / says it will not list the moves.
    """

    moves: list[Any] | None
    fmt: str
    truncated: bool = False
    elided: int | None = None
    error: str | None = None
    claims_unsolvable: bool = False
    refuses: bool = False


def final_text(text: str) -> str:
    """The part of a response after the last ``</think>`` (the whole text if there is none)."""
    i = text.rfind("</think>")
    return text[i + len("</think>") :] if i >= 0 else text


def scan_list(text: str, start: int) -> tuple[int | None, list[tuple[int, int]]]:
    """Scan the list opening at ``text[start] == '['``, honouring quotes.

    Returns the index just past its closing bracket (``None`` if it never closes) and the spans
    of its complete top-level elements (an element is complete once a comma or the closing
    bracket follows it).
    """
    depth, quote, escaped = 0, "", False
    elements: list[tuple[int, int]] = []
    elem_start = start + 1
    for i in range(start, len(text)):
        c = text[i]
        if quote:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == quote:
                quote = ""
            continue
        if c in "'\"":
            quote = c
        elif c in "[(":
            depth += 1
        elif c in "])":
            depth -= 1
            if depth == 0:
                if text[elem_start:i].strip():
                    elements.append((elem_start, i))
                return i + 1, elements
        elif c == "," and depth == 1:
            elements.append((elem_start, i))
            elem_start = i + 1
    return None, elements


def relaxed_literal(text: str) -> Any | None:
    """``literal_eval``, retrying with bare names quoted (``[A_1, a_1]`` -> ``['A_1', 'a_1']``)."""
    value = literal(text)
    if value is None and text.strip() not in ("None", ""):
        quoted = _BARE.sub(
            lambda m: m.group(1) if m.group(1) in ("True", "False", "None") else repr(m.group(1)),
            text,
        )
        value = literal(quoted)
    return value


def _elements(text: str, spans: list[tuple[int, int]]) -> list[Any] | None:
    out = []
    for a, b in spans:
        chunk = text[a:b].strip()
        if chunk == "...":
            out.append(Ellipsis)
            continue
        value = relaxed_literal(chunk)
        if value is None:
            return None
        out.append(value)
    return out


def _shape_ok(puzzle: Puzzle, item: Any) -> bool:
    if item is Ellipsis:
        return True
    if not isinstance(item, list | tuple) or not item:
        return False
    try:
        puzzle.coerce_move(list(item))
    except IllegalMove:
        return False
    return True


def _finish(moves: list[Any], fmt: str, truncated: bool = False) -> Parsed:
    elided = next((i for i, m in enumerate(moves) if m is Ellipsis), None)
    return Parsed(moves, fmt, truncated=truncated, elided=elided)


def _from_list(puzzle: Puzzle, text: str, start: int, fmt: str) -> Parsed | None:
    end, spans = scan_list(text, start)
    if end is not None:
        value = relaxed_literal(text[start:end])
        if isinstance(value, list | tuple):
            return _finish(list(value), fmt)
        moves = _elements(text, spans)  # e.g. a bare '...' that literal_eval rejects in context
        if moves is None:
            return Parsed(
                None, fmt, error=f"the move list at character {start} is not a valid list"
            )
        return _finish(moves, fmt)
    moves = _elements(text, spans)
    if moves is None:
        return Parsed(None, fmt, truncated=True, error="the move list is cut off and unreadable")
    return _finish(moves, fmt, truncated=True)


def parse_moves(puzzle: Puzzle, text: str) -> Parsed:
    """Find the move list in a response (see the module docstring for the rules)."""
    body = final_text(text)
    parsed = _parse(puzzle, body)
    parsed.claims_unsolvable = bool(UNSOLVABLE.search(body))
    parsed.refuses = bool(REFUSAL.search(body))
    return parsed


def _parse(puzzle: Puzzle, body: str) -> Parsed:
    assigns = list(_ASSIGN.finditer(body))
    if assigns:
        m = assigns[-1]
        return _from_list(puzzle, body, m.end() - 1, "assignment")  # type: ignore[return-value]

    candidates = []
    pos = 0
    while True:
        m = _LIST_OF_LISTS.search(body, pos)
        if m is None:
            break
        end, _ = scan_list(body, m.start())
        candidates.append((m.start(), end))
        pos = end if end is not None else len(body)
    for start, _end in reversed(candidates):
        got = _from_list(puzzle, body, start, "json")
        if got is None or got.moves is None:
            continue
        if got.moves and all(_shape_ok(puzzle, x) for x in got.moves):
            return got

    runs: list[list[Any]] = []
    current: list[Any] | None = None
    for line in body.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("```"):
            continue
        move = puzzle.parse_line(stripped)
        if move is not None:
            if current is None:
                current = []
                runs.append(current)
            current.append(move)
        else:
            current = None
    if len(runs) == 1:
        return _finish(runs[0], "lines")
    if len(runs) > 1:
        return Parsed(
            None,
            "lines",
            error=f"found {len(runs)} separate blocks of moves; mark the answer with moves = [...]",
        )
    return Parsed(None, "none")


def extract_program(text: str) -> tuple[str, str] | None:
    """The program in a response: ``(language, source)`` of the last fenced ``python`` (or
    ``lua``) block, or of the only untagged block; ``None`` when there is no code block."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(final_text(text))]
    lang_of = {"python": "python", "py": "python", "python3": "python", "lua": "lua"}
    tagged = [(lang_of[t], code) for t, code in blocks if t in lang_of]
    if tagged:
        return tagged[-1]
    untagged = [code for t, code in blocks if t == ""]
    if len(untagged) == 1:
        return ("python", untagged[0])
    return None


def strip_code(text: str) -> str:
    """``text`` with every fenced code block removed."""
    return _FENCE.sub("", text)
