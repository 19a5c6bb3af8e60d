"""Deterministic, plausible OHLCV bars: a pure function of (seed, symbol, session).

Why counter-based: a loader fetches overlapping windows in any order, across
restarts, and the tests compare them, so the bar for a session must never depend
on how the range was requested.  Every random number here is a hash of
``(seed, symbol, stream, session ordinal[, minute])`` (splitmix64), not a draw from
a stateful generator.  The close-to-close walk is the only sequential part: it is
computed once per symbol over the whole fixed calendar and cached.

The walk is a *mean-reverting* geometric random walk (log price AR(1) with a slow
pull back to the symbol's start price) so that twenty years of 1–3 % daily moves
stay within a plausible band instead of drifting to cents or to six figures.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import math
from dataclasses import dataclass

import numpy as np

from market_calendar import EXCHANGE_TZ as NY

from .sessions import SessionCalendar

WHAT_TO_SHOW = ("TRADES", "ADJUSTED_LAST", "MIDPOINT", "BID", "ASK")

_MEAN_REVERSION = 0.003  # per session; stationary sd of log price ~ vol / sqrt(2k)
_MIN_PRICE = 1.0
_PRE_MARKET_START = dt.time(4, 0)
_POST_MARKET_MINUTES = 240  # 16:00 -> 20:00 (13:00 -> 17:00 on half days)


@dataclass(frozen=True)
class Bar:
    """One bar as the wire carries it.

    ``time`` is a ``datetime.date`` for daily bars and the bar's start as an aware
    UTC ``datetime`` for intraday bars.  ``volume``, ``wap`` and ``bar_count`` are
    ``-1`` for MIDPOINT/BID/ASK, as IBKR sends them.
    """

    time: dt.date | dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    wap: float
    bar_count: int


# --- counter-based random numbers ------------------------------------------------

_U64 = np.uint64


def _splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over a uint64 array (wrap-around arithmetic intended)."""
    x = x + _U64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _key(*parts: object) -> int:
    """Stable 64-bit key for a tuple of parts (Python's ``hash`` is salted per run)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _uniform(key: int, stream: int, counters: np.ndarray) -> np.ndarray:
    """Uniforms in (0, 1), one per counter, for the given key and stream."""
    c = np.asarray(counters, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = _splitmix(c * _U64(0x2545F4914F6CDD1D) + _U64(stream & 0xFFFFFFFF))
        x = _splitmix(x ^ _U64(key))
    return ((x >> _U64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def _normal(key: int, stream: int, counters: np.ndarray) -> np.ndarray:
    """Standard normals via Box–Muller over two independent uniform streams."""
    u1 = _uniform(key, 2 * stream, counters)
    u2 = _uniform(key, 2 * stream + 1, counters)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


# --- per-symbol parameters and the daily series -------------------------------------


@dataclass(frozen=True)
class SymbolProfile:
    """Per-(seed, symbol) constants: start price, volatility, liquidity, dividends."""

    key: int
    start_price: float
    daily_vol: float
    base_volume: float
    trade_size: float
    dividend_yield: float

    @classmethod
    def of(cls, seed: int, symbol: str) -> SymbolProfile:
        """Derive the profile from the hash of (seed, symbol)."""
        key = _key("symbol", seed, symbol)
        u = _uniform(key, 0, np.arange(6))
        return cls(
            key=key,
            start_price=math.exp(math.log(5.0) + u[0] * (math.log(500.0) - math.log(5.0))),
            daily_vol=0.01 + 0.02 * float(u[1]),
            base_volume=math.exp(math.log(3e5) + u[2] * (math.log(2e7) - math.log(3e5))),
            trade_size=50.0 + 250.0 * float(u[3]),
            dividend_yield=0.0 if u[4] < 0.3 else 0.04 * float(u[5]),
        )


@dataclass(frozen=True)
class DailySeries:
    """TRADES daily bars for every calendar session of one symbol (index-aligned)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    wap: np.ndarray
    bar_count: np.ndarray


