"""Print the README's table of signals, made from the one table of signals (``robustprune.signals.SIGNALS``)
and the method registry (which methods require each signal). ``tests/test_docs_tables.py`` checks that the
README holds exactly this table; after adding a signal or a method, paste the output into the README.

    python benchmarks/signals_table.py
"""

from __future__ import annotations


def signals_table() -> str:
    import robustprune as rp
    from robustprune.signals import SIGNALS

    lines = ["| key | shape, dtype | meaning | methods |", "|---|---|---|---|"]
    for s in SIGNALS:
        needs = [m for m in rp.list_methods() if s.name in rp.get_method(m).requires]
        also = [m for m in rp.list_methods() if s.name in rp.get_method(m).optional]
        if not s.method_input:
            used = "evaluation and reports only (never given to a method)"
        else:
            used = ", ".join(needs) or "—"
            used += f"; used when present by {', '.join(also)}" if also else ""
        meaning = s.meaning + (f"; {s.note.split(':')[0]}" if s.note else "")
        lines.append(f"| `{s.name}` | {s.shape} | {meaning} | {used} |")
    lines.append("| `meta_json` | uint8 bytes | optional JSON metadata (written by `Signals.save`) | — |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(signals_table())
