"""The Cranfield 1400 collection (SMART format) with graded judgments, from the shared data folder."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

# The shared data folder sits beside the checkout (../shared/data); /work/shared is where workplaces mount it.
CANDIDATE_DIRS = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cranfield",
    Path("/work/shared/data/cranfield"),
)
DEFAULT_DIR = next((d for d in CANDIDATE_DIRS if (d / "cran.all.1400").exists()), CANDIDATE_DIRS[0])


def available(folder: Path = DEFAULT_DIR) -> bool:
    return (folder / "cran.all.1400").exists()


@dataclass(frozen=True)
class CranfieldDoc:
    id: str
    title: str
    authors: str
    source: str
    body: str


def _records(text: str) -> list[dict[str, str]]:
    records: list[dict[str, str]] = []
    field = None
    for line in text.splitlines():
        m = re.match(r"^\.([ITABW])\s*(.*)$", line)
        if m:
            field, rest = m.group(1), m.group(2)
            if field == "I":
                records.append({"I": rest.strip()})
            else:
                records[-1][field] = ""
            continue
        if field and records:
            records[-1][field] = (records[-1].get(field, "") + " " + line.strip()).strip()
    return records


def load_docs(folder: Path = DEFAULT_DIR) -> list[CranfieldDoc]:
    return [
        CranfieldDoc(r["I"], r.get("T", ""), r.get("A", ""), r.get("B", ""), r.get("W", ""))
        for r in _records((folder / "cran.all.1400").read_text(encoding="utf-8", errors="replace"))
    ]


def load_queries(folder: Path = DEFAULT_DIR) -> list[str]:
    """Query texts in file order; judgments number them 1..225 by this position, not by their .I."""
    return [r.get("W", "") for r in _records((folder / "cran.qry").read_text(encoding="utf-8", errors="replace"))]


def load_qrels(folder: Path = DEFAULT_DIR) -> dict[str, dict[str, int]]:
    """query position (1-based, as a string) -> doc id -> gain (5 - code for codes 1..4)."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line in (folder / "cranqrel").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            q, doc, code = parts[0], parts[1], int(parts[2])
            if 1 <= code <= 4:
                qrels[q][doc] = 5 - code
    return dict(qrels)


def as_item(doc: CranfieldDoc) -> dict[str, object]:
    return {
        "id": doc.id,
        "title": doc.title,
        "body": doc.body,
        "brand": doc.authors[:200] or None,
        "attributes": {"source": doc.source},
    }