def _fix_ohlc(o: np.ndarray, h: np.ndarray, l: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
    """Round to cents and restore high >= max(o, c), low <= min(o, c), all >= 0.01."""
    o = np.maximum(np.round(o, 2), 0.01)
    c = np.maximum(np.round(c, 2), 0.01)
    h = np.maximum(np.round(h, 2), np.maximum(o, c))
    l = np.maximum(np.minimum(np.round(l, 2), np.minimum(o, c)), 0.01)
    return o, h, l, c


def _daily_series(profile: SymbolProfile, ordinals: np.ndarray) -> DailySeries:
    key, vol = profile.key, profile.daily_vol
    shocks = vol * _normal(key, 1, ordinals)
    log_level = np.empty_like(shocks)
    level = 0.0
    keep = 1.0 - _MEAN_REVERSION
    for i, shock in enumerate(shocks.tolist()):
        level = keep * level + shock
        log_level[i] = level
    close = np.maximum(profile.start_price * np.exp(log_level), _MIN_PRICE)
    prev_close = np.concatenate(([profile.start_price], close[:-1]))
    open_ = np.maximum(prev_close * np.exp(0.35 * vol * _normal(key, 2, ordinals)), _MIN_PRICE)
    high = np.maximum(open_, close) * np.exp(0.6 * vol * np.abs(_normal(key, 3, ordinals)))
    low = np.minimum(open_, close) * np.exp(-0.6 * vol * np.abs(_normal(key, 4, ordinals)))
    open_, high, low, close = _fix_ohlc(open_, high, low, close)
    volume = np.clip(profile.base_volume * np.exp(0.45 * _normal(key, 5, ordinals)), 1e5, 5e7)
    volume = volume.astype(np.int64)
    wap = np.clip(np.round((high + low + close) / 3.0, 2), low, high)
    bar_count = np.maximum(volume // int(profile.trade_size), 1)
    return DailySeries(open_, high, low, close, volume, wap, bar_count)


# --- the generator ------------------------------------------------------------------


class BarGenerator:
    """Produces TRADES bars (daily and intraday) and the other ``whatToShow`` views.

    Instances are cheap; the per-symbol daily series is cached process-wide by
    (seed, symbol) because computing it walks the whole calendar once.
    """

    def __init__(self, seed: int, calendar: SessionCalendar) -> None:
        self.seed = seed
        self.calendar = calendar

    def profile(self, symbol: str) -> SymbolProfile:
        """The symbol's constant parameters under this seed."""
        return _profile(self.seed, symbol)

    def series(self, symbol: str) -> DailySeries:
        """Full-calendar TRADES daily series for ``symbol`` (cached)."""
        return _series(self.seed, symbol, self.calendar)

    # daily ----------------------------------------------------------------------

    def daily(self, symbol: str, first: int, last: int) -> list[Bar]:
        """TRADES daily bars for session indices ``first..last`` inclusive."""
        s = self.series(symbol)
        dates = self.calendar.dates
        return [
            Bar(
                dates[i],
                float(s.open[i]),
                float(s.high[i]),
                float(s.low[i]),
                float(s.close[i]),
                int(s.volume[i]),
                float(s.wap[i]),
                int(s.bar_count[i]),
            )
            for i in range(first, last + 1)
        ]

    # intraday -------------------------------------------------------------------

    def intraday(
        self, symbol: str, idx: int, bar_minutes: int, rth_only: bool, until_ts: int | None = None
    ) -> list[Bar]:
        """TRADES intraday bars of one session, aggregated from one-minute bars.

        Regular hours run from the calendar's open to its close (13:00 on half
        days); with ``rth_only=False`` pre-market from 04:00 and four hours of
        after-hours trading are added.  Bars align to clock multiples of the bar
        size from midnight New York time, like IBKR's, so an hourly request's first
        bar is labelled 09:30 and covers 09:30–10:00. With ``until_ts`` (the clock,
        the session still trading) only minutes that began before it count: the
        last bar is the one still forming.
        """
        ts, o, h, l, c, v, typ, cnt = self._minutes(symbol, idx, rth_only, until_ts)
        if len(ts) == 0:
            return []
        day = self.calendar.dates[idx]
        midnight = int(dt.datetime.combine(day, dt.time(0), NY).timestamp())
        group = ((ts - midnight) // 60) // bar_minutes
        starts = np.flatnonzero(np.diff(group, prepend=group[0] - 1))
        ends = np.append(starts[1:], len(ts)) - 1
        bo, bc = o[starts], c[ends]
        bh = np.maximum.reduceat(h, starts)
        bl = np.minimum.reduceat(l, starts)
        bv = np.add.reduceat(v, starts)
        bn = np.add.reduceat(cnt, starts)
        weighted = np.add.reduceat(typ * v, starts)
        plain = np.add.reduceat(typ, starts) / np.diff(np.append(starts, len(ts)))
        bw = np.where(bv > 0, weighted / np.maximum(bv, 1), plain)
        bw = np.clip(np.round(bw, 2), bl, bh)
        utc = dt.UTC
        return [
            Bar(
                dt.datetime.fromtimestamp(int(ts[s]), utc),
                float(bo[k]),
                float(bh[k]),
                float(bl[k]),
                float(bc[k]),
                int(bv[k]),
                float(bw[k]),
                int(bn[k]),
            )
            for k, s in enumerate(starts)
        ]

    def partial_daily(self, symbol: str, idx: int, until_ts: int, rth_only: bool = True) -> Bar | None:
        """The daily bar of a session still trading, from its minutes that began before ``until_ts``."""
        ts, o, h, l, c, v, typ, cnt = self._minutes(symbol, idx, rth_only, until_ts)
        if len(ts) == 0:
            return None
        volume = int(v.sum())
        wap = float(np.clip(round(float((typ * v).sum() / max(volume, 1)), 2), l.min(), h.max()))
        return Bar(
            self.calendar.dates[idx],
            float(o[0]),
            float(h.max()),
            float(l.min()),
            float(c[-1]),
            volume,
            wap,
            int(cnt.sum()),
        )

    def _minutes(self, symbol: str, idx: int, rth_only: bool, until_ts: int | None = None) -> tuple[np.ndarray, ...]:
        """One-minute TRADES bars of a session that began before ``until_ts``: (ts, o, h, l, c, volume, typical, count)."""
        columns = self._all_minutes(symbol, idx, rth_only)
        if until_ts is None:
            return columns
        keep = columns[0] < until_ts
        return tuple(column[keep] for column in columns)

    def _all_minutes(self, symbol: str, idx: int, rth_only: bool) -> tuple[np.ndarray, ...]:
        prof = self.profile(symbol)
        s = self.series(symbol)
        cal = self.calendar
        day = cal.dates[idx]
        key = _key("intraday", self.seed, symbol)
        base = day.toordinal() * 4096
        o, h, l, c = (float(x[idx]) for x in (s.open, s.high, s.low, s.close))
        n_rth = (cal.closes[idx] - cal.opens[idx]) // 60
        path = _bridge(key, 10, base, n_rth, o, c)
        # Stretch the regular-hours path so it touches exactly the daily high and low:
        # minute bars then aggregate to the daily bar (same O/H/L/C and volume).
        lin = np.linspace(o, c, n_rth + 1)
        dev = path - lin
        up, down = dev > 0, dev < 0
        k_up = float(np.min((h - lin[up]) / dev[up])) if up.any() else 0.0
        k_down = float(np.min((l - lin[down]) / dev[down])) if down.any() else 0.0
        rth_path = lin + np.where(up, dev * k_up, dev * k_down)
        segments = [(cal.opens[idx], rth_path, float(s.volume[idx]), (l, h), 0)]
        if not rth_only:
            prev_close = float(s.close[idx - 1]) if idx > 0 else o
            pre_start = int(dt.datetime.combine(day, _PRE_MARKET_START, NY).timestamp())
            n_pre = (cal.opens[idx] - pre_start) // 60
            post_end = c * math.exp(0.2 * prof.daily_vol * float(_normal(key, 20, np.array([day.toordinal()]))[0]))
            pre = _bridge(key, 11, base, n_pre, prev_close, o, natural=prof.daily_vol * o)
            post = _bridge(key, 12, base + 2048, _POST_MARKET_MINUTES, c, post_end, natural=prof.daily_vol * c)
            vol_day = float(s.volume[idx])
            segments = [
                (pre_start, pre, 0.03 * vol_day, None, 1024),
                segments[0],
                (cal.closes[idx], post, 0.02 * vol_day, None, 3072),
            ]
        parts = [
            self._segment_minutes(key, base + off, start, path_, volume, bounds, prof)
            for start, path_, volume, bounds, off in segments
        ]
        return tuple(np.concatenate(cols) for cols in zip(*parts, strict=True))

    @staticmethod
    def _segment_minutes(
        key: int,
        counter0: int,
        start_ts: int,
        path: np.ndarray,
        volume: float,
        bounds: tuple[float, float] | None,
        prof: SymbolProfile,
    ) -> tuple[np.ndarray, ...]:
        """Turn a price path of n+1 points into n minute bars starting at ``start_ts``."""
        n = len(path) - 1
        counters = counter0 + np.arange(n)
        mo, mc = path[:-1], path[1:]
        wiggle = prof.daily_vol * np.maximum(mo, 0.01) / math.sqrt(max(n, 1)) * 0.5
        mh = np.maximum(mo, mc) + wiggle * np.abs(_normal(key, 30, counters))
        ml = np.minimum(mo, mc) - wiggle * np.abs(_normal(key, 31, counters))
        if bounds is not None:
            # Clip into the daily range and make sure both extremes are reached once.
            mh, ml = np.minimum(mh, bounds[1]), np.maximum(ml, bounds[0])
            mh[np.argmax(mh)], ml[np.argmin(ml)] = bounds[1], bounds[0]
        mo, mh, ml, mc = _fix_ohlc(mo, mh, ml, mc)
        x = np.linspace(-1.0, 1.0, n)
        weights = (1.0 + 2.0 * x * x) * np.exp(0.3 * _normal(key, 32, counters))
        raw = volume * weights / weights.sum()
        vol = np.floor(raw).astype(np.int64)
        vol[-1] += int(round(volume)) - int(vol.sum())
        vol = np.maximum(vol, 0)
        typ = (mh + ml + mc) / 3.0
        cnt = np.maximum(vol // int(prof.trade_size), 1)
        ts = start_ts + 60 * np.arange(n, dtype=np.int64)
        return ts, mo, mh, ml, mc, vol, typ, cnt

    # other views ----------------------------------------------------------------

    def adjustment_factor(self, symbol: str, day: dt.date, as_of: dt.date) -> float:
        """Dividend back-adjustment for ADJUSTED_LAST: product over ex-dates in (day, as_of].

        Quarterly ex-dates fall on the first session on/after the 15th of Feb, May,
        Aug and Nov.  Like IBKR's, adjusted history changes as new dividends occur,
        so the factor depends on the as-of date (the simulator's end date).
        """
        q = self.profile(symbol).dividend_yield
        if q <= 0.0 or day >= as_of:
            return 1.0
        ex = _ex_dates(self.calendar)
        count = bisect.bisect_right(ex, as_of) - bisect.bisect_right(ex, day)
        return (1.0 - q / 4.0) ** count


def split_adjusted(bars: list[Bar], factor: float) -> list[Bar]:
    """Bars as IBKR serves them after splits: prices (and wap) x ``factor``, volume / ``factor``, rounded like IBKR's.

    ``factor`` is the product of 1 / ratio over the symbol's splits up to the as-of date (0.1 after a 10-for-1).
    """
    if factor == 1.0 or not bars:
        return bars
    o, h, l, c = (np.array([getattr(b, name) for b in bars]) * factor for name in ("open", "high", "low", "close"))
    o, h, l, c = _fix_ohlc(o, h, l, c)
    return [
        Bar(
            b.time,
            float(o[k]),
            float(h[k]),
            float(l[k]),
            float(c[k]),
            int(round(b.volume / factor)),
            float(np.clip(round(b.wap * factor, 2), l[k], h[k])),
            b.bar_count,
        )
        for k, b in enumerate(bars)
    ]


def view(
    bars: list[Bar], what_to_show: str, gen: BarGenerator, symbol: str, session_dates: list[dt.date], as_of: dt.date
) -> list[Bar]:
    """Turn TRADES bars into the requested ``whatToShow`` (one session date per bar).

    ADJUSTED_LAST scales prices (and wap) by the dividend factor; MIDPOINT keeps
    the prices; BID/ASK shift them by half a (tiny) spread.  The quote views carry
    ``-1`` for volume, wap and bar count, as IBKR's do.
    """
    what = what_to_show.upper()
    if what == "TRADES" or not bars:
        return bars
    o = np.array([b.open for b in bars])
    h = np.array([b.high for b in bars])
    l = np.array([b.low for b in bars])
    c = np.array([b.close for b in bars])
    if what == "ADJUSTED_LAST":
        factors = {d: gen.adjustment_factor(symbol, d, as_of) for d in set(session_dates)}
        f = np.array([factors[d] for d in session_dates])
        o, h, l, c = _fix_ohlc(o * f, h * f, l * f, c * f)
        w = np.clip(np.round(np.array([b.wap for b in bars]) * f, 2), l, h)
        return [
            Bar(b.time, float(o[k]), float(h[k]), float(l[k]), float(c[k]), b.volume, float(w[k]), b.bar_count)
            for k, b in enumerate(bars)
        ]
    if what == "MIDPOINT":
        shift = np.zeros_like(c)
    else:
        half = np.maximum(np.round(c * 0.0002, 2), 0.01)
        shift = -half if what == "BID" else half
    o, h, l, c = _fix_ohlc(o + shift, h + shift, l + shift, c + shift)
    return [Bar(b.time, float(o[k]), float(h[k]), float(l[k]), float(c[k]), -1, -1.0, -1) for k, b in enumerate(bars)]


def _bridge(
    key: int, stream: int, counter0: int, n: int, start: float, end: float, natural: float | None = None
) -> np.ndarray:
    """Brownian bridge of n steps from ``start`` to ``end`` (n+1 points).

    With ``natural`` the wander is scaled to that price amplitude; otherwise the
    raw bridge is returned for the caller to fit into a range.
    """
    z = _normal(key, stream, counter0 + np.arange(n))
    walk = np.concatenate(([0.0], np.cumsum(z))) / math.sqrt(max(n, 1))
    t = np.linspace(0.0, 1.0, n + 1)
    bridge = walk - t * walk[-1]
    amp = (natural if natural is not None else abs(end - start) + 0.02 * max(start, end)) * 0.5
    path = start + (end - start) * t + amp * bridge
    path[0], path[-1] = start, end
    return np.maximum(path, 0.01)


@functools.lru_cache(maxsize=4096)
def _profile(seed: int, symbol: str) -> SymbolProfile:
    return SymbolProfile.of(seed, symbol)


@functools.lru_cache(maxsize=128)
def _series(seed: int, symbol: str, calendar: SessionCalendar) -> DailySeries:
    ordinals = np.array([d.toordinal() for d in calendar.dates], dtype=np.int64)
    return _daily_series(_profile(seed, symbol), ordinals)


@functools.lru_cache(maxsize=4)
def _ex_dates(calendar: SessionCalendar) -> tuple[dt.date, ...]:
    out: list[dt.date] = []
    for year in range(calendar.first_session.year, calendar.last_session.year + 1):
        for month in (2, 5, 8, 11):
            idx = calendar.index_after(dt.date(year, month, 15) - dt.timedelta(days=1))
            if idx < len(calendar.dates):
                out.append(calendar.dates[idx])
    return tuple(sorted(set(out)))
