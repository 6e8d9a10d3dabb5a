"""Tables as NumPy columns rendered straight to PostgreSQL COPY text.

The bulk of a day (the catchment, the clinical tables) never becomes Python tuples: each column
renders its own bytes, four bytes at a time, so millions of rows cost seconds, not minutes.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from hospital_stream.model.calendar import MINUTES_PER_DAY, SAST, UTC_OFFSET

# --- COPY text from NumPy columns -----------------------------------------------------------------
#
# A table renders into a matrix of little-endian uint32 words, one row per table row: each
# column fills whole words of ASCII (numbers from four-digit look-up tables, words of a
# vocabulary, timestamps from per-day and per-minute words), padding with 0 bytes. A field's tab
# (the last one's newline) goes into a byte that is 0 on every row, its own last or the next
# field's first, or else into a word of its own. Deleting the 0 bytes then joins the fields.
# Writing whole word columns keeps NumPy's loops long: narrow byte slices cost ~10 ns a row.

POW10 = 10 ** np.arange(19, dtype=np.int64)
_TAB_WORD, _NEWLINE_WORD = np.uint32(9), np.uint32(10)


def _words(texts: Sequence[bytes], width: int) -> np.ndarray:
    """Byte strings, each padded with 0 bytes to ``width`` (a multiple of 4), as uint32 words."""
    return np.frombuffer(b"".join(t.ljust(width, b"\0") for t in texts), dtype="<u4").reshape(len(texts), -1)


_NUMBERS = range(10_000)
#: a number's four-digit word: "0042" when digits stand left of it, "\0\0" "42" when none do,
#: and nothing at all for a 0 with none (index + 10,000); the last word of a number writes "0"
_INNER_WORD = np.concatenate(
    (
        _words([f"{i:04d}".encode() for i in _NUMBERS], 4),
        _words([f"{i:d}".rjust(4, "\0").encode() if i else b"" for i in _NUMBERS], 4),
    )
).ravel()
_LAST_WORD = np.concatenate(
    (_INNER_WORD[:10_000], _words([f"{i:d}".rjust(4, "\0").encode() for i in _NUMBERS], 4).ravel())
)
#: four decimals as ".0625", ".5", ".0": a dot and the digits without trailing zeros, 2 words
_FRACTION_HEAD, _FRACTION_TAIL = (
    np.ascontiguousarray(w)
    for w in _words([("." + (f"{i:04d}".rstrip("0") or "0")).encode() for i in _NUMBERS], 8).T
)


class Column:
    """A column that renders itself as ``words()`` uint32 words a row (0 bytes pad). A column
    whose first byte (``head_free``) or last byte (``tail_free``) is 0 on every row lends it
    to a separator."""

    head_free = False
    tail_free = False

    def __len__(self) -> int:
        raise NotImplementedError

    def words(self) -> int:
        raise NotImplementedError

    def render(self, out: np.ndarray) -> None:
        """Fill every word of ``out`` (rows x words)."""
        raise NotImplementedError

    def values(self, start: int, stop: int) -> list[Any]:
        raise NotImplementedError


class Int(Column):
    def __init__(self, values: np.ndarray) -> None:
        self.data = np.asarray(values, dtype=np.int64)
        if len(self.data) and self.data.min() < 0:
            raise ValueError("only non-negative integers are encoded")
        self.digits = len(str(int(self.data.max()))) if len(self.data) else 1
        self.head_free = self.digits % 4 != 0

    def __len__(self) -> int:
        return len(self.data)

    def words(self) -> int:
        return -(-self.digits // 4)

    def render(self, out: np.ndarray) -> None:
        _render_digits(self.data, out)

    def values(self, start: int, stop: int) -> list[Any]:
        return self.data[start:stop].tolist()


class IntLookup(Int):
    """Integers of a few distinct entries repeated over many rows (a stay's admission id):
    each entry is rendered once, then its words are gathered per row."""

    def __init__(self, values: np.ndarray, index: np.ndarray) -> None:
        super().__init__(values)
        self.index = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def render(self, out: np.ndarray) -> None:
        words = np.empty((len(self.data), out.shape[1]), dtype="<u4")
        _render_digits(self.data, words)
        for j in range(out.shape[1]):
            out[:, j] = np.ascontiguousarray(words[:, j]).take(self.index)

    def values(self, start: int, stop: int) -> list[Any]:
        return self.data[self.index[start:stop]].tolist()


class Constant(Column):
    """The same non-negative integer on every row (a table's sim_day)."""

    def __init__(self, value: int, n: int) -> None:
        self.text = str(int(value)).encode()
        if not self.text.isdigit():
            raise ValueError("only non-negative integers are encoded")
        self.value, self.n = int(value), n
        self.tail_free = len(self.text) % 4 != 0

    def __len__(self) -> int:
        return self.n

    def words(self) -> int:
        return -(-len(self.text) // 4)

    def render(self, out: np.ndarray) -> None:
        for j, word in enumerate(_words([self.text], 4 * out.shape[1]).ravel()):
            out[:, j] = word

    def values(self, start: int, stop: int) -> list[Any]:
        return [self.value] * (stop - start)


class Decimal(Column):
    """Decimal numbers as integer units of 10**-decimals (at most 4), written the way Python
    writes the float: at least one decimal, no trailing zeros ("4.6", "88.0", "0.0625")."""

    tail_free = True  # ".dddd" leaves the last of its eight bytes free

    def __init__(self, units: np.ndarray, decimals: np.ndarray | int) -> None:
        self.units = np.asarray(units, dtype=np.int64)
        self.decimals = np.broadcast_to(np.asarray(decimals, dtype=np.int64), self.units.shape)
        if len(self.units) and (self.units.min() < 0 or self.decimals.min() < 0 or self.decimals.max() > 4):
            raise ValueError("decimals are non-negative with at most four decimals")
        self.whole = self.units // POW10[self.decimals]
        self.digits = len(str(int(self.whole.max()))) if len(self.units) else 1
        self.head_free = self.digits % 4 != 0

    def __len__(self) -> int:
        return len(self.units)

    def words(self) -> int:
        return -(-self.digits // 4) + 2

    def render(self, out: np.ndarray) -> None:
        _render_digits(self.whole, out[:, :-2])
        fraction = (self.units - self.whole * POW10[self.decimals]) * POW10[4 - self.decimals]
        out[:, -2] = _FRACTION_HEAD[fraction]
        out[:, -1] = _FRACTION_TAIL[fraction]

    def values(self, start: int, stop: int) -> list[Any]:
        return (self.units[start:stop] / POW10[self.decimals[start:stop]]).tolist()


class Text(Column):
    """Strings from a small vocabulary, as indices into it."""

    def __init__(self, index: np.ndarray, vocabulary: Sequence[str]) -> None:
        self.index = np.asarray(index, dtype=np.int64)
        self.vocabulary = tuple(vocabulary)
        self.tail_free = _longest(self.vocabulary) % 4 != 0

    def __len__(self) -> int:
        return len(self.index)

    def words(self) -> int:
        return len(_vocabulary_words(self.vocabulary))

    def render(self, out: np.ndarray) -> None:
        for j, word in enumerate(_vocabulary_words(self.vocabulary)):
            out[:, j] = word.take(self.index)

    def values(self, start: int, stop: int) -> list[Any]:
        return [self.vocabulary[i] for i in self.index[start:stop].tolist()]


#: "YYYY-MM-DDTHH:MM:00+02:00" fills the words "YYYY", "-MM-", "DDTH", "H:MM", ":00+",
#: "02:0", "0": the hour's first digit joins the date's third word, its second digit and the
#: minutes come from a word per minute of the day, the rest is constant
_HOUR_TENS = (np.arange(1440, dtype=np.uint32) // 600 + 48) << np.uint32(24)
_HOUR_MINUTE = _words([f"{m // 60 % 10}:{m % 60:02d}".encode() for m in range(1440)], 4).ravel()
_ZONE = _words([f":00{UTC_OFFSET}".encode()], 12).ravel()


class Time(Column):
    """Model minutes as ISO-8601 timestamps in SAST: 2020-03-05T14:07:00+02:00."""

    tail_free = True

    def __init__(self, minutes: np.ndarray, start_date: dt.date) -> None:
        self.minutes = np.asarray(minutes, dtype=np.int64)
        self.start_date = start_date

    def __len__(self) -> int:
        return len(self.minutes)

    def words(self) -> int:
        return 7

    def render(self, out: np.ndarray) -> None:
        if not len(self.minutes):
            return
        days = self.minutes // MINUTES_PER_DAY
        first = int(days.min())
        dates = _dates(self.start_date, first, int(days.max()) + 1)
        index = days - first
        of_day = self.minutes - days * MINUTES_PER_DAY
        out[:, 0] = dates[0].take(index)
        out[:, 1] = dates[1].take(index)
        out[:, 2] = dates[2].take(index) | _HOUR_TENS.take(of_day)
        out[:, 3] = _HOUR_MINUTE.take(of_day)
        for j, word in enumerate(_ZONE):
            out[:, 4 + j] = word

    def values(self, start: int, stop: int) -> list[Any]:
        base = dt.datetime(self.start_date.year, self.start_date.month, self.start_date.day, tzinfo=SAST)
        dates: dict[int, str] = {}
        out = []
        for m in self.minutes[start:stop].tolist():
            day, of_day = divmod(m, MINUTES_PER_DAY)
            if day not in dates:
                dates[day] = (base + dt.timedelta(days=day)).isoformat()[:11]
            out.append(f"{dates[day]}{of_day // 60:02d}:{of_day % 60:02d}:00{UTC_OFFSET}")
        return out


class Digits(Column):
    """Non-negative integers as exactly ``width`` digits, zero-padded (an ID number, a postal code)."""

    def __init__(self, values: np.ndarray, width: int) -> None:
        self.data = np.asarray(values, dtype=np.int64)
        if not 1 <= width <= 18:
            raise ValueError("a fixed-width number has 1 to 18 digits")
        if len(self.data) and (self.data.min() < 0 or self.data.max() >= 10**width):
            raise ValueError(f"only non-negative integers of at most {width} digits are encoded")
        self.width = width
        self.head_free = width % 4 != 0

    def __len__(self) -> int:
        return len(self.data)

    def words(self) -> int:
        return -(-self.width // 4)

    def render(self, out: np.ndarray) -> None:
        rest = self.data
        for word in range(out.shape[1] - 1, 0, -1):
            rest, four = np.divmod(rest, 10_000)
            out[:, word] = _INNER_WORD.take(four)
        out[:, 0] = _leading_words(self.width - 4 * (out.shape[1] - 1)).take(rest)

    def values(self, start: int, stop: int) -> list[Any]:
        return [f"{value:0{self.width}d}" for value in self.data[start:stop].tolist()]


@functools.lru_cache(maxsize=4)
def _leading_words(digits: int) -> np.ndarray:
    """The first word of a fixed-width number: its leading 1-4 digits, zero-padded."""
    return _words([f"{i:0{digits}d}".rjust(4, "\0").encode() for i in range(10**digits)], 4).ravel()


#: a date's "-MM-" by month number and "DD" by day of the month
_MONTH_WORD = _words([f"-{m:02d}-".encode() for m in range(13)], 4).ravel()
_DAY_WORD = _words([f"{d:02d}".encode() for d in range(32)], 4).ravel()


class Date(Column):
    """Proleptic Gregorian ordinals (``date.toordinal()``) as ISO dates: 1987-06-30."""

    tail_free = True  # "DD" leaves the last two bytes of its word free

    def __init__(self, ordinals: np.ndarray) -> None:
        self.ordinals = np.asarray(ordinals, dtype=np.int64)
        if len(self.ordinals) and (self.ordinals.min() < 1 or self.ordinals.max() > dt.date.max.toordinal()):
            raise ValueError("only dates of the years 1 to 9999 are encoded")

    def __len__(self) -> int:
        return len(self.ordinals)

    def words(self) -> int:
        return 3

    def render(self, out: np.ndarray) -> None:
        year, month, day = calendar_days(self.ordinals)
        out[:, 0] = _INNER_WORD.take(year)  # "YYYY", zero-padded like isoformat()
        out[:, 1] = _MONTH_WORD.take(month)
        out[:, 2] = _DAY_WORD.take(day)

    def values(self, start: int, stop: int) -> list[Any]:
        return [dt.date.fromordinal(o).isoformat() for o in self.ordinals[start:stop].tolist()]


def calendar_days(ordinals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The year, month and day of proleptic Gregorian ordinals (``date.toordinal()``)."""
    # Integer arithmetic on 400-year eras of years that start on 1 March (H. Hinnant's
    # civil_from_days), three to five times faster than NumPy's datetime64 conversions; in place
    # where it can be, as a whole catchment's birth dates pass through here at once.
    day = np.asarray(ordinals, dtype=np.int64) + 305  # days since 0000-03-01
    era = day // 146_097
    day -= era * 146_097  # the day of the era
    year = day // 36_524
    year -= day // 1_460
    year -= day // 146_096
    year += day
    year //= 365  # the year of the era
    day -= 365 * year + year // 4 - year // 100  # the day of the year, from 1 March
    era *= 400
    year += era
    del era
    month = 5 * day + 2
    month //= 153  # months since March
    day -= (153 * month + 2) // 5
    day += 1
    month += np.where(month < 10, 3, -9)
    year += month <= 2
    return year, month, day


@functools.lru_cache(maxsize=256)
def _dates(start_date: dt.date, first: int, stop: int) -> tuple[np.ndarray, ...]:
    """The words "YYYY", "-MM-", "DDT" of days ``first`` to ``stop`` after ``start_date``."""
    texts = [(start_date + dt.timedelta(days=d)).isoformat().encode() + b"T" for d in range(first, stop)]
    words = _words(texts, 12)
    return tuple(np.ascontiguousarray(words[:, j]) for j in range(3))


def _render_digits(values: np.ndarray, out: np.ndarray) -> None:
    """Non-negative integers as right-aligned ASCII digits in ``out``'s words."""
    rest = values.astype(np.uint32) if out.shape[1] <= 2 else values
    for word in range(out.shape[1] - 1, -1, -1):
        rest, four = np.divmod(rest, 10_000)
        # a word with no digits left of it drops its leading zeros
        table = _LAST_WORD if word == out.shape[1] - 1 else _INNER_WORD
        out[:, word] = table.take(four + 10_000 * (rest == 0))


@functools.lru_cache(maxsize=64)
def _longest(vocabulary: tuple[str, ...]) -> int:
    return max(len(word.encode()) for word in vocabulary)


@functools.lru_cache(maxsize=64)
def _vocabulary_words(vocabulary: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """The words of a vocabulary, one contiguous array per word position."""
    encoded = [word.encode() for word in vocabulary]
    for word in encoded:
        if not word or any(byte in word for byte in b"\t\n\r\\\0"):
            raise ValueError(f"{word!r} cannot travel in COPY text unescaped")
    words = _words(encoded, 4 * -(-max(map(len, encoded), default=1) // 4))
    return tuple(np.ascontiguousarray(words[:, j]) for j in range(words.shape[1]))


class Columns:
    """One table's rows as NumPy columns; ``copy_text`` renders them in PostgreSQL's COPY text
    format (tab-separated, one row a line). The whole table is rendered once, on first use, so
    any slicing of it yields the same bytes."""

    def __init__(self, columns: Sequence[str], data: Sequence[Column]) -> None:
        if len(columns) != len(data):
            raise ValueError("one data column per column name")
        lengths = {len(column) for column in data}
        if len(lengths) > 1:
            raise ValueError(f"columns differ in length: {sorted(lengths)}")
        self.columns: tuple[str, ...] = tuple(columns)
        self._data = tuple(data)
        self._length = lengths.pop() if lengths else 0
        self._text = bytearray()
        self._ends: np.ndarray | None = None

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return f"<Columns {', '.join(self.columns)}: {self._length} rows>"

    def copy_text(self, start: int = 0, stop: int | None = None) -> bytes:
        """Rows ``[start, stop)`` as COPY text, each line ending in a newline."""
        start, stop, _ = slice(start, stop).indices(self._length)
        if stop <= start:
            return b""
        if self._ends is None:
            self._render()
        assert self._ends is not None
        return bytes(memoryview(self._text)[self._ends[start] : self._ends[stop]])

    def rows(self, start: int = 0, stop: int | None = None) -> list[tuple[Any, ...]]:
        """Rows ``[start, stop)`` as tuples of Python values (timestamps as ISO strings)."""
        start, stop, _ = slice(start, stop).indices(self._length)
        if stop <= start:
            return []
        return list(zip(*(column.values(start, stop) for column in self._data), strict=True))

    def _render(self) -> None:
        data = self._data
        # where each field's separator goes: into its own free last byte, into the next
        # field's free first byte, or into a word of its own
        places = [
            "tail" if column.tail_free else "head" if nxt is not None and nxt.head_free else "word"
            for column, nxt in zip(data, (*data[1:], None), strict=True)
        ]
        widths = [column.words() for column in data]
        total = sum(widths) + places.count("word")
        buffer = bytearray(4 * total * self._length)
        matrix = np.frombuffer(buffer, dtype="<u4").reshape(self._length, total)
        at, pending = 0, None
        for column, width, place, last in zip(data, widths, places, range(len(data), 0, -1), strict=True):
            separator = _NEWLINE_WORD if last == 1 else _TAB_WORD
            column.render(matrix[:, at : at + width])
            if pending is not None:
                matrix[:, at] |= pending
                pending = None
            at += width
            if place == "tail":
                matrix[:, at - 1] |= separator << np.uint32(24)
            elif place == "head":
                pending = separator
            else:
                matrix[:, at] = separator
                at += 1
        del matrix
        # no field holds a 0 byte, a tab or a newline: deleting the 0 bytes joins the fields
        self._text = buffer.translate(None, b"\0")
        newlines = np.flatnonzero(np.frombuffer(self._text, dtype=np.uint8) == 10)
        self._ends = np.concatenate(([0], newlines + 1))
        if len(newlines) != self._length:
            raise AssertionError("the COPY text does not have one line a row")
