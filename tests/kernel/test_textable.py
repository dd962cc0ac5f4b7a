"""Plain-text tables for humans (``kernel.cli.table``)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kernel.cli.table import format_table


def test_columns_are_left_aligned_to_the_widest_cell() -> None:
    table = format_table(["seq", "machine", "data"], [[1, "run", "{}"], [12, "toy", '{"qty":"1.5"}']])
    assert table == ('seq  machine  data\n---  -------  -------------\n1    run      {}\n12   toy      {"qty":"1.5"}')


def test_a_header_wider_than_its_cells_sets_the_width() -> None:
    table = format_table(["a", "a long header", "z"], [["x", "y", "z"]])
    assert table.splitlines() == ["a  a long header  z", "-  -------------  -", "x  y              z"]


def test_none_is_an_empty_cell_and_values_are_str() -> None:
    table = format_table(["source", "qty", "ok"], [[None, Decimal("1.50"), True], ["idle", 0, False]])
    assert table.splitlines() == [
        "source  qty   ok",
        "------  ----  -----",
        "        1.50  True",
        "idle    0     False",
    ]


def test_trailing_spaces_are_stripped() -> None:
    table = format_table(["a", "b"], [["x", None], ["long value", ""]])
    for line in table.splitlines():
        assert line == line.rstrip()
    assert table.splitlines()[2] == "x"


def test_long_cells_are_cut_with_an_ellipsis() -> None:
    table = format_table(["k", "v"], [["a", "x" * 100]])
    cell = table.splitlines()[2].split("  ", 1)[1]
    assert cell == "x" * 79 + "…"
    assert len(cell) == 80
    assert table.splitlines()[1] == "-  " + "-" * 80


@pytest.mark.parametrize(
    ("text", "max_width", "expected"),
    [
        ("abcde", 5, "abcde"),
        ("abcdef", 5, "abcd…"),
        ("a\nb", 5, "a b"),
        ("line one\nline two", 6, "line …"),
    ],
)
def test_max_width_and_newlines(text: str, max_width: int, expected: str) -> None:
    assert format_table(["c"], [[text]], max_width=max_width).splitlines()[2] == expected


def test_no_rows_is_a_header_and_a_rule() -> None:
    assert format_table(["seq", "data"], []) == "seq  data\n---  ----"
