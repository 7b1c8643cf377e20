"""The search through a server list (docs/protocol.md section 6.10): the plan of the Rust
client's failover::Search, the same cases as its unit tests."""

from ctid_client.failover import (
    MAX_REDIRECTS,
    Fatal,
    GiveUp,
    NotPrimary,
    Options,
    Retry,
    Search,
    Try,
    Wait,
    not_primary,
)

MS = 0.001


def opts() -> Options:
    return Options(min_backoff=100 * MS, max_backoff=400 * MS, give_up_after=2000 * MS)


def refused() -> Retry:
    return Retry("cannot connect: refused")


def redirect(to: str) -> NotPrimary:
    return NotPrimary(to, f"closed by the server (4010 not primary; primary={to})")


def unknown() -> NotPrimary:
    return NotPrimary(None, "closed by the server (4010 not primary; primary unknown)")


def try_url(step: object) -> str:
    assert isinstance(step, Try), f"expected an attempt, got {step!r}"
    return step.url


def test_the_reason_of_a_4010_names_the_primary() -> None:
    assert not_primary(4010, "not primary; primary=ws://10.0.0.2:7000/ws") == (True, "ws://10.0.0.2:7000/ws")
    assert not_primary(4010, "not primary; primary unknown") == (True, None)
    assert not_primary(4010, "") == (True, None)
    assert not_primary(4010, "not primary; primary=") == (True, None)
    assert not_primary(4001, "not primary; primary=ws://x/ws") == (False, None)
    assert not_primary(1000, "") == (False, None)


def test_a_named_primary_is_tried_at_once_then_the_list_goes_on_after_it() -> None:
    t0 = 1000.0
    s = Search(["a", "b", "c"], opts())
    s.begin(t0)
    assert try_url(s.step(t0)) == "a"
    s.failed(t0, "a", redirect("x"))  # not in the list: followed anyway
    assert try_url(s.step(t0)) == "x"
    s.served("x")
    t1 = t0 + 5
    s.begin(t1, backoff=True)
    assert s.step(t1) == Wait(t1 + 100 * MS)
    assert try_url(s.step(t1 + 100 * MS)) == "b"
    s.served("b")
    s.begin(t1, redirect="a")
    assert try_url(s.step(t1)) == "a"


def test_refusals_and_an_unknown_primary_go_round_the_list_with_the_backoff() -> None:
    t = 1000.0
    s = Search(["a", "b"], opts())
    s.begin(t)
    tried: list[str] = []
    waits: list[float] = []
    while len(tried) < 5:
        step = s.step(t)
        if isinstance(step, Try):
            s.failed(t, step.url, refused() if step.url == "a" else unknown())
            tried.append(step.url)
        elif isinstance(step, Wait):
            waits.append(round(step.until - t, 6))
            t = step.until
        else:
            raise AssertionError(f"gave up early: {step}")
    assert tried == ["a", "b", "a", "b", "a"]
    assert waits == [0.1, 0.2, 0.4, 0.4]


def test_two_nodes_naming_each_other_are_not_followed_for_ever() -> None:
    t0 = t = 1000.0
    s = Search(["a", "b"], opts())
    s.begin(t0)
    attempts = at_once = max_at_once = 0
    while True:
        step = s.step(t)
        if isinstance(step, Try):
            attempts += 1
            at_once += 1
            max_at_once = max(max_at_once, at_once)
            s.failed(t, step.url, redirect("b" if step.url == "a" else "a"))
        elif isinstance(step, Wait):
            at_once = 0
            t = step.until
        else:
            g = step
            break
    assert max_at_once == 3  # a → b → a, then the backoff
    assert attempts < 40
    assert isinstance(g, GiveUp) and not g.exhausted and "not primary" in g.last
    assert t >= t0 + 2000 * MS


def test_a_chain_of_distinct_primaries_is_bounded() -> None:
    t0 = 1000.0
    s = Search(["a"], opts())
    s.begin(t0)
    followed = 0
    u = try_url(s.step(t0))
    while True:
        s.failed(t0, u, redirect(u + "'"))
        step = s.step(t0)
        if isinstance(step, Try):
            followed += 1
            u = step.url
        else:
            assert isinstance(step, Wait)
            break
    assert followed == MAX_REDIRECTS


def test_give_up_after_bounds_the_whole_search() -> None:
    t0 = t = 1000.0
    s = Search(["a", "b"], opts())
    s.begin(t0)
    while True:
        step = s.step(t)
        if isinstance(step, Try):
            s.failed(t, step.url, refused())
        elif isinstance(step, Wait):
            assert step.until <= t0 + 2000 * MS + 1e-9, "waits past the end"
            t = step.until
        else:
            g = step
            break
    assert abs(t - (t0 + 2000 * MS)) < 1e-9, "the last attempt is made at the end"
    assert not g.exhausted and g.last.endswith("cannot connect: refused")
    s = Search(["a"], opts())
    s.begin(t0)
    u = try_url(s.step(t0))
    s.failed(t0 + 3, u, redirect("b"))  # a redirect after the end is not followed
    assert isinstance(s.step(t0 + 3), GiveUp)


def test_urls_that_cannot_work_are_left_out_and_end_the_search_when_none_is_left() -> None:
    t0 = 1000.0
    s = Search(["a", "b"], opts())
    s.begin(t0)
    assert try_url(s.step(t0)) == "a"
    s.failed(t0, "a", Fatal("HTTP 401"))
    w = s.step(t0)
    assert isinstance(w, Wait)
    assert try_url(s.step(w.until)) == "b"
    s.failed(w.until, "b", refused())
    w2 = s.step(w.until)
    assert isinstance(w2, Wait)
    assert try_url(s.step(w2.until)) == "b", "a is left out"
    s.failed(w2.until, "b", Fatal("HTTP 401"))
    g = s.step(w2.until)
    assert isinstance(g, GiveUp) and g.exhausted
    s.begin(w2.until)  # a new search tries them again
    assert isinstance(s.step(w2.until), Try)
    s = Search([], opts())
    s.begin(t0)
    assert s.step(t0) == GiveUp(last="no server URL given", exhausted=True)
