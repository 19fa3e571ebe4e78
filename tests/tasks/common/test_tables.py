"""tasks.common.tables: TSV without quoting, CSV with RFC 4180 quoting, errors naming FILE:LINE."""

from __future__ import annotations

import pytest

from tasks.common.errors import UserError
from tasks.common.tables import read_table


def write(path, text: str | bytes):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_tsv_stray_quotes_do_not_merge_rows(tmp_path):
    # two stray quotes made 300 rows 293 examples with a quoting reader (issue 18)
    rows = [f'a 9" TV {i}\tx' if i in (3, 200) else f"row {i}\ty" for i in range(300)]
    table = read_table(write(tmp_path / "t.tsv", "text\tlabel\n" + "\n".join(rows) + "\n"))
    assert len(table.rows) == 300
    assert table.rows[3] == (5, ['a 9" TV 3', "x"])  # header is line 1, row i is line i + 2
    assert table.rows[200][1] == ['a 9" TV 200', "x"]
    assert table.delimiter == "\t" and table.header == ["text", "label"]


def test_tsv_one_stray_quote_and_crlf(tmp_path):
    table = read_table(write(tmp_path / "t.tsv", 'text\tlabel\r\n"quoted" start\tx\r\n\r\nlast"\ty\r\n'))
    assert table.rows == [(2, ['"quoted" start', "x"]), (4, ['last"', "y"])]


def test_csv_keeps_rfc4180_quoting(tmp_path):
    content = 'text,label\n"Funny, smart",pos\n"He said ""no"".",neg\n"two\nlines",pos\nplain 9" TV,neg\n'
    table = read_table(write(tmp_path / "t.csv", content))
    assert [fields for _, fields in table.rows] == [
        ["Funny, smart", "pos"], ['He said "no".', "neg"], ["two\nlines", "pos"], ['plain 9" TV', "neg"]]
    assert [line for line, _ in table.rows] == [2, 3, 4, 6]


def test_csv_unterminated_quote_names_the_line_where_it_begins(tmp_path):
    rows = [f"row {i},pos" for i in range(300)]
    rows[2] = '"never closed,neg'
    with pytest.raises(UserError) as err:
        read_table(write(tmp_path / "bad.csv", "text,label\n" + "\n".join(rows) + "\n"))
    assert str(err.value).startswith(f"{tmp_path / 'bad.csv'}:4: a quoted field starts here")
    with pytest.raises(UserError, match=r"bad2.csv:3: malformed CSV line"):
        read_table(write(tmp_path / "bad2.csv", 'text,label\nok,pos\n"closed"junk,neg\n'))


def test_delimiter_sniffed_without_a_known_suffix(tmp_path):
    assert read_table(write(tmp_path / "a.data", "text\tlabel\nx,y\tz\n")).rows == [(2, ["x,y", "z"])]
    assert read_table(write(tmp_path / "b.data", "text,label\nx,z\n")).delimiter == ","


@pytest.mark.parametrize("name, content, expected", [
    ("empty.tsv", "", "empty.tsv: file is empty"),
    ("header.tsv", "\ntext\tlabel\n\n", "header.tsv:2: header only"),
    ("latin.tsv", "text\tlabel\ncaf\xe9\tx\n".encode("latin-1"), "latin.tsv:2: not UTF-8 (byte e9 at column 4)"),
])
def test_errors_name_file_and_line(tmp_path, name, content, expected):
    with pytest.raises(UserError) as err:
        read_table(write(tmp_path / name, content))
    assert expected in str(err.value)


def test_column_and_field_errors(tmp_path):
    table = read_table(write(tmp_path / "t.tsv", "Text\tlabel\nonly one field\n"))
    assert table.column("text") == 0 and table.column("rating", required=False) is None
    with pytest.raises(UserError, match=r"t.tsv:1: header has columns \['Text', 'label'\] but no 'rating'"):
        table.column("rating")
    line, fields = table.rows[0]
    with pytest.raises(UserError, match=r"t.tsv:2: 1 field\(s\) but the header has 2"):
        table.field(line, fields, 1)
    with pytest.raises(UserError, match="no such file"):
        read_table(tmp_path / "missing.tsv")
